"""Fixtures for the bus tests: the real Redis (own key prefix, cleaned up), a private
redis-server that tests may stop, and small xgb/lgbm artifacts trained once per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis. When REDIS_URL is set (CI; tests/conftest.py moves it to TEST_REDIS_URL) an unreachable server fails the tests."""
    url = os.environ.get("TEST_REDIS_URL") or DEFAULT_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("TEST_REDIS_URL"):
            pytest.fail(f"REDIS_URL={url} is set but unreachable: {exc}")
        pytest.skip(f"no Redis at {url} ({exc}); set REDIS_URL or start redis-server")
    return url


@pytest.fixture
def prefix(redis_url: str):
    """A fresh key prefix; every key under it is deleted afterwards."""
    p = f"test:{uuid.uuid4().hex[:12]}"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{p}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OwnRedis:
    """A private redis-server (AOF on, so a stop/start keeps the streams) that a test may stop."""

    port: int
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.workdir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError(f"own redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path, redis_url: str):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found; the outage tests start their own server")
    server = OwnRedis(free_port(), tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """Small xgb and lgbm models trained on a synthetic market (seconds)."""
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME
    from ai_engine.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("artifacts")
    paths = {}
    for name in ("xgb", "lgbm"):
        paths[name] = out / DEFAULT_ARTIFACT_NAME[name]
        train_model(name, symbols=["BTCUSDT", "ETHUSDT"], out_path=paths[name], synthetic=True,
                    options=TrainOptions(synthetic_bars=1500), threads=1, force=True)
    return paths
