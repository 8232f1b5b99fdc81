"""Shared fixtures. Real data lives in ../shared beside the checkout; tests needing it skip with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The Redis the tests may use moves to TEST_REDIS_URL, so that no engine under test (in process or
# in a subprocess, which inherits the environment) talks to it by accident with the production key
# prefix. Redis tests read TEST_REDIS_URL and pass it explicitly with their own prefix.
if "REDIS_URL" in os.environ:
    os.environ["TEST_REDIS_URL"] = os.environ.pop("REDIS_URL")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AI_ENGINE_SHARED", REPO_ROOT.parent / "shared"))
CANDLES_DIR = SHARED / "data" / "candles"
ETT_CSV = SHARED / "data" / "ett" / "ETTh1.csv"


@pytest.fixture(scope="session")
def candles_dir() -> Path:
    """Directory of real Binance klines; skips (with the path it looked in) when absent."""
    if not (CANDLES_DIR / "BTCUSDT-1h.csv").is_file():
        pytest.skip(f"real candles not found at {CANDLES_DIR} (set AI_ENGINE_SHARED to the shared/ folder)")
    return CANDLES_DIR


@pytest.fixture(scope="session")
def ett_csv() -> Path:
    if not ETT_CSV.is_file():
        pytest.skip(f"ETTh1 not found at {ETT_CSV}")
    return ETT_CSV
