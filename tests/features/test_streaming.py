"""Streaming features equal batch features, row for row, bit for bit, on real candles."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine.data import load_csv, synthetic_market, time_batches
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.features import (
    PRIME_BARS,
    WARMUP_BARS,
    FeatureBank,
    StreamingFeatures,
    compute_features,
    sequence_windows,
)
from ai_engine.features.indicators import SLOWEST_DECAY
from ai_engine.types import Candle

N = 3000
SEQ = 256


def stream_vs_batch(series):
    sf = StreamingFeatures(series.symbol, series.interval, seq_len_max=SEQ)
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
    np.testing.assert_array_equal(tab, batch.tabular[got])  # exactly: the same TA-Lib state, the same sums
    window_rows = got[got >= WARMUP_BARS + SEQ - 1]
    windows = np.stack([rows[i].sequence_window(SEQ) for i in window_rows])
    np.testing.assert_array_equal(windows, sequence_windows(batch.sequence, window_rows, SEQ))
    assert all(rows[i].open_time == series.open_time[i] for i in got[::97])


def test_a_primed_stream_forgets_where_it_started():
    """Primed with PRIME_BARS candles from the middle of a series, a stream's rows equal batch over
    the whole series to float64 precision: the recursive indicators' memory of their start is
    below SLOWEST_DECAY ** (PRIME_BARS - WARMUP_BARS)."""
    assert SLOWEST_DECAY ** (PRIME_BARS - WARMUP_BARS) < 1e-30
    assert max(25 / 27, 14 / 16) < SLOWEST_DECAY  # EMA(26) and TRIX(15) forget faster than Wilder(14)
    series = synthetic_market(["AAA"], n_bars=PRIME_BARS + 1501, seed=9)["AAA"]
    bank = FeatureBank("1h")
    bank.extend(series.candle(i) for i in range(1500, 1500 + PRIME_BARS))
    batch = compute_features(series)
    got = bank.update([series.candle(1500 + PRIME_BARS)])
    assert got.ready[0]
    np.testing.assert_allclose(got.tabular[0], batch.tabular[-1], rtol=1e-12, atol=1e-14)


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


def test_bank_rows_equal_a_stream_per_symbol():
    """Symbols closing together, computed in one pass, get the rows each would get alone; a symbol
    that starts later (its handles open later) and one that skips a closing time still match."""
    market = synthetic_market(["AAA", "BBB", "CCC"], n_bars=300, seed=4)
    late = 60  # CCC starts later
    alone = {s: StreamingFeatures(s, "1h", seq_len_max=32) for s in market}
    bank = FeatureBank("1h", seq_len_max=32)
    compared = 0
    for i in range(len(market["AAA"])):
        names = [s for s in market if (s != "CCC" or i >= late) and not (s == "BBB" and i == 150)]
        got = bank.update([market[s].candle(i) for s in names])
        assert [c.symbol for c in got.candles] == names and not got.refused
        for k, s in enumerate(names):
            want = alone[s].update(market[s].candle(i))
            assert bool(got.ready[k]) == (want is not None)
            if want is None:
                continue
            np.testing.assert_array_equal(got.tabular[k], want.tabular)
            np.testing.assert_array_equal(bank.history(s), want.history)
            compared += 1
    assert compared == 3 * (len(market["AAA"]) - WARMUP_BARS) - late - 1


def test_bank_reports_bad_candles_per_symbol():
    """A refused candle is reported with the DataError a single stream raises, and leaves its
    symbol unchanged; the other symbols are taken."""
    symbols = ("AAA", "BBB", "CCC")
    alone = {s: StreamingFeatures(s, "1h") for s in symbols}
    bank = FeatureBank("1h")
    first = [candle(3_600_000, symbol=s) for s in symbols]
    bank.update(first)
    for c in first:
        alone[c.symbol].update(c)
    bad = Candle("BBB", "1h", 7_200_000, 100.0, 99.0, 98.0, 100.0, 1.0)
    second = [candle(7_200_000), bad, candle(3_600_000, symbol="CCC")]
    got = bank.update(second)
    assert [c.symbol for c in got.candles] == ["AAA"] and not got.ready[0]  # still warming up
    assert [i for i, _ in got.refused] == [1, 2]
    for (_, err), c in zip(got.refused, second[1:], strict=True):
        with pytest.raises(DataError) as refused:
            alone[c.symbol].update(c)
        assert str(err) == str(refused.value)
    assert [bank.bars_seen(s) for s in symbols] == [2, 1, 1]
    other = bank.update([Candle("AAA", "4h", 14_400_000, 100.0, 101.0, 99.0, 100.0, 1.0)])
    assert str(other.refused[0][1]) == "candle AAA 4h fed to the 1h features"
    with pytest.raises(ValueError, match="appears twice"):
        bank.update([candle(14_400_000), candle(18_000_000)])
    with pytest.raises(ConfigError, match="seq_len_max must be >= 1"):
        FeatureBank("1h", seq_len_max=0)


def test_many_symbols_streamed_together_equal_batch():
    """Issue 20: 40 symbols closing together, primed through ``extend`` and then streamed through
    ``update``, give each symbol's batch rows and windows exactly."""
    symbols = [f"S{i:02d}" for i in range(40)]
    market = synthetic_market(symbols, n_bars=PRIME_BARS + 150, seed=8)
    steps = list(time_batches(market))
    bank = FeatureBank("1h", seq_len_max=64)
    taken, refused = bank.extend(c for step in steps[:PRIME_BARS] for c in step)
    assert len(taken) == 40 * PRIME_BARS and not refused
    rows = {s: [] for s in symbols}
    for step in steps[PRIME_BARS:]:
        got = bank.update(step)
        assert got.ready.all()
        for s, row in zip(symbols, got.tabular, strict=True):
            rows[s].append(row)
        windows = bank.windows(got.slots, 64)
    for k, s in enumerate(symbols):
        batch = compute_features(market[s])
        np.testing.assert_array_equal(np.stack(rows[s]), batch.tabular[PRIME_BARS:])
        np.testing.assert_array_equal(windows[k], batch.sequence[-64:])


