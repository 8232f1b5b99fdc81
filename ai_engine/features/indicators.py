"""The one feature computation behind training (batch) and serving (streaming).

Every feature is scale-free: a ratio, a log return or a bounded oscillator, so the same model
serves a 60,000 USD coin and a 0.06 USD coin. Windowed statistics are computed window by window
(never as differences of running sums), so a row's value depends only on the bars in its window
and not on how much history came before it. Recursive indicators (EMA, Wilder RSI/ATR/ADX,
TRIX) depend on all history; their dependence on bars older than ``n`` shrinks like
``SLOWEST_DECAY ** n``, which is how much history streaming is primed with (see ``streaming.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai_engine.features.recursive import OUTPUTS, SEED_BARS, advance, seed

__all__ = [
    "CANDLE_FEATURES",
    "INDICATOR_FEATURES",
    "FEATURE_NAMES",
    "SEQUENCE_CHANNELS",
    "WARMUP_BARS",
    "SLOWEST_DECAY",
    "compute_arrays",
    "price_scale",
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

# Technical indicators, as TA-Lib defines them (the recursive ones stepped in recursive.py, all
# symbols at once; the windowed ones as numpy window reductions).
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


# Bars before a row that its windowed and elementwise features read (SMA50 is the longest window).
_CONTEXT = 49

# Rows per pass of _rows over a long history: keeps its (rows, window) temporaries in cache.
_BLOCK = 2048

# Bar series that _rows derives over its bars, ordered so that each group it takes together (a
# log, a window reduction, a subtraction) is one slice.
_O, _H, _L, _C, _TP, _LV, _SV, _V, _UP, _DOWN, _BUY, _TR, _RET = range(13)

# _rows computes features into a scratch stack, ordered so that neighbours are computed in one
# call, then gathers FEATURE_NAMES and SEQUENCE_CHANNELS from it by name. It is handed the
# recursive indicators' outputs and the close they were computed on (scaled, to normalise MACD
# and ATR); the windowed ones it computes itself.
_RECURSIVE = (*OUTPUTS, "close")
_RATIOS = (  # taken in one pass (%b, fast %K and MFI are finished in place), and their value
    # where the denominator is 0: a flat window is neutral, not undefined
    ("body_ratio", 0.0),
    ("upper_wick", 0.0),
    ("lower_wick", 0.0),
    ("bb_pctb_20", 0.0),
    ("cci_20", 0.0),
    ("vol_z_20", 0.0),
    ("obv_slope_norm", 0.0),
    ("fast_k", 0.5),
    ("mfi_14", 0.5),
    ("ult_14", 0.5),
    ("ult_7", 0.5),
    ("ult_28", 0.5),
)
_SCRATCH = (
    *_RECURSIVE,
    "willr_14",
    "roc_10",
    "aroonosc_14",
    *(name for name, _ in _RATIOS),
    "open_ret",
    "high_ret",
    "low_ret",
    "ret_1",
    "ret_4",
    "ret_24",
    "vol_chg_1",
    "hl_range",
    "high_24",
    "low_24",
    "dist_high_24",
    "dist_low_24",
    "macd_norm",
    "macd_hist_norm",
    "atr_14_norm",
    "bb_width_20",
    "di_diff_14",
    "stoch_k",
    "stoch_d",
    "ultosc",
    "linreg_slope_14_norm",
    "ema_ratio_12_26",
    "sma_ratio_50",
    "rvol_24",
    "rsi_14_centered",
    "sma_20",  # the close's 20-bar mean (%b and the band width)
)
_R = {name: k for k, name in enumerate(_SCRATCH)}
_TAKE_TABULAR = np.array([_R[name] for name in FEATURE_NAMES])
_TAKE_SEQUENCE = np.array([_R["ret_1" if n == "close_ret" else n] for n in SEQUENCE_CHANNELS])
_RATIO_ROWS = slice(_R[_RATIOS[0][0]], _R[_RATIOS[0][0]] + len(_RATIOS))
_WHEN_ZERO = np.array([value for _, value in _RATIOS])[:, None, None]
# Factors of the %b, CCI and volume-z denominators (close std, typical-price mean deviation,
# log-volume std), and the ultimate oscillator's weights of its 14, 7 and 28-bar ratios.
_SPREAD_SCALE = np.array([4.0, 0.015, 1.0])[:, None, None]
_ULT_WEIGHTS = np.array([2.0, 4.0, 1.0])[:, None, None]

_X14 = np.arange(14.0) - 6.5
_SLOPE14 = _X14 / (_X14 @ _X14)  # least-squares slope weights over a 14-bar window


def _span(first: str, last: str) -> slice:
    """The scratch rows from ``first`` to ``last``."""
    return slice(_R[first], _R[last] + 1)


def _windows(x: np.ndarray, w: int, rows: int) -> np.ndarray:
    """The last ``rows`` trailing windows of ``w`` values along the last axis of C-contiguous ``x``.

    A (..., rows, w) strided view like ``sliding_window_view``, at a twentieth of its per-call cost
    (which dominates when streaming computes one row). Each window is reduced on its own, so a row
    depends only on its window.
    """
    step = x.itemsize
    offset = (x.shape[-1] - rows - w + 1) * step
    return np.ndarray(x.shape[:-1] + (rows, w), x.dtype, x, offset, x.strides[:-1] + (step, step))


def _extreme(fn: np.ufunc, x: np.ndarray, w: int, rows: int) -> np.ndarray:
    """``fn`` (np.maximum or np.minimum) over each of the last ``rows`` trailing windows of ``w``
    values along the last axis, folded from shifted slices in log2(w) passes: a max or a min does
    not depend on the order it is taken in, so this equals the window reduction exactly (NaN
    included), at a fraction of its cost for short windows."""
    y, span = x[..., x.shape[-1] - rows - w + 1 :], 1
    while 2 * span <= w:
        y = fn(y[..., :-span], y[..., span:])  # windows of 2 * span
        span *= 2
    if span < w:
        y = fn(y[..., : y.shape[-1] - (w - span)], y[..., w - span :])
    return y


def _sum(win: np.ndarray) -> np.ndarray:
    """Sum over the last axis (numpy's pairwise summation, as every window sum here)."""
    return np.add.reduce(win, axis=-1)


def _ratio(num: np.ndarray, den: np.ndarray, when_zero: np.ndarray, out: np.ndarray) -> None:
    """out = num / den, with ``when_zero`` where den is 0 and NaN where either is NaN."""
    np.divide(num, den, out=out)
    flat = den == 0
    if np.count_nonzero(flat):
        np.copyto(out, np.where(np.isnan(num), np.nan, when_zero), where=flat)


def price_scale(first_close: np.ndarray) -> np.ndarray:
    """The power of two that brings a series' first close near 1, by which its prices are scaled
    before the recursive indicators see them: they compare some intermediates with TA-Lib's
    absolute epsilon (1e-8), which would make tiny prices behave differently, and scaling by a
    power of two is exact."""
    return np.ldexp(1.0, -np.frexp(first_close)[1])


def _recursive(h: np.ndarray, low: np.ndarray, c: np.ndarray, rows: int) -> np.ndarray:
    """The recursive indicators of the last ``rows`` bars of each symbol ((S, T) inputs, every bar
    stepped, all symbols at once): (len(_RECURSIVE), S, rows), NaN where a bar is inside the seed;
    the last row is the close as scaled for them."""
    n_sym, n = c.shape
    out = np.full((len(_RECURSIVE), n_sym, rows), np.nan)
    scale = price_scale(c[:, :1])
    h, low, c = h * scale, low * scale, c * scale
    out[-1] = c[:, -rows:]
    if n > SEED_BARS:
        keep = min(rows, n - SEED_BARS)
        out[:-1, :, rows - keep :] = advance(seed(h, low, c), h[:, SEED_BARS:], low[:, SEED_BARS:], c[:, SEED_BARS:], keep)
    return out


def compute_arrays(
    o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, v: np.ndarray, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Features of rows ``start..T-1`` of an OHLCV history (T bars, oldest first), of one symbol
    ((T,) arrays) or of S symbols at once ((S, T) arrays).

    Only the recursive TA-Lib indicators read the whole history; every other feature reads at most
    ``_CONTEXT`` bars before its row, so streaming (``start=T-1``) computes those over 50 bars.

    Returns:
        ``(tabular, sequence)``: (..., T-start, len(FEATURE_NAMES)) float64 and
        (..., T-start, len(SEQUENCE_CHANNELS)) float32; NaN where a feature is not yet defined.
    """
    shape = np.shape(c)
    n = shape[-1]
    if not 0 <= start < n:
        raise ValueError(f"start must be in [0, {n}), got {start}")
    bars = [np.asarray(x, dtype=np.float64).reshape(-1, n) for x in (o, h, low, c, v)]
    _, h, low, c, _ = bars
    rows = n - start
    tabular = np.empty((len(c), rows, len(FEATURE_NAMES)))
    sequence = np.empty((len(c), rows, len(SEQUENCE_CHANNELS)), dtype=np.float32)
    ta = _recursive(h, low, c, rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        for first in range(start, n, _BLOCK):
            end = min(first + _BLOCK, n)
            part = slice(first - start, end - start)
            _rows(bars, first, end, ta[..., part], tabular[:, part], sequence[:, part])
    return tabular.reshape(*shape[:-1], rows, -1), sequence.reshape(*shape[:-1], rows, -1)


def _windowed(b: np.ndarray, high14: np.ndarray, range14: np.ndarray, rows: int, now: np.ndarray) -> None:
    """Williams %R(14), ROC(10) and the Aroon oscillator(14) of the rows, as TA-Lib computes them
    (bit-identical to its functions: max, min and these ratios round the same whatever the
    order), 0 where TA-Lib gives 0 on a zero denominator."""
    c = b[_C, :, -rows:]
    willr, roc = now[_R["willr_14"]], now[_R["roc_10"]]
    np.divide(high14 - c, range14, out=willr)
    willr *= -100.0
    np.copyto(willr, 0.0, where=range14 == 0)
    past = b[_C, :, -rows - 10 : -10]
    np.divide(c, past, out=roc)
    roc -= 1.0
    roc *= 100.0
    np.copyto(roc, 0.0, where=past == 0)
    # bars since the highest high and the lowest low of the last 15, the latest on a tie
    highs, lows = _windows(b[_H], 15, rows)[..., ::-1], _windows(b[_L], 15, rows)[..., ::-1]
    aroon = now[_R["aroonosc_14"]]
    np.multiply(100.0 / 14, lows.argmin(axis=-1) - highs.argmax(axis=-1), out=aroon)
    # NaN (bars before the history) only ever lead a series: a window holds one iff its first bar is
    first = slice(b.shape[-1] - rows - 14, b.shape[-1] - 14)
    np.copyto(aroon, np.nan, where=np.isnan(b[_H, :, first]) | np.isnan(b[_L, :, first]))


@dataclass(slots=True)
class _Scratch:
    """What the sequence phase of :func:`_rows` leaves for its tabular phase."""

    b: np.ndarray  # (13, S, m) bars and derived series
    logs: np.ndarray  # (4, S, m) log open/high/low/close over the columns they are read
    w: np.ndarray  # (len(_SCRATCH), S, ext) scratch rows
    nd: np.ndarray  # (len(_RATIOS), 2, S, ext) ratio numerators and denominators
    rows: int
    pad: int


def _rows(
    bars: list[np.ndarray],
    first: int,
    end: int,
    ta: np.ndarray,
    tabular: np.ndarray,
    sequence: np.ndarray,
) -> None:
    """Fill rows ``first..end-1`` of ``tabular`` and ``sequence`` ((S, rows, columns)), given the
    recursive indicators' outputs ``ta`` of those rows and all ``bars`` (open, high, low, close,
    volume: (S, T)), of which it reads bars ``first - _CONTEXT`` to ``end - 1``."""
    _tabular_rows(_sequence_rows(bars, first, end, ta, sequence), tabular)


def _sequence_rows(bars: list[np.ndarray], first: int, end: int, ta: np.ndarray, sequence: np.ndarray) -> _Scratch:
    """The sequence channels of the rows (``_rows``'s first phase): serving hands them to the
    sequence models before the tabular phase runs, which continues from the returned scratch.

    Per-call overhead, not arithmetic, is the cost of a streaming row, hence window reductions and
    ratios taken together, and results written in place.
    """
    symbols, rows, m = ta.shape[1], end - first, end - first + _CONTEXT
    ext = rows + 4  # rows of the ratios: fast %K is smoothed twice over 3 bars
    # The m bars, NaN before the first bar of the history: a window reaching there is NaN, as a
    # row not yet defined. The first bar here has no previous one.
    pad = max(_CONTEXT - first, 0)
    b = np.empty((13, symbols, m))
    b[..., : pad + 1] = np.nan
    for k, x in zip((_O, _H, _L, _C, _V), bars, strict=True):
        b[k, :, pad:] = x[:, end + pad - m : end]
    c, v = b[_C], b[_V]
    # Each derived series over the last columns its windows read, no more (a streaming row's
    # cost is these passes): log close for ret_24 and the 24-bar volatility, log volume for its
    # 20-bar window.
    logs = np.empty((4, symbols, m))
    np.log(b[_O : _C + 1, :, -rows:], out=logs[..., -rows:])
    np.log(b[_C, :, -rows - 24 : -rows], out=logs[_C, :, -rows - 24 : -rows])
    t20 = slice(m - rows - 19, m)
    np.log1p(v[:, t20], out=b[_LV, :, t20])
    w = np.empty((len(_SCRATCH), symbols, ext))
    now = w[..., -rows:]  # the rows asked for
    now[: len(_RECURSIVE)] = ta
    nd = np.empty((len(_RATIOS), 2, symbols, ext))
    r = slice(ext - rows, ext)
    # %b: the close's place in its 20-bar mean +- 2 std
    win = _windows(c, 20, rows)
    mean = _sum(win) / 20
    dev = win - mean[..., None]
    np.multiply(dev, dev, out=dev)
    std = _sum(dev)
    std /= 20
    np.sqrt(std, out=std)
    np.multiply(std, _SPREAD_SCALE[0], out=nd[3, 1, :, r])
    np.subtract(c[:, -rows:], mean, out=nd[3, 0, :, r])
    pctb = _R["bb_pctb_20"]
    _ratio(nd[3, 0, :, r], nd[3, 1, :, r], _WHEN_ZERO[3], w[pctb, :, r])
    w[pctb, :, r] += 0.5
    np.subtract(logs[..., -rows:], logs[_C, :, -rows - 1 : -1], out=now[_span("open_ret", "ret_1")])
    np.subtract(b[_LV, :, -rows:], b[_LV, :, -rows - 1 : -1], out=now[_R["vol_chg_1"]])
    np.divide(now[_R["atr"]], now[_R["close"]], out=now[_R["atr_14_norm"]])
    np.divide(now[_R["rsi_14"]] - 50.0, 50.0, out=now[_R["rsi_14_centered"]])
    w[_R["sma_20"], :, r] = mean
    sequence[...] = now[_TAKE_SEQUENCE].transpose(1, 2, 0)
    return _Scratch(b, logs, w, nd, rows, pad)


def _tabular_rows(x: _Scratch, tabular: np.ndarray) -> None:
    """The tabular features of the rows (``_rows``'s second phase), from its first phase's scratch."""
    b, logs, w, nd, rows, pad = x.b, x.logs, x.w, x.nd, x.rows, x.pad
    symbols, m, ext = b.shape[1], b.shape[2], w.shape[2]
    c, v, tp = b[_C], b[_V], b[_TP]
    now = w[..., -rows:]
    r = slice(ext - rows, ext)
    logc = logs[_C]
    np.subtract(logc[:, -rows - 23 :], logc[:, -rows - 24 : -1], out=b[_RET, :, -rows - 23 :])
    t20 = slice(m - rows - 19, m)
    np.add(b[_H, :, t20], b[_L, :, t20], out=tp[:, t20])
    tp[:, t20] += c[:, t20]
    tp[:, t20] /= 3.0
    np.multiply(np.sign(b[_RET, :, t20]), v[:, t20], out=b[_SV, :, t20])
    t14, p14 = slice(m - rows - 13, m), slice(m - rows - 14, m - 1)
    np.greater(tp[:, t14], tp[:, p14], out=b[_UP, :, t14])
    np.less(tp[:, t14], tp[:, p14], out=b[_DOWN, :, t14])
    b[_UP : _DOWN + 1, :, t14] *= tp[:, t14] * v[:, t14]  # money flow of rising / falling bars, else 0
    t28, p28 = slice(m - rows - 27, m), slice(m - rows - 28, m - 1)
    c_prev = c[:, p28]
    true_low = np.fmin(b[_L, :, t28], c_prev)
    np.subtract(c[:, t28], true_low, out=b[_BUY, :, t28])
    np.subtract(np.fmax(b[_H, :, t28], c_prev), true_low, out=b[_TR, :, t28])
    if pad:  # the first bar has no direction
        b[_UP : _TR + 1, :, : pad + 1] = np.nan

    # Ratios: nd[k] is (numerator, denominator) of _RATIOS[k], body 0, wicks 1-2, %b 3 (the
    # first phase's), CCI / volume z 4-5, OBV 6, fast %K 7, MFI / ultimate 14 8-9, ultimate 7 and
    # 28 10-11. Only fast %K is needed before the rows asked for (it is smoothed twice over 3
    # bars); the other ratios are taken on the rows alone.
    win20 = _windows(b[_TP : _V + 1], 20, rows)  # typical price, log volume, OBV, volume
    sum20 = _sum(win20)
    mean20 = sum20[:2] / 20
    dev20 = win20[:2] - mean20[..., None]
    np.abs(dev20[0], out=dev20[0])  # mean absolute deviation of typical price, std of log volume
    np.multiply(dev20[1], dev20[1], out=dev20[1])
    spread = _sum(dev20)
    spread /= 20
    np.sqrt(spread[1], out=spread[1])
    nd[4:6, 1, :, r] = spread * _SPREAD_SCALE[1:]
    nd[4:6, 0, :, r] = b[_TP : _LV + 1, :, -rows:] - mean20
    nd[6, :, :, r] = sum20[2:]
    low14, high14 = _extreme(np.minimum, b[_L], 14, ext), _extreme(np.maximum, b[_H], 14, ext)
    np.subtract(b[_C, :, -ext:], low14, out=nd[7, 0])
    np.subtract(high14, low14, out=nd[7, 1])
    _windowed(b, high14[:, -rows:], nd[7, 1, :, -rows:], rows, now)
    # 14-bar sums of up / down money flow and of buying pressure / true range
    nd[8:10, ..., r] = _sum(_windows(b[_UP : _TR + 1], 14, rows)).reshape(2, 2, symbols, rows)
    nd[8, 1, :, r] += nd[8, 0, :, r]
    nd[10, ..., r] = _sum(_windows(b[_BUY : _TR + 1], 7, rows))
    nd[11, ..., r] = _sum(_windows(b[_BUY : _TR + 1], 28, rows))
    o, h, low, c = b[_O : _C + 1, :, -ext:]
    np.subtract(c, o, out=nd[0, 0])
    np.subtract(h, np.maximum(o, c), out=nd[1, 0])
    np.subtract(np.minimum(o, c), low, out=nd[2, 0])
    np.subtract(h, low, out=nd[0, 1])
    nd[1:3, 1] = nd[0, 1]
    first = _RATIO_ROWS.start
    for k in (slice(0, 3), slice(4, len(_RATIOS))):  # all but %b
        _ratio(nd[k, 0, :, r], nd[k, 1, :, r], _WHEN_ZERO[k], w[first + k.start : first + k.stop, :, r])
    fast_k = _R["fast_k"]
    _ratio(nd[7, 0], nd[7, 1], _WHEN_ZERO[7], w[fast_k])
    w[fast_k] *= 100.0
    w[_R["mfi_14"], :, r] *= 100.0
    np.divide(_sum(_windows(w[_R["fast_k"]], 3, rows + 2)), 3, out=w[_R["stoch_k"], :, 2:])
    np.divide(_sum(_windows(w[_R["stoch_k"]], 3, rows)), 3, out=now[_R["stoch_d"]])
    ult = np.add.reduce(w[_span("ult_14", "ult_28"), :, r] * _ULT_WEIGHTS, axis=0)  # (a + b) + c
    np.multiply(100.0 / 7.0, ult, out=now[_R["ultosc"]])

    c, logc = c[:, -rows:], logc[:, -rows:]
    np.subtract(logc, logs[_C, :, -rows - 4 : -4], out=now[_R["ret_4"]])
    np.subtract(logc, logs[_C, :, -rows - 24 : -24], out=now[_R["ret_24"]])
    np.divide(h[:, -rows:], low[:, -rows:], out=now[_R["hl_range"]])
    now[_R["high_24"]] = _extreme(np.maximum, b[_H], 24, rows)
    now[_R["low_24"]] = _extreme(np.minimum, b[_L], 24, rows)
    extremes = now[_span("hl_range", "low_24")]
    np.log(extremes, out=extremes)
    np.subtract(logc, extremes[1:], out=now[_span("dist_high_24", "dist_low_24")])
    np.divide(now[_span("macd", "macd_hist")], now[_R["close"]], out=now[_span("macd_norm", "macd_hist_norm")])
    np.divide(nd[3, 1, :, -rows:], now[_R["sma_20"]], out=now[_R["bb_width_20"]])  # 4 std / mean
    np.subtract(now[_R["plus_di"]], now[_R["minus_di"]], out=now[_R["di_diff_14"]])
    slope = _sum(_windows(b[_C], 14, rows) * _SLOPE14)
    np.divide(slope, c, out=now[_R["linreg_slope_14_norm"]])
    np.divide(now[_R["ema_12"]], now[_R["ema_26"]], out=now[_R["ema_ratio_12_26"]])
    np.divide(c, _sum(_windows(b[_C], 50, rows)) / 50, out=now[_R["sma_ratio_50"]])
    now[_span("ema_ratio_12_26", "sma_ratio_50")] -= 1.0
    ret24 = _windows(b[_RET], 24, rows)
    dev24 = ret24 - (_sum(ret24) / 24)[..., None]
    np.sqrt(_sum(dev24 * dev24) / 24, out=now[_R["rvol_24"]])
    tabular[...] = now[_TAKE_TABULAR].transpose(1, 2, 0)
