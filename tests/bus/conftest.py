"""Fixtures for the bus tests: the real Redis (own key prefix, cleaned up), a private
redis-server that tests may stop, and small xgb/lgbm artifacts trained once per session."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import redis

from tests.helpers import RedisServer, free_port  # noqa: F401  (free_port re-used by bus tests)

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


@pytest.fixture
def own_redis(tmp_path: Path, redis_url: str):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found; the outage tests start their own server")
    server = RedisServer(tmp_path / "redis").start()
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
