"""The recursive indicators (RSI, MACD, ATR, ADX/DI, TRIX, EMA) of many series, one bar at a time.

TA-Lib computes one series per call, so a closing time of 400 symbols cost 4,800 stream-handle
calls from a Python loop. Here the state each indicator carries from bar to bar (Wilder's averages
of gains and losses, his sums of directional movement and true range, the EMAs) is one row per
quantity with a column per series, and a bar of every series is one pass of elementwise numpy
operations. Batch runs the same ``step`` over its bars, so streaming equals batch bit for bit.

The definitions are TA-Lib's (its seeds: sums taken value after value at the same bars, MACD's
fast EMA aligned on the slow one's first value, ``TA_IS_ZERO``'s absolute epsilon; its recursions
``((x - ema) * k) + ema`` and Wilder's), so the values equal TA-Lib's to a few units in the last
place (tested against it): its compiled library rounds some steps differently, which no sequence
of numpy operations reproduces for every indicator.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FIELDS", "OUTPUTS", "SEED_BARS", "advance", "seed", "step"]

SEED_BARS = 49  # bars a state is seeded on (every seed lies inside them); outputs start at the next

_EPS = 1e-8  # TA_IS_ZERO: |x| below this counts as zero
_K12, _K26, _K9, _K15 = (2.0 / (n + 1) for n in (12, 26, 9, 15))  # TA-Lib's EMA factors
_R14 = 1.0 / 14  # TA-Lib's RSI smooths by this factor, not by a division

# Quantities carried from bar to bar, one row each of a (len(FIELDS), symbols) state.
FIELDS = (
    "close", "high", "low",  # the previous bar
    "gain", "loss",  # RSI(14): Wilder averages
    "fast", "slow", "signal",  # MACD(12, 26, 9): its EMAs (slow is also EMA26)
    "atr",  # ATR(14)
    "pdm", "mdm", "tr", "adx",  # ADX / +DI / -DI(14): Wilder sums and the ADX
    "e1", "e2", "e3",  # TRIX(15): the triple EMA
    "ema12",
)
OUTPUTS = ("rsi_14", "macd", "macd_hist", "atr", "adx_14", "plus_di", "minus_di", "trix_15", "ema_12", "ema_26")
_F = {name: k for k, name in enumerate(FIELDS)}


def _zero(x: np.ndarray) -> np.ndarray:
    return np.abs(x) < _EPS  # TA_IS_ZERO: -eps < x < eps


def _true_range(h: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(h - low, np.abs(prev_close - h)), np.abs(prev_close - low))


def _seq_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis one value after another, as TA-Lib sums (numpy's sum is pairwise)."""
    return np.cumsum(x, axis=-1)[..., -1]


def _dm(st: np.ndarray, h: np.ndarray, low: np.ndarray, tr: np.ndarray, wilder: bool) -> None:
    """Directional movement of one bar, and its true range ``tr``, into ``pdm``/``mdm``/``tr``:
    summed during the seed, Wilder-smoothed after it; the previous high and low move on."""
    diff_p, diff_m = h - st[_F["high"]], st[_F["low"]] - low
    minus = (diff_m > 0) & (diff_p < diff_m)
    plus = (diff_p > 0) & (diff_p > diff_m) & ~minus
    sums = st[_F["pdm"] : _F["tr"] + 1]
    if wilder:
        sums -= sums / 14
    np.add(sums[1], diff_m, out=sums[1], where=minus)
    np.add(sums[0], diff_p, out=sums[0], where=plus)
    sums[2] += tr
    st[_F["high"]], st[_F["low"]] = h, low