def test_extend_equals_update_one_candle_at_a_time():
    """Priming a run of bars per symbol in one pass leaves the state a candle at a time would:
    refused candles included (a duplicate, a bad bar, another interval, one too early)."""
    market = synthetic_market(["AAA", "BBB", "CCC"], n_bars=130, seed=5)
    history = [c for step in time_batches(market) for c in step]
    history.insert(200, history[190])  # a duplicate of an earlier bar
    history.insert(50, Candle("BBB", "1h", history[49].open_time + 3_600_000, 1.0, 0.5, 0.9, 1.0, 1.0))
    history.insert(10, Candle("CCC", "4h", 14_400_000, 1.0, 1.1, 0.9, 1.0, 1.0))
    one, bulk = FeatureBank("1h", seq_len_max=40), FeatureBank("1h", seq_len_max=40)
    want_taken, want_refused = [], []
    for c in history:
        step = one.update([c])
        want_taken.extend(step.candles)
        want_refused.extend(str(e) for _, e in step.refused)
    taken, refused = bulk.extend(history[:77])
    more, refused2 = bulk.extend(history[77:])
    assert taken + more == want_taken and [str(e) for e in refused + refused2] == want_refused
    assert len(want_refused) == 3
    tail = list(time_batches(synthetic_market(["AAA", "BBB", "CCC"], n_bars=140, seed=5)))[130:]
    for step in tail:
        a, b = one.update(step), bulk.update(step)
        np.testing.assert_array_equal(a.tabular, b.tabular)
        np.testing.assert_array_equal(one.windows(a.slots, 40), bulk.windows(b.slots, 40))


def test_forget_starts_a_symbol_afresh():
    market = synthetic_market(["AAA", "BBB"], n_bars=120, seed=6)
    bank = FeatureBank("1h", seq_len_max=16)
    assert bank.extend([]) == ([], [])  # nothing to prime (a lease instance with no history yet)
    bank.extend(c for step in time_batches(market) for c in step)
    bank.forget("AAA")
    assert "AAA" not in bank and bank.bars_seen("AAA") == 0 and bank.bars_seen("BBB") == 120
    fresh = FeatureBank("1h", seq_len_max=16)
    for i in range(60, 120):
        a = bank.update([market["AAA"].candle(i)])
        b = fresh.update([market["AAA"].candle(i)])
        np.testing.assert_array_equal(a.tabular, b.tabular)
        np.testing.assert_array_equal(bank.history("AAA"), fresh.history("AAA"))


def test_deferred_tabular_rows_equal_eager_ones_after_the_bank_moved_on():
    """Serving defers a closing time's tabular rows to the tabular voters' lane: read later, even
    after the next closing time was fed, they equal the rows computed at once, bit for bit, and are
    computed only once."""
    symbols = [f"S{i:02d}" for i in range(20)]
    steps = list(time_batches(synthetic_market(symbols, n_bars=PRIME_BARS + 5, seed=9)))
    eager, lazy = FeatureBank("1h", seq_len_max=64), FeatureBank("1h", seq_len_max=64)
    for bank in (eager, lazy):
        bank.extend(c for step in steps[:PRIME_BARS] for c in step)
    for k in range(PRIME_BARS, PRIME_BARS + 4, 2):
        want = [eager.update(steps[k]), eager.update(steps[k + 1])]
        got = [lazy.update(steps[k], defer_tabular=True), lazy.update(steps[k + 1], defer_tabular=True)]
        for g, w in zip(got, want, strict=True):  # the first read after the second update
            value = g.tabular.get()
            assert g.tabular.get() is value
            np.testing.assert_array_equal(value, w.tabular)
            np.testing.assert_array_equal(g.ready, w.ready)
        np.testing.assert_array_equal(lazy.windows(got[1].slots, 64), eager.windows(want[1].slots, 64))
