"""Closed candles from the Redis klines stream: grouped, acknowledged after recording, reclaimed."""

from __future__ import annotations

import json

import pytest
import redis

from ai_engine.market import RedisKlineSource, kline_entry
from ai_engine.types import Candle

pytestmark = pytest.mark.redis

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000


def _candle(sym: str, i: int) -> Candle:
    return Candle(sym, "1h", T0 + i * 3_600_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 10.0)


def _source(url, prefix, **kw) -> RedisKlineSource:
    return RedisKlineSource(url, prefix, ["BTCUSDT", "ETHUSDT"], "1h", block_ms=50, grace_ms=50, **kw)


def test_closed_candles_are_grouped_and_acked_only_when_asked(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    stream = f"{prefix}:stream:market.klines"
    src = _source(redis_url, prefix, consumer="c1")
    client.xadd(stream, kline_entry(_candle("BTCUSDT", 0), closed=False))  # still open: skipped
    client.xadd(stream, kline_entry(_candle("BTCUSDT", 0)))
    client.xadd(stream, kline_entry(_candle("SOLUSDT", 0)))  # not ours: skipped
    client.xadd(stream, {"payload": "{'k': 1}"})  # malformed: logged and skipped
    client.xadd(stream, kline_entry(_candle("ETHUSDT", 0)))
    client.xadd(stream, kline_entry(_candle("BTCUSDT", 1)))
    client.xadd(stream, kline_entry(_candle("ETHUSDT", 1)))
    batches = src.next_batches()
    assert [[c.symbol for c in b.candles] for b in batches] == [["BTCUSDT", "ETHUSDT"]] * 2
    assert [b.open_time for b in batches] == [T0, T0 + 3_600_000]
    assert batches[0].candles[0] == _candle("BTCUSDT", 0)
    assert src.skipped == 3
    assert client.xpending(stream, src.group)["pending"] == 4
    batches[0].ack()
    assert client.xpending(stream, src.group)["pending"] == 2
    src.close()
    # restart with the same consumer name: the unacknowledged candles come back first
    again = _source(redis_url, prefix, consumer="c1")
    redelivered = again.next_batches()
    assert [b.open_time for b in redelivered] == [T0 + 3_600_000]
    redelivered[0].ack()
    assert client.xpending(stream, again.group)["pending"] == 0
    assert again.next_batches() == []


def test_entries_left_pending_by_a_dead_consumer_are_claimed(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    stream = f"{prefix}:stream:market.klines"
    dead = _source(redis_url, prefix, consumer="dead")
    for sym in ("BTCUSDT", "ETHUSDT"):
        client.xadd(stream, kline_entry(_candle(sym, 5)))
    assert len(dead.next_batches()) == 1  # read, never acknowledged (the process died)
    other = _source(redis_url, prefix, consumer="other", claim_idle_ms=0)
    got = other.next_batches()
    assert [c.symbol for c in got[0].candles] == ["BTCUSDT", "ETHUSDT"]
    got[0].ack()
    assert client.xpending(stream, other.group)["pending"] == 0
    payload = json.loads(client.xrange(stream)[0][1][b"payload"])
    assert payload["k"]["x"] is True and payload["k"]["i"] == "1h"
