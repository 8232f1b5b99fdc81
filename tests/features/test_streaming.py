"""Streaming features equal batch features, row for row, on real candles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ai_engine.data import load_csv, synthetic_market
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.features import (
    BUFFER_BARS,
    MIN_BUFFER_BARS,
    WARMUP_BARS,
    FeatureRow,
    StreamingFeatures,
    compute_features,
    sequence_windows,
    update_many,
)
from ai_engine.features.indicators import SLOWEST_DECAY
from ai_engine.types import Candle

N = 3000
SEQ = 256


def stream_vs_batch(series, buffer_bars=BUFFER_BARS):
    sf = StreamingFeatures(series.symbol, series.interval, buffer_bars=buffer_bars, seq_len_max=SEQ)
    rows = [sf.update(series.candle(i)) for i in range(len(series))]
    return rows, compute_features(series)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "DOGEUSDT"])  # DOGE: ~0.06 USD
def test_streaming_equals_batch_on_real_candles(candles_dir, symbol):
    series = load_csv(candles_dir / f"{symbol}-1h.csv").slice(0, N)
    rows, batch = stream_vs_batch(series)
    assert all(r is None for r in rows[:WARMUP_BARS])
    got = np.flatnonzero([r is not None for r in rows])
    np.testing.assert_array_equal(got, np.flatnonzero(batch.valid))
    tab = np.stack([rows[i].tabular for i in got])
    # past BUFFER_BARS the stream has forgotten the oldest bars; recursive indicators must not care
    assert got[-1] > 2 * BUFFER_BARS
    np.testing.assert_allclose(tab, batch.tabular[got], rtol=1e-12, atol=1e-14)
    window_rows = got[got >= WARMUP_BARS + SEQ - 1]
    windows = np.stack([rows[i].sequence_window(SEQ) for i in window_rows])
    np.testing.assert_allclose(
        windows, sequence_windows(batch.sequence, window_rows, SEQ), rtol=1e-6, atol=1e-9
    )
    assert all(rows[i].open_time == series.open_time[i] for i in got[::97])


def test_error_bound_of_the_trailing_buffer():
    """Recursive state older than n bars weighs at most SLOWEST_DECAY**n; the buffers make that < 1e-16."""
    assert SLOWEST_DECAY ** (MIN_BUFFER_BARS - WARMUP_BARS) < 1e-16
    assert SLOWEST_DECAY ** (BUFFER_BARS - WARMUP_BARS) < 1e-30
    # EMA(26) and TRIX(15) forget faster than Wilder(14)
    assert max(25 / 27, 14 / 16) < SLOWEST_DECAY
    with pytest.raises(ConfigError, match=f"use at least {MIN_BUFFER_BARS}"):
        StreamingFeatures("BTCUSDT", "1h", buffer_bars=MIN_BUFFER_BARS - 1)
    assert math.isclose(SLOWEST_DECAY, 13 / 14)


def test_minimum_buffer_still_equals_batch():
    series = synthetic_market(["AAA"], n_bars=1800, seed=9)["AAA"]
    rows, batch = stream_vs_batch(series, buffer_bars=MIN_BUFFER_BARS)
    got = np.flatnonzero(batch.valid)
    np.testing.assert_allclose(
        np.stack([rows[i].tabular for i in got]), batch.tabular[got], rtol=1e-9, atol=1e-12
    )


def candle(t, close=100.0, symbol="AAA"):
    return Candle(symbol, "1h", t, close, close + 1, close - 1, close, 5.0)


def test_update_refuses_foreign_stale_and_invalid_candles():
    sf = StreamingFeatures("AAA", "1h")
    assert sf.update(candle(3_600_000)) is None
    with pytest.raises(DataError, match="candle BBB 1h fed to the features of AAA 1h"):
        sf.update(candle(7_200_000, symbol="BBB"))
    with pytest.raises(DataError, match="AAA 1970-01-01T01:00:00Z: not after the last candle"):
        sf.update(candle(3_600_000))
    bad = Candle("AAA", "1h", 7_200_000, 100.0, 99.0, 98.0, 100.0, 1.0)
    with pytest.raises(DataError, match=r"invalid candle: high 99.0 < max\(open, close\) 100.0"):
        sf.update(bad)
    assert sf.bars_seen == 1


def test_sequence_window_comes_from_real_history_only():
    series = synthetic_market(["AAA"], n_bars=WARMUP_BARS + 40, seed=1)["AAA"]
    sf = StreamingFeatures("AAA", "1h", seq_len_max=64)
    rows = [sf.update(series.candle(i)) for i in range(len(series))]
    last = rows[-1]
    w = last.sequence_window(32)
    assert w.shape == (32, 8) and np.isfinite(w).all()
    assert np.unique(w[:, 3]).size == 32  # real, changing closes: never a tiled constant window
    with pytest.raises(DataError, match="include warm-up"):
        last.sequence_window(64)
    with pytest.raises(DataError, match="only 64 bars of history held"):
        last.sequence_window(65)
    assert last.history.flags.writeable is False and last.tabular.flags.writeable is False


def states(symbols, **kw):
    return {s: StreamingFeatures(s, "1h", **kw) for s in symbols}


def test_update_many_equals_update_per_symbol():
    """Symbols closing together, computed in one pass, get the rows each would get alone; buffers
    of different lengths (a symbol that started later) are computed apart and still match."""
    market = synthetic_market(["AAA", "BBB", "CCC"], n_bars=MIN_BUFFER_BARS + 150, seed=4)
    late = 60  # CCC starts later: its buffer is shorter until all are full
    alone, together = (states(market, buffer_bars=MIN_BUFFER_BARS, seq_len_max=32) for _ in "12")
    compared = 0
    for i in range(len(market["AAA"])):
        names = [s for s in market if s != "CCC" or i >= late]
        candles = [market[s].candle(i) for s in names]
        got = update_many([together[s] for s in names], candles)
        for s, c, row in zip(names, candles, got, strict=True):
            want = alone[s].update(c)
            if want is None:
                assert row is None
                continue
            assert isinstance(row, FeatureRow) and row.open_time == c.open_time
            np.testing.assert_array_equal(row.tabular, want.tabular)
            np.testing.assert_array_equal(row.history, want.history)
            compared += 1
    assert compared == 3 * (len(market["AAA"]) - WARMUP_BARS) - late


def test_update_many_reports_bad_candles_per_symbol():
    """A refused candle takes the place of its row as the DataError update would raise, and leaves
    its symbol unchanged; the other symbols are updated."""
    symbols = ("AAA", "BBB", "CCC")
    alone, together = (states(symbols) for _ in "12")
    first = [candle(3_600_000, symbol=s) for s in symbols]
    update_many(list(together.values()), first)
    for c in first:
        alone[c.symbol].update(c)
    bad = Candle("BBB", "1h", 7_200_000, 100.0, 99.0, 98.0, 100.0, 1.0)
    second = [candle(7_200_000), bad, candle(3_600_000, symbol="CCC")]
    got = update_many(list(together.values()), second)
    assert got[0] is None  # still warming up
    for c, err in zip(second[1:], got[1:], strict=True):
        with pytest.raises(DataError) as refused:
            alone[c.symbol].update(c)
        assert isinstance(err, DataError) and str(err) == str(refused.value)
    assert [f.bars_seen for f in together.values()] == [2, 1, 1]
    third = [candle(10_800_000, symbol=s) for s in symbols]
    assert update_many(list(together.values()), third) == [None] * 3
    assert [f.bars_seen for f in together.values()] == [3, 2, 2]
    with pytest.raises(ValueError, match="2 feature states for 1 candles"):
        update_many(list(together.values())[:2], [candle(14_400_000)])
    with pytest.raises(ValueError, match="appears twice"):
        update_many([together["AAA"]] * 2, [candle(14_400_000), candle(18_000_000)])


def test_many_symbols_streamed_together_equal_batch():
    """Issue 20: 40 symbols closing together, streamed through ``update_many`` for longer than the
    buffer, give each symbol's batch rows exactly."""
    symbols = [f"S{i:02d}" for i in range(40)]
    market = synthetic_market(symbols, n_bars=BUFFER_BARS + 150, seed=8)
    together = states(symbols, seq_len_max=32)
    rows = {s: [] for s in symbols}
    for i in range(BUFFER_BARS + 150):
        for s, row in zip(symbols, update_many([together[s] for s in symbols], [market[s].candle(i) for s in symbols]),
                          strict=True):
            rows[s].append(row)
    for s in symbols:
        batch = compute_features(market[s])
        got = np.flatnonzero([r is not None for r in rows[s]])
        np.testing.assert_array_equal(got, np.flatnonzero(batch.valid))
        np.testing.assert_array_equal(np.stack([rows[s][i].tabular for i in got]), batch.tabular[got])
        np.testing.assert_array_equal(rows[s][-1].history[-1], batch.sequence[-1])
