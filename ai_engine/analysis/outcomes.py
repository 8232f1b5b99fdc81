"""Score predictions against what the market did (failure mode 16), never against the ensemble.

Each prediction made at candle t is compared with the log return from the close of t to the
close of t + horizon, recorded in the ``candles`` table. The band at t uses only candles up to t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ai_engine.analysis.labels import LabelSpec
from ai_engine.analysis.reader import ModelRows, Series
from ai_engine.training.labels import rolling_sigma

__all__ = ["Outcomes", "score_outcomes", "OUTCOME_STATES", "VOL_COVERAGE"]

# state per row: 0 scored, 1 pending (horizon not elapsed), then reasons it cannot be scored
OUTCOME_STATES = (
    "scored",
    "pending",
    "no candles recorded for the symbol",
    "no candle at decision time",
    "candle at horizon missing (gap)",
)
VOL_COVERAGE = 0.9  # share of the vol_window returns that must be recorded before t for a vol band


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Per row: ``state`` (index into OUTCOME_STATES), realised class, whether the band fell back."""

    state: np.ndarray  # int8
    realised: np.ndarray  # int8 CLASS_ORDER index, -1 unless scored
    band_fallback: np.ndarray  # bool: vol band wanted, fixed band used (history missing)


def _vol_band(close: np.ndarray, spec: LabelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Band per grid row and whether it fell back to the fixed band (the training labels' sigma;
    the vol band needs ``VOL_COVERAGE`` of its window recorded, else the fixed band is used)."""
    n = close.size
    if spec.mode == "fixed":
        return np.full(n, spec.fixed_band), np.zeros(n, dtype=bool)
    sigma, cnt = rolling_sigma(close, spec.vol_window, spec.horizon)
    ok = cnt >= max(2, math.ceil(VOL_COVERAGE * spec.vol_window))
    return np.where(ok, np.maximum(spec.fee_band, spec.k * np.nan_to_num(sigma)), spec.fixed_band), ~ok


def score_outcomes(rows: ModelRows, series: tuple[Series, ...], mask: np.ndarray) -> Outcomes:
    """Outcomes of the rows selected by ``mask`` (the valid predictions); other rows stay unscored."""
    n = rows.t.size
    state = np.full(n, 2, dtype=np.int8)
    realised = np.full(n, -1, dtype=np.int8)
    fallback = np.zeros(n, dtype=bool)
    for s_idx in np.unique(rows.series[mask]):
        if s_idx < 0:
            continue
        ser = series[s_idx]
        for l_idx in np.unique(rows.label[mask & (rows.series == s_idx)]):
            spec = rows.labels[l_idx]
            sel = np.flatnonzero(mask & (rows.series == s_idx) & (rows.label == l_idx))
            h = spec.horizon
            t = rows.t[sel]
            off = t - ser.t0
            g = off // ser.interval_ms
            at = (off % ser.interval_ms == 0) & (g >= 0) & (g < ser.close.size)
            gi = np.where(at, g, 0)
            c0 = np.where(at, ser.close[gi] if ser.close.size else np.nan, np.nan)
            has0 = np.isfinite(c0)
            pending = t + h * ser.interval_ms > (ser.last_ms if ser.last_ms is not None else -1)
            gh = gi + h
            inside = at & (gh < ser.close.size)
            ch = np.full(sel.size, np.nan)
            ch[inside] = ser.close[gh[inside]]
            hash_ = np.isfinite(ch)
            st = np.where(~has0, 3, np.where(pending, 1, np.where(hash_, 0, 4))).astype(np.int8)
            state[sel] = st
            if not ser.close.size:
                continue
            b, fb = _vol_band(ser.close, spec)
            fallback[sel] = has0 & fb[gi]
            ok = st == 0
            r = np.log(ch[ok] / c0[ok])
            bb = b[gi[ok]]
            realised[sel[ok]] = np.where(r > bb, 2, np.where(r < -bb, 0, 1))
    return Outcomes(state, realised, fallback)
