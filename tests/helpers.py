"""Helpers shared by several test folders: free ports, waiting on a condition, the shared Redis
under a key prefix of the test's own, fault injection into real agents, a private Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["free_port", "wait_for", "stop_gracefully", "reap", "shared_redis_url", "redis_prefix", "drop_prefix", "AgentWrapper", "RedisServer"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what: str, timeout: float = 90.0):
    """Poll ``cond`` until it returns something truthy (returned), or fail naming ``what``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop_gracefully(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, as systemd stops the service; it must exit 0 (a clean stop) within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout) == 0


def reap(proc: subprocess.Popen, log=None) -> None:
    """A test's process ended whatever the test did: killed when still running, its log closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if log is not None:
        log.close()


def shared_redis_url() -> str:
    """The shared Redis's URL, pinged. Skips the test when there is none, but fails it when
    REDIS_URL was set (CI; tests/conftest.py moves it to TEST_REDIS_URL): a configured Redis that
    is down is an error, not a reason to test less."""
    import pytest
    import redis

    url = os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("TEST_REDIS_URL"):
            pytest.fail(f"REDIS_URL={url} is set but unreachable: {exc}")
        pytest.skip(f"no Redis at {url} ({exc}); set REDIS_URL or start redis-server")
    return url


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix:``."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def redis_prefix(tag: str = "test") -> Iterator[tuple[str, str]]:
    """``(url, prefix)``: the shared Redis and a fresh key prefix, whose keys are deleted afterwards."""
    url = shared_redis_url()
    prefix = f"{tag}:{uuid.uuid4().hex[:12]}"
    try:
        yield url, prefix
    finally:
        drop_prefix(url, prefix)


class AgentWrapper:
    """A real, loaded agent whose ``predict`` a subclass overrides (fault injection); everything
    else (name, version, sha256, input kind, features) is the agent's own."""

    def __init__(self, agent) -> None:
        self._agent = agent

    def __getattr__(self, name):
        return getattr(self._agent, name)


class RedisServer:
    """A redis-server of the test's own (AOF on, so a stop/start keeps the streams; optionally
    with ``--requirepass``) that a test may stop and restart."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.port, self.workdir, self.password = free_port(), Path(workdir), password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", str(self.workdir), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
