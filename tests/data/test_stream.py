"""Merging several symbols into one time-ordered stream."""

from __future__ import annotations

import itertools

import numpy as np

from ai_engine.data import CandleSeries, load_dir, merge_stream, synthetic_market, time_batches

H = 3_600_000


def series(symbol, times):
    n = len(times)
    ones = np.ones(n)
    return CandleSeries(symbol, "1h", np.array(times, dtype=np.int64), ones, ones, ones, ones, ones)


def test_merge_orders_by_time_then_symbol():
    data = {
        "ZZZ": series("ZZZ", [0, H, 2 * H]),
        "AAA": series("AAA", [H, 3 * H]),
        "MMM": series("MMM", [0]),
    }
    got = [(c.open_time, c.symbol) for c in merge_stream(data)]
    assert got == [(0, "MMM"), (0, "ZZZ"), (H, "AAA"), (H, "ZZZ"), (2 * H, "ZZZ"), (3 * H, "AAA")]


def test_time_batches_group_by_open_time_and_skip_gaps():
    data = {"BBB": series("BBB", [0, H, 2 * H]), "AAA": series("AAA", [0, 2 * H])}
    batches = [[(c.open_time, c.symbol) for c in b] for b in time_batches(data)]
    assert batches == [[(0, "AAA"), (0, "BBB")], [(H, "BBB")], [(2 * H, "AAA"), (2 * H, "BBB")]]


def test_merge_keeps_every_candle_of_a_synthetic_market():
    market = synthetic_market(["AAA", "BBB", "CCC"], n_bars=200, seed=2)
    merged = list(merge_stream(market))
    assert len(merged) == 600
    keys = [(c.open_time, c.symbol) for c in merged]
    assert keys == sorted(keys)
    assert all(len(b) == 3 for b in time_batches(market))


def test_real_btc_eth_merge(candles_dir):
    data = load_dir(candles_dir, ["ETHUSDT", "BTCUSDT"], "1h", end_ms=1_619_000_000_000)
    merged = list(merge_stream(data))
    assert len(merged) == len(data["BTCUSDT"]) + len(data["ETHUSDT"])
    assert [(c.open_time, c.symbol) for c in merged[:2]] == [
        (1_617_566_400_000, "BTCUSDT"),
        (1_617_566_400_000, "ETHUSDT"),
    ]
    first_batches = list(itertools.islice(time_batches(data), 3))
    assert all([c.symbol for c in b] == ["BTCUSDT", "ETHUSDT"] for b in first_batches)
