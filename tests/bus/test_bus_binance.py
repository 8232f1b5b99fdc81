"""Binance adapters against loopback servers: REST fetch into the cache, websocket with reconnect
and gap backfill."""

from __future__ import annotations

from pathlib import Path

import pytest
from binance_fake import FakeKlineSocket, FakeRest, kline_event

from ai_engine.cli.main import main
from ai_engine.data import load_csv
from ai_engine.market import KlineFeed, update_cache

H = 3_600_000
NOW = 1_720_000_000_000 // H * H + 1_800_000  # half-way through an hour: that candle is still open


@pytest.fixture
def rest():
    times = [t for t in range(NOW - 100 * 24 * H, NOW, H)]  # includes the open candle (NOW - H/2)
    server = FakeRest({"BTCUSDT": [t - t % H for t in times]}, "1h", rate_limited=1)
    yield server
    server.close()


def test_fetch_pages_respects_429_and_keeps_closed_candles_only(rest, tmp_path):
    res = update_cache(tmp_path, "btcusdt", "1h", 90, base_url=rest.url, now_ms=NOW)
    assert res.path == tmp_path / "BTCUSDT-1h.csv"
    assert res.total == res.added == res.fetched == 90 * 24
    open_candle = NOW - NOW % H
    assert res.last_open_time == open_candle - H
    assert len([q for q in rest.requests if q["limit"] == "1000"]) >= 3  # 1 rate-limited + 3 pages
    lines = res.path.read_text().splitlines()
    assert lines[0] == "open_time,open,high,low,close,volume"
    assert lines[1].split(",")[1].endswith(".00000000")  # Binance's decimal strings, unchanged
    series = load_csv(res.path)
    assert len(series) == res.total and series.symbol == "BTCUSDT"


def test_fetch_merges_with_the_cache_without_duplicates(rest, tmp_path):
    first = update_cache(tmp_path, "BTCUSDT", "1h", 10, base_url=rest.url, now_ms=NOW - 5 * 24 * H)
    again = update_cache(tmp_path, "BTCUSDT", "1h", 10, base_url=rest.url, now_ms=NOW)
    times = load_csv(again.path).open_time
    assert again.total == len(times) == (again.last_open_time - first.first_open_time) // H + 1
    assert len(times) == len(set(times)) and list(times) == sorted(times)
    assert times[0] == first.first_open_time and again.added == again.total - first.total


def test_data_fetch_command(rest, tmp_path, capsys):
    rc = main(["data", "fetch", "--symbol", "BTCUSDT", "--interval", "1h", "--days", "2", "--out", str(tmp_path),
               "--base-url", rest.url])
    assert rc == 0 and (tmp_path / "BTCUSDT-1h.csv").is_file()
    rc = main(["data", "fetch", "--symbol", "NOPEUSDT", "--days", "2", "--out", str(tmp_path), "--base-url", rest.url])
    assert rc == 2
    assert "Binance refused" in capsys.readouterr().err


def test_websocket_reconnects_and_backfills_the_gap_in_order(tmp_path: Path):
    m = 60_000
    t0 = 1_720_000_000_000 // m * m
    syms = ("BTCUSDT", "ETHUSDT")
    ev = lambda s, i, closed=True: kline_event(s, t0 + i * m, "1m", closed)  # noqa: E731
    # connection 1: candles 0-1 closed (plus an open one), then the connection drops;
    # candles 2-4 close while disconnected; connection 2 streams candles 4 (again) and 5.
    sock = FakeKlineSocket([
        [ev(s, i) for i in (0, 1) for s in syms] + [ev("BTCUSDT", 2, closed=False)],
        [ev(s, i) for i in (4, 5) for s in syms],
    ])
    rest = FakeRest({s: [t0 + i * m for i in range(7)] for s in syms}, "1m")
    feed = KlineFeed(syms, "1m", ws_url=sock.url, rest_url=rest.url, grace_s=0.2, backoff_initial_s=0.05,
                     clock_ms=lambda: t0 + 5 * m)
    try:
        got = []
        while len(got) < 6:
            batch = feed.get(timeout=10)
            assert batch is not None, f"feed stalled after {[b.open_time for b in got]}"
            got.append(batch)
    finally:
        feed.close()
        sock.close()
        rest.close()
    assert [b.open_time for b in got] == [t0 + i * m for i in range(6)]
    assert all([c.symbol for c in b.candles] == list(syms) for b in got)
    assert feed.connects >= 2 and feed.backfilled == 6  # candles 2, 3, 4 of both symbols over REST
    assert sock.paths[0] == "/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m"
