"""Helpers shared by the bus tests (settings for a small two-voter engine, stream checks)."""

from __future__ import annotations

from pathlib import Path

import redis


def bus_env(home: Path, artifacts: dict[str, Path], redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Engine settings: xgb + lgbm vote (consensus 2), nhits disabled, patchtst in shadow."""
    env = {
        "AI_ENGINE_HOME": str(home),
        "XGB_MODEL_PATH": str(artifacts["xgb"]),
        "LGBM_MODEL_PATH": str(artifacts["lgbm"]),
        "NHITS_ROLE": "disabled",
        "PATCHTST_ROLE": "shadow",
        "XGB_WEIGHT": "50",
        "LGBM_WEIGHT": "50",
        "NHITS_WEIGHT": "0",
        "PATCHTST_WEIGHT": "0",
        "ENSEMBLE_MIN_CONSENSUS": "2",
        "AI_ENGINE_SYMBOLS": "BTCUSDT,ETHUSDT",
        "REDIS_URL": redis_url,
        "AI_ENGINE_REDIS_PREFIX": prefix,
    }
    return env | extra


def load_bus_settings(env: dict[str, str]):
    from ai_engine.config import load_settings

    return load_settings(None, environ={}, overrides=env)


def stream_events(url: str, prefix: str, stream: str) -> list[dict]:
    """Every entry of a stream as {field: str}."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields for _id, fields in client.xrange(f"{prefix}:stream:{stream}")]
    finally:
        client.close()


def store_ids(store_path: Path) -> tuple[list[str], list[str]]:
    """(decision event ids, intent event ids) recorded in a store."""
    import sqlite3

    with sqlite3.connect(store_path) as db:
        dec = [r[0] for r in db.execute("SELECT event_id FROM decisions")]
        intents = [r[0] for r in db.execute("SELECT event_id FROM intents")]
    return dec, intents


def assert_exactly_once(url: str, prefix: str, store_paths: list[Path]) -> tuple[int, int]:
    """The streams hold every recorded decision and intent exactly once; returns the counts."""
    dec, intents = [], []
    for p in store_paths:
        d, i = store_ids(p)
        dec += d
        intents += i
    got_dec = [e["event_id"] for e in stream_events(url, prefix, "ai.decision")]
    got_int = [e["event_id"] for e in stream_events(url, prefix, "trade.intent")]
    assert len(got_dec) == len(set(got_dec)), "duplicate decision events on the stream"
    assert len(got_int) == len(set(got_int)), "duplicate intent events on the stream"
    assert set(got_dec) == set(dec) and len(got_dec) == len(dec)
    assert set(got_int) == set(intents) and len(got_int) == len(intents)
    return len(dec), len(intents)