def _di(st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(+DI and -DI (2, S), whether true range is non-zero), from the Wilder sums."""
    tr = st[_F["tr"]]
    live = ~_zero(tr)
    di = 100.0 * (st[_F["pdm"] : _F["mdm"] + 1] / tr)
    np.copyto(di, 0.0, where=~live)
    return di, live


def _dx(di: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(DX of the DIs, where it is defined)."""
    pdi, mdi = di
    total = mdi + pdi
    return 100.0 * (np.abs(mdi - pdi) / total), live & ~_zero(total)


def _smooth_adx(st: np.ndarray, di: np.ndarray, live: np.ndarray) -> None:
    """The DX of the DIs into the ADX (Wilder's smoothing), where it is defined."""
    dx, ok = _dx(di, live)
    adx = st[_F["adx"]]
    np.copyto(adx, ((adx * 13) + dx) / 14, where=ok)


def _ema(prev: np.ndarray, x: np.ndarray, k: float) -> np.ndarray:
    return ((x - prev) * k) + prev


def seed(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The state after the first ``SEED_BARS`` bars of S series ((S, >= SEED_BARS) scaled high,
    low, close from each series' first bar): each indicator seeded as TA-Lib seeds it, then
    smoothed to the last of those bars."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero divisor's row is set apart
        return _seed(h, low, c)


def _seed(h: np.ndarray, low: np.ndarray, c: np.ndarray) -> np.ndarray:
    n_sym, n = c.shape
    if n < SEED_BARS:
        raise ValueError(f"a state is seeded on {SEED_BARS} bars, got {n}")
    h, low, c = h[:, :SEED_BARS], low[:, :SEED_BARS], c[:, :SEED_BARS]
    st = np.zeros((len(FIELDS), n_sym))
    # RSI: gains and losses of bars 1..14 summed, averaged, then Wilder's smoothing
    gain, loss = st[_F["gain"]], st[_F["loss"]]
    for d in (c[:, 1:15] - c[:, :14]).T:
        np.subtract(loss, d, out=loss, where=d < 0)
        np.add(gain, d, out=gain, where=~(d < 0))
    loss /= 14
    gain /= 14
    for t in range(15, SEED_BARS):
        _rsi(st, c[:, t - 1], c[:, t])
    # MACD: the slow EMA seeded on bars 0..25, the fast on 14..25 (TA-Lib aligns their first
    # values), the signal on the MACD line of bars 25..33
    slow, fast = _seq_sum(c[:, :26]) / 26, _seq_sum(c[:, 14:26]) / 12
    line = [fast - slow]
    for t in range(26, 34):
        fast, slow = _ema(fast, c[:, t], _K12), _ema(slow, c[:, t], _K26)
        line.append(fast - slow)
    signal = _seq_sum(np.stack(line, axis=-1)) / 9
    for t in range(34, SEED_BARS):
        fast, slow = _ema(fast, c[:, t], _K12), _ema(slow, c[:, t], _K26)
        signal = _ema(signal, fast - slow, _K9)
    st[_F["fast"]], st[_F["slow"]], st[_F["signal"]] = fast, slow, signal
    # ATR: the mean true range of bars 1..14, then Wilder's smoothing
    tr = _true_range(h[:, 1:], low[:, 1:], c[:, :-1])
    atr = _seq_sum(tr[:, :14]) / 14
    for t in range(15, SEED_BARS):
        atr = ((atr * 13) + tr[:, t - 1]) / 14
    st[_F["atr"]] = atr
    # ADX: directional movement summed over bars 1..13, smoothed from bar 14; the ADX is the mean
    # DX of bars 14..27, then smoothed
    st[_F["close"]], st[_F["high"]], st[_F["low"]] = c[:, 0], h[:, 0], low[:, 0]
    dx_sum = np.zeros(n_sym)
    for t in range(1, SEED_BARS):
        _dm(st, h[:, t], low[:, t], tr[:, t - 1], wilder=t >= 14)
        if t < 14:
            continue
        di, live = _di(st)
        if t <= 27:
            dx, ok = _dx(di, live)
            np.add(dx_sum, dx, out=dx_sum, where=ok)
            if t == 27:
                st[_F["adx"]] = dx_sum / 14
        else:
            _smooth_adx(st, di, live)
    # TRIX: three EMAs, each seeded on the first 15 values of the one before
    e1 = [_seq_sum(c[:, :15]) / 15]
    for t in range(15, SEED_BARS):
        e1.append(_ema(e1[-1], c[:, t], _K15))
    e2 = [_seq_sum(np.stack(e1[:15], axis=-1)) / 15]
    for x in e1[15:]:
        e2.append(_ema(e2[-1], x, _K15))
    e3 = _seq_sum(np.stack(e2[:15], axis=-1)) / 15
    for x in e2[15:]:
        e3 = _ema(e3, x, _K15)
    st[_F["e1"]], st[_F["e2"]], st[_F["e3"]] = e1[-1], e2[-1], e3
    # EMA12 (EMA26 is MACD's slow EMA: both seeded on bars 0..25)
    ema = _seq_sum(c[:, :12]) / 12
    for t in range(12, SEED_BARS):
        ema = _ema(ema, c[:, t], _K12)
    st[_F["ema12"]] = ema
    st[_F["close"]] = c[:, SEED_BARS - 1]
    return st


def advance(st: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray, keep: int) -> np.ndarray:
    """Step ``st`` over the n bars ((S, n) arrays) and return the outputs of the last ``keep``:
    (len(OUTPUTS), S, keep)."""
    n = c.shape[1]
    out = np.empty((len(OUTPUTS), len(c), keep))
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero divisor's row is set apart
        for t in range(n):
            o = step(st, h[:, t], low[:, t], c[:, t])
            if t >= n - keep:
                out[..., t - n + keep] = o
    return out


def _rsi(st: np.ndarray, prev: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = c - prev
    gl = st[_F["gain"] : _F["loss"] + 1]
    gl *= 13
    down = d < 0
    np.subtract(gl[1], d, out=gl[1], where=down)
    np.add(gl[0], d, out=gl[0], where=~down)
    gl *= _R14
    total = gl[0] + gl[1]
    rsi = 100.0 * (gl[0] / total)
    np.copyto(rsi, 0.0, where=_zero(total))
    return rsi


def step(st: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Advance ``st`` ((len(FIELDS), S), in place) by one bar of each series ((S,) scaled high,
    low, close) and return the recursive outputs (len(OUTPUTS), S). Divisions by zero are the
    caller's to silence (``advance``): their rows are replaced as TA-Lib replaces them."""
    out = np.empty((len(OUTPUTS), len(c)))
    prev = st[_F["close"]].copy()
    out[0] = _rsi(st, prev, c)
    fast, slow = _ema(st[_F["fast"]], c, _K12), _ema(st[_F["slow"]], c, _K26)
    line = fast - slow
    signal = _ema(st[_F["signal"]], line, _K9)
    st[_F["fast"]], st[_F["slow"]], st[_F["signal"]] = fast, slow, signal
    out[1], out[2] = line, line - signal
    tr = _true_range(h, low, prev)
    atr = st[_F["atr"]]
    atr *= 13
    atr += tr
    atr /= 14
    out[3] = atr
    _dm(st, h, low, tr, wilder=True)
    di, live = _di(st)
    _smooth_adx(st, di, live)
    out[4], out[5:7] = st[_F["adx"]], di
    e1 = _ema(st[_F["e1"]], c, _K15)
    e2 = _ema(st[_F["e2"]], e1, _K15)
    e3_prev = st[_F["e3"]]
    e3 = _ema(e3_prev, e2, _K15)
    trix = ((e3 / e3_prev) - 1.0) * 100.0
    np.copyto(trix, 0.0, where=e3_prev == 0.0)
    out[7] = trix
    st[_F["e1"]], st[_F["e2"]], st[_F["e3"]] = e1, e2, e3
    ema12 = st[_F["ema12"]] = _ema(st[_F["ema12"]], c, _K12)
    out[8], out[9] = ema12, slow
    st[_F["close"]] = c
    return out
