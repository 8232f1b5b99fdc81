"""Batch features: names, warm-up, scale-freedom, no look-ahead, column selection, windows, rows
from a start row and many symbols in one pass."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ai_engine.features as features
from ai_engine.data import CandleSeries, load_csv, synthetic_market
from ai_engine.features import (
    CANDLE_FEATURES,
    FEATURE_NAMES,
    INDICATOR_FEATURES,
    SEQUENCE_CHANNELS,
    WARMUP_BARS,
    compute_features,
    sequence_windows,
)
from ai_engine.features.indicators import compute_arrays


@pytest.fixture(scope="module")
def btc(candles_dir) -> CandleSeries:
    return load_csv(candles_dir / "BTCUSDT-1h.csv").slice(0, 3000)


@pytest.fixture(scope="module")
def market() -> CandleSeries:
    return synthetic_market(["AAA"], n_bars=1500, seed=5)["AAA"]


def test_names_are_unique_and_indicators_are_many():
    assert (
        len(set(FEATURE_NAMES))
        == len(FEATURE_NAMES)
        == len(CANDLE_FEATURES) + len(INDICATOR_FEATURES)
    )
    assert len(INDICATOR_FEATURES) >= 20
    assert len(set(SEQUENCE_CHANNELS)) == len(SEQUENCE_CHANNELS) >= 8
    assert sorted(features.__all__) == sorted(n for n in dir(features) if n in features.__all__)


def test_shapes_dtypes_and_warmup_is_tight(btc):
    f = compute_features(btc)
    assert f.tabular.shape == (3000, len(FEATURE_NAMES)) and f.tabular.dtype == np.float64
    assert f.sequence.shape == (3000, len(SEQUENCE_CHANNELS)) and f.sequence.dtype == np.float32
    np.testing.assert_array_equal(f.open_time, btc.open_time)
    assert f.tabular_names == FEATURE_NAMES and f.sequence_names == SEQUENCE_CHANNELS
    assert np.isnan(f.tabular[WARMUP_BARS - 1]).any()  # WARMUP_BARS is the first defined row
    assert (
        np.isfinite(f.tabular[WARMUP_BARS:]).all() and np.isfinite(f.sequence[WARMUP_BARS:]).all()
    )
    assert not f.valid[:WARMUP_BARS].any() and f.valid[WARMUP_BARS:].all()
    with pytest.raises(ValueError):
        f.tabular[100, 0] = 0.0


def test_features_are_not_constant_and_look_sane(btc):
    f = compute_features(btc)
    tab = f.tabular[f.valid]
    assert (tab.std(axis=0) > 0).all(), [
        n for n, s in zip(FEATURE_NAMES, tab.std(axis=0), strict=True) if s == 0
    ]
    col = dict(zip(FEATURE_NAMES, tab.T, strict=True))
    for name in ("rsi_14", "mfi_14", "stoch_k", "stoch_d", "ultosc", "adx_14"):
        assert col[name].min() >= 0 and col[name].max() <= 100, name
    assert col["willr_14"].min() >= -100 and col["willr_14"].max() <= 0
    for name in ("body_ratio", "upper_wick", "lower_wick"):
        assert np.abs(col[name]).max() <= 1, name
    assert (col["dist_high_24"] <= 0).all() and (col["dist_low_24"] >= 0).all()
    np.testing.assert_allclose(col["ret_1"], np.diff(np.log(btc.close))[WARMUP_BARS - 1 :])


def scaled(s: CandleSeries, price: float, volume: float = 1.0) -> CandleSeries:
    return dataclasses.replace(
        s,
        open=s.open * price,
        high=s.high * price,
        low=s.low * price,
        close=s.close * price,
        volume=s.volume * volume,
    )


@pytest.mark.parametrize("factor", [1000.0, 1e-3, 2.0**-20])
def test_features_do_not_depend_on_price_level(btc, market, factor):
    for s in (btc, market):
        a, b = compute_features(s), compute_features(scaled(s, factor))
        np.testing.assert_array_equal(a.valid, b.valid)
        np.testing.assert_allclose(b.tabular[a.valid], a.tabular[a.valid], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.sequence[a.valid], a.sequence[a.valid], rtol=1e-5, atol=1e-6)


def test_tiny_prices_behave_like_large_ones(market):
    """A coin quoted at 1e-7 (TA-Lib's absolute 1e-8 epsilons would bite without rescaling)."""
    a = compute_features(market)
    b = compute_features(scaled(market, 1e-7 / market.close[0]))
    np.testing.assert_allclose(b.tabular[a.valid], a.tabular[a.valid], rtol=1e-6, atol=1e-9)


def test_no_look_ahead(btc):
    base = compute_features(btc)
    cut = 2000
    rng = np.random.default_rng(0)
    noise = np.exp(rng.normal(0, 0.05, len(btc) - cut))
    future = dataclasses.replace(
        btc,
        open=np.r_[btc.open[:cut], btc.open[cut:] * noise],
        high=np.r_[btc.high[:cut], btc.high[cut:] * noise * 1.01],
        low=np.r_[btc.low[:cut], btc.low[cut:] * noise * 0.99],
        close=np.r_[btc.close[:cut], btc.close[cut:] * noise],
        volume=np.r_[btc.volume[:cut], btc.volume[cut:][::-1]],
    )
    changed = compute_features(future)
    np.testing.assert_array_equal(changed.tabular[:cut], base.tabular[:cut])
    np.testing.assert_array_equal(changed.sequence[:cut], base.sequence[:cut])
    assert not np.allclose(changed.tabular[cut:], base.tabular[cut:])
    # and a prefix gives the same rows as the full history
    np.testing.assert_array_equal(compute_features(btc.slice(0, cut)).tabular, base.tabular[:cut])


def test_sequence_windows_end_at_each_row(market):
    f = compute_features(market)
    rows = np.array([99, 500, 1499])
    w = sequence_windows(f.sequence, rows, 100)
    assert (
        w.shape == (3, 100, len(SEQUENCE_CHANNELS))
        and w.dtype == np.float32
        and w.flags.c_contiguous
    )
    for k, r in enumerate(rows):
        np.testing.assert_array_equal(w[k], f.sequence[r - 99 : r + 1])
    with pytest.raises(ValueError, match="row 98 has only 99 rows of history; seq_len 100"):
        sequence_windows(f.sequence, [98, 500], 100)
    with pytest.raises(ValueError, match="out of range"):
        sequence_windows(f.sequence, [1500], 100)
    assert sequence_windows(f.sequence, [], 16).shape == (0, 16, len(SEQUENCE_CHANNELS))


def test_valid_windows_need_a_fully_valid_history(market):
    f = compute_features(market)
    ok = f.valid_windows(64)
    assert not ok[: WARMUP_BARS + 63].any() and ok[WARMUP_BARS + 63 :].all()
    np.testing.assert_array_equal(f.valid_windows(1), f.valid)


def test_short_and_empty_series(market):
    f = compute_features(market.slice(0, 10))
    assert len(f) == 10 and not f.valid.any()
    assert compute_features(market.slice(0, 0)).tabular.shape == (0, len(FEATURE_NAMES))


def ohlcv(s: CandleSeries) -> tuple[np.ndarray, ...]:
    return s.open, s.high, s.low, s.close, s.volume


@pytest.mark.parametrize("start", [0, 1, 3, 24, 48, 49, 50, 777, 1499])
def test_rows_from_start_equal_the_full_computation(market, start):
    """What streaming relies on: the rows from ``start`` on, computed from a short tail where they
    can be, equal those of the whole computation bit for bit."""
    tab, seq = compute_arrays(*ohlcv(market))
    tab_s, seq_s = compute_arrays(*ohlcv(market), start=start)
    np.testing.assert_array_equal(tab_s, tab[start:])
    np.testing.assert_array_equal(seq_s, seq[start:])


def test_many_symbols_at_once_equal_one_at_a_time():
    """Equal-length histories of several symbols, computed in one pass (leading axis), give each
    symbol's own rows bit for bit, over the whole history and for the newest row."""
    market = synthetic_market(["AAA", "BBB", "CCC"], n_bars=700, seed=3)
    stacked = [np.stack(arrays) for arrays in zip(*map(ohlcv, market.values()), strict=True)]
    for start in (0, 699):
        tab, seq = compute_arrays(*stacked, start=start)
        assert tab.shape == (3, 700 - start, len(FEATURE_NAMES))
        assert seq.shape == (3, 700 - start, len(SEQUENCE_CHANNELS))
        for k, series in enumerate(market.values()):
            tab_k, seq_k = compute_arrays(*ohlcv(series), start=start)
            np.testing.assert_array_equal(tab[k], tab_k)
            np.testing.assert_array_equal(seq[k], seq_k)


def test_start_must_name_a_row(market):
    with pytest.raises(ValueError, match=r"start must be in \[0, 1500\), got 1500"):
        compute_arrays(*ohlcv(market), start=1500)
