"""The one feature computation behind training (batch) and serving (streaming).

Every feature is scale-free: a ratio, a log return or a bounded oscillator, so the same model
serves a 60,000 USD coin and a 0.06 USD coin. Windowed statistics are computed window by window
(never as differences of running sums), so a row's value depends only on the bars in its window
and not on how much history came before it. Recursive indicators (EMA, Wilder RSI/ATR/ADX,
TRIX) depend on all history; their dependence on bars older than ``n`` shrinks like
``SLOWEST_DECAY ** n``, which is why streaming keeps a trailing buffer (see ``streaming.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import talib
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "CANDLE_FEATURES",
    "INDICATOR_FEATURES",
    "FEATURE_NAMES",
    "SEQUENCE_CHANNELS",
    "WARMUP_BARS",
    "SLOWEST_DECAY",
    "compute_arrays",
]

# OHLCV-derived features of the bar itself and its recent returns.
CANDLE_FEATURES: tuple[str, ...] = (
    "ret_1",  # log(c / c[-1])
    "ret_4",
    "ret_24",
    "hl_range",  # log(h / l)
    "body_ratio",  # (c - o) / (h - l), 0 on a flat bar
    "upper_wick",  # (h - max(o, c)) / (h - l)
    "lower_wick",  # (min(o, c) - l) / (h - l)
    "vol_chg_1",  # log1p(v) - log1p(v[-1])
)

# Technical indicators (TA-Lib where its result is per-window or recursive, numpy windows otherwise).
INDICATOR_FEATURES: tuple[str, ...] = (
    "rsi_14",  # Wilder RSI, 0..100
    "macd_norm",  # MACD(12, 26) / close
    "macd_hist_norm",  # MACD histogram (signal 9) / close
    "atr_14_norm",  # Wilder ATR / close
    "bb_pctb_20",  # position inside 2-sigma Bollinger bands
    "bb_width_20",  # band width / middle band
    "adx_14",
    "di_diff_14",  # +DI - -DI
    "cci_20",
    "mfi_14",  # money flow index, 0..100
    "stoch_k",  # slow %K (14, 3)
    "stoch_d",  # slow %D (3)
    "willr_14",
    "roc_10",  # percent
    "aroonosc_14",
    "ultosc",  # ultimate oscillator (7, 14, 28)
    "trix_15",
    "linreg_slope_14_norm",  # least-squares slope of close / close
    "ema_ratio_12_26",  # EMA12 / EMA26 - 1
    "sma_ratio_50",  # close / SMA50 - 1
    "obv_slope_norm",  # 20-bar OBV change / 20-bar volume
    "vol_z_20",  # z-score of log1p(volume) in its 20-bar window
    "rvol_24",  # std of 1-bar log returns over 24 bars
    "dist_high_24",  # log(close / 24-bar high)
    "dist_low_24",  # log(close / 24-bar low)
)

FEATURE_NAMES: tuple[str, ...] = CANDLE_FEATURES + INDICATOR_FEATURES

# Per-bar channels for sequence models: the bar relative to the previous close, plus indicators.
SEQUENCE_CHANNELS: tuple[str, ...] = (
    "open_ret",  # log(o / c[-1])
    "high_ret",  # log(h / c[-1])
    "low_ret",  # log(l / c[-1])
    "close_ret",  # log(c / c[-1])
    "vol_chg_1",
    "rsi_14_centered",  # (rsi - 50) / 50
    "bb_pctb_20",
    "atr_14_norm",
)

# First row at which every feature is defined (SMA50 needs 50 bars; TRIX(15) needs 44).
WARMUP_BARS: int = 49

# Largest per-bar retention factor among the recursive indicators: Wilder smoothing with period
# 14 keeps 13/14 of its state each bar (EMA26 keeps 25/27, TRIX 14/16).
SLOWEST_DECAY: float = 13 / 14


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[:-k]
    return out


def _rolling(
    x: np.ndarray, w: int, fn: Callable[[np.ndarray], np.ndarray], start: int
) -> np.ndarray:
    """``fn`` of each trailing window of ``w`` values, for rows >= ``start`` only (NaN elsewhere).

    A row's value depends only on its own window, never on earlier rows, so streaming (one row)
    and batch (all rows) agree bit for bit.
    """
    out = np.full(len(x), np.nan)
    first = max(start, w - 1, 0)
    if first == len(x) - 1:  # one window (streaming): skip the cost of building a strided view
        out[first:] = fn(x[None, -w:])
    elif first < len(x):
        out[first:] = fn(sliding_window_view(x[first - w + 1 :], w))
    return out


def _sum(win: np.ndarray) -> np.ndarray:
    return win.sum(axis=1)


def _mean(win: np.ndarray) -> np.ndarray:
    return win.sum(axis=1) / win.shape[1]


def _std(win: np.ndarray) -> np.ndarray:
    """Population std, two-pass (no cancellation of large squared prices)."""
    dev = win - _mean(win)[:, None]
    return np.sqrt((dev * dev).sum(axis=1) / win.shape[1])


def _mad(win: np.ndarray) -> np.ndarray:
    return np.abs(win - _mean(win)[:, None]).sum(axis=1) / win.shape[1]


def _max(win: np.ndarray) -> np.ndarray:
    return win.max(axis=1)


def _min(win: np.ndarray) -> np.ndarray:
    return win.min(axis=1)


_X14 = np.arange(14.0) - 6.5
_SLOPE14 = _X14 / (_X14 @ _X14)  # least-squares slope weights over a 14-bar window


def _slope14(win: np.ndarray) -> np.ndarray:
    return (win * _SLOPE14).sum(axis=1)


def _ratio(num: np.ndarray, den: np.ndarray, when_zero: float) -> np.ndarray:
    """num / den, with ``when_zero`` where den is 0 (a flat window is neutral, not undefined)."""
    out = np.divide(num, den, out=np.full_like(num, when_zero), where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def compute_arrays(
    o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Features of rows ``start..T-1`` of one OHLCV history (T bars, oldest first).

    Streaming passes ``start=T-1`` to pay for windowed features of the newest row only; the
    recursive TA-Lib indicators always run over the whole history given.

    Returns:
        ``(tabular, sequence)``: (T-start, len(FEATURE_NAMES)) float64 and
        (T-start, len(SEQUENCE_CHANNELS)) float32; NaN where a feature is not yet defined.
    """
    n = len(c)
    # TA-Lib compares some intermediates with an absolute epsilon (1e-8), which would make tiny
    # prices behave differently. Scaling by a power of two is exact, so bring prices near 1.
    _, exp = np.frexp(c[0])
    hs, ls, cs = (np.ldexp(x, -int(exp)) for x in (h, low, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        logc = np.log(c)
        logc_prev = _shift(logc, 1)
        c_prev = _shift(c, 1)
        ret_1 = logc - logc_prev
        lv = np.log1p(v)
        vol_chg = lv - _shift(lv, 1)
        rng = h - low
        rsi = talib.RSI(cs, 14)
        macd, _, macd_hist = talib.MACD(cs, 12, 26, 9)
        atr_norm = talib.ATR(hs, ls, cs, 14) / cs
        mid = _rolling(c, 20, _mean, start)
        sd = _rolling(c, 20, _std, start)
        tp = (h + low + c) / 3.0
        tp_prev = _shift(tp, 1)
        mf = tp * v
        up_mf = np.where(tp > tp_prev, mf, 0.0)
        down_mf = np.where(tp < tp_prev, mf, 0.0)
        up_mf[:1] = down_mf[:1] = np.nan  # the first bar has no direction
        pos_mf = _rolling(up_mf, 14, _sum, start)
        neg_mf = _rolling(down_mf, 14, _sum, start)
        hh14 = _rolling(h, 14, _max, start - 4)
        ll14 = _rolling(low, 14, _min, start - 4)
        fast_k = 100.0 * _ratio(c - ll14, hh14 - ll14, 0.5)
        slow_k = _rolling(fast_k, 3, _mean, start - 2)
        true_low = np.fmin(low, c_prev)
        buying = c - true_low
        true_range = np.fmax(h, c_prev) - true_low
        buying[0] = true_range[0] = np.nan
        ult = sum(
            wt * _ratio(_rolling(buying, k, _sum, start), _rolling(true_range, k, _sum, start), 0.5)
            for wt, k in ((4.0, 7), (2.0, 14), (1.0, 28))
        )
        signed_v = np.sign(ret_1) * v
        lv_sd = _rolling(lv, 20, _std, start)
        columns = [
            ret_1,
            logc - _shift(logc, 4),
            logc - _shift(logc, 24),
            np.log(h / low),
            _ratio(c - o, rng, 0.0),
            _ratio(h - np.maximum(o, c), rng, 0.0),
            _ratio(np.minimum(o, c) - low, rng, 0.0),
            vol_chg,
            rsi,
            macd / cs,
            macd_hist / cs,
            atr_norm,
            _ratio(c - mid, 4.0 * sd, 0.0) + 0.5,
            4.0 * sd / mid,
            talib.ADX(hs, ls, cs, 14),
            talib.PLUS_DI(hs, ls, cs, 14) - talib.MINUS_DI(hs, ls, cs, 14),
            _ratio(tp - _rolling(tp, 20, _mean, start), 0.015 * _rolling(tp, 20, _mad, start), 0.0),
            100.0 * _ratio(pos_mf, pos_mf + neg_mf, 0.5),
            slow_k,
            _rolling(slow_k, 3, _mean, start),
            talib.WILLR(hs, ls, cs, 14),
            talib.ROC(cs, 10),
            talib.AROONOSC(hs, ls, 14),
            100.0 / 7.0 * ult,
            talib.TRIX(cs, 15),
            _rolling(c, 14, _slope14, start) / c,
            talib.EMA(cs, 12) / talib.EMA(cs, 26) - 1.0,
            c / _rolling(c, 50, _mean, start) - 1.0,
            _ratio(_rolling(signed_v, 20, _sum, start), _rolling(v, 20, _sum, start), 0.0),
            _ratio(lv - _rolling(lv, 20, _mean, start), lv_sd, 0.0),
            _rolling(ret_1, 24, _std, start),
            logc - np.log(_rolling(h, 24, _max, start)),
            logc - np.log(_rolling(low, 24, _min, start)),
        ]
        tabular = np.empty((n - start, len(FEATURE_NAMES)))
        for j, col in enumerate(columns):
            tabular[:, j] = col[start:]
        sequence = np.empty((n - start, len(SEQUENCE_CHANNELS)), dtype=np.float32)
        for j, col in enumerate(
            (
                np.log(o) - logc_prev,
                np.log(h) - logc_prev,
                np.log(low) - logc_prev,
                ret_1,
                vol_chg,
                (rsi - 50.0) / 50.0,
                columns[FEATURE_NAMES.index("bb_pctb_20")],
                atr_norm,
            )
        ):
            sequence[:, j] = col[start:]
    return tabular, sequence
