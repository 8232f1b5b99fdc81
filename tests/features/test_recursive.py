"""The recursive and windowed indicators against TA-Lib itself, on real candles and on series made
to hit its edge cases (flat stretches, prices on a tick grid with ties, tiny prices)."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from ai_engine.data import load_csv
from ai_engine.features.indicators import FEATURE_NAMES, _recursive, compute_arrays, price_scale
from ai_engine.features.recursive import OUTPUTS, SEED_BARS, seed

# Bit for bit; MACD, ATR and the EMAs to a few units in the last place (TA-Lib's compiled library
# rounds some of their steps differently from the same operations in numpy).
EXACT = {"rsi_14", "adx_14", "plus_di", "minus_di", "trix_15"}
ULPS = 1e-12  # relative to the series' price level


def _series(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    step = rng.normal(0, 0.01, n)
    if kind == "flat":  # long runs without a move: zero gains and losses, zero directional movement
        step *= rng.random(n) < 0.2
    c = np.exp(np.cumsum(step))
    if kind == "ticks":  # a 0.001 grid: equal highs and lows inside windows
        c = 1 + np.round(np.cumsum(rng.integers(-1, 2, n)) * 1e-3, 3)
    o = np.r_[c[0], c[:-1]]
    wick = 0.002 * rng.random((2, n)) * (rng.random((2, n)) < 0.7)
    h, low = np.maximum(o, c) * (1 + wick[0]), np.minimum(o, c) * (1 - wick[1])
    if kind == "ticks":
        h, low = np.maximum(np.round(h, 3), np.maximum(o, c)), np.minimum(np.round(low, 3), np.minimum(o, c))
    return h, low, c


def _reference(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    macd, _, hist = talib.MACD(c, 12, 26, 9)
    return {"rsi_14": talib.RSI(c, 14), "macd": macd, "macd_hist": hist, "atr": talib.ATR(h, low, c, 14),
            "adx_14": talib.ADX(h, low, c, 14), "plus_di": talib.PLUS_DI(h, low, c, 14),
            "minus_di": talib.MINUS_DI(h, low, c, 14), "trix_15": talib.TRIX(c, 15),
            "ema_12": talib.EMA(c, 12), "ema_26": talib.EMA(c, 26)}


def _check_recursive(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> None:
    scale = price_scale(c[:1])
    got = _recursive(h[None], low[None], c[None], len(c))[:, 0]
    want = _reference(h * scale, low * scale, c * scale)
    assert np.isnan(got[:-1, :SEED_BARS]).all()  # the seed's bars have no value, as warm-up rows
    level = np.abs(c * scale).max()
    for k, name in enumerate(OUTPUTS):
        g, w = got[k, SEED_BARS:], want[name][SEED_BARS:]
        if name in EXACT:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=0, atol=ULPS * level, err_msg=name)


@pytest.mark.parametrize("kind", ["walk", "flat", "ticks"])
def test_recursive_indicators_equal_talib_on_edge_cases(kind):
    rng = np.random.default_rng(3)
    for _ in range(6):
        _check_recursive(*_series(kind, 1500, rng))


def test_recursive_indicators_equal_talib_on_real_candles(candles_dir):
    for path in sorted(candles_dir.glob("*-1h.csv")):
        s = load_csv(path).slice(0, 4000)
        _check_recursive(s.high, s.low, s.close)


def test_windowed_indicators_are_bit_identical_to_talib(candles_dir):
    rng = np.random.default_rng(4)
    cases = [_series(kind, 1200, rng) for kind in ("walk", "flat", "ticks")]
    for path in sorted(candles_dir.glob("*-1h.csv"))[:3]:
        s = load_csv(path).slice(0, 3000)
        cases.append((s.high, s.low, s.close))
    for h, low, c in cases:
        o = np.r_[c[0], c[:-1]]
        tab, _ = compute_arrays(o, h, low, c, np.ones_like(c))
        got = dict(zip(FEATURE_NAMES, tab.T, strict=True))
        for name, want in (("willr_14", talib.WILLR(h, low, c, 14)), ("roc_10", talib.ROC(c, 10)),
                           ("aroonosc_14", talib.AROONOSC(h, low, 14))):
            np.testing.assert_array_equal(got[name][SEED_BARS:], want[SEED_BARS:], err_msg=name)


def test_a_seed_needs_its_bars():
    c = np.ones((2, SEED_BARS - 1))
    with pytest.raises(ValueError, match=f"seeded on {SEED_BARS} bars, got {SEED_BARS - 1}"):
        seed(c, c, c)
