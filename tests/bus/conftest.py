"""Fixtures for the bus tests: the real Redis (own key prefix, cleaned up), a private
redis-server that tests may stop, and small xgb/lgbm artifacts trained once per session."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.helpers import RedisServer, drop_prefix, free_port, shared_redis_url  # noqa: F401  (free_port re-used by bus tests)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis (skips without one; fails when REDIS_URL is set but unreachable)."""
    return shared_redis_url()


@pytest.fixture
def prefix(redis_url: str):
    """A fresh key prefix; every key under it is deleted afterwards."""
    p = f"test:{uuid.uuid4().hex[:12]}"
    yield p
    drop_prefix(redis_url, p)


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
