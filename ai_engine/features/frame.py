"""Batch features of a whole candle series, and the sequence windows cut from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ai_engine.data.candles import CandleSeries
from ai_engine.features.indicators import (
    FEATURE_NAMES,
    SEQUENCE_CHANNELS,
    WARMUP_BARS,
    compute_arrays,
)

__all__ = ["FeatureFrame", "compute_features", "sequence_windows"]


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """Features of every bar of one series (arrays are read-only).

    Attributes:
        open_time: (T,) int64 open time of each row's bar, UTC ms.
        tabular: (T, len(FEATURE_NAMES)) float64, columns in FEATURE_NAMES order.
        sequence: (T, len(SEQUENCE_CHANNELS)) float32, columns in SEQUENCE_CHANNELS order.
        valid: (T,) bool, True from WARMUP_BARS on where every value of the row is finite.
    """

    open_time: np.ndarray
    tabular: np.ndarray
    sequence: np.ndarray
    valid: np.ndarray

    def __post_init__(self) -> None:
        for name in ("open_time", "tabular", "sequence", "valid"):
            getattr(self, name).setflags(write=False)

    def __len__(self) -> int:
        return len(self.open_time)

    @property
    def tabular_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    @property
    def sequence_names(self) -> tuple[str, ...]:
        return SEQUENCE_CHANNELS

    def valid_windows(self, seq_len: int) -> np.ndarray:
        """(T,) bool: True where the ``seq_len`` rows ending at the row are all valid."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        out = np.zeros(len(self), dtype=bool)
        if len(self) >= seq_len:
            out[seq_len - 1 :] = sliding_window_view(self.valid, seq_len).all(axis=1)
        return out


def compute_features(series: CandleSeries) -> FeatureFrame:
    """Features of every bar of ``series`` (vectorised; rows before WARMUP_BARS are not valid)."""
    n = len(series)
    if n == 0:
        tab = np.empty((0, len(FEATURE_NAMES)))
        seq = np.empty((0, len(SEQUENCE_CHANNELS)), dtype=np.float32)
    else:
        tab, seq = compute_arrays(series.open, series.high, series.low, series.close, series.volume)
    valid = np.isfinite(tab).all(axis=1) & np.isfinite(seq).all(axis=1)
    valid[:WARMUP_BARS] = False
    return FeatureFrame(np.array(series.open_time), tab, seq, valid)


def sequence_windows(sequence: np.ndarray, rows: np.ndarray, seq_len: int) -> np.ndarray:
    """Windows of ``seq_len`` rows ending at (and including) each row: (n, seq_len, C) float32.

    Raises:
        ValueError: a row is out of range or has fewer than ``seq_len - 1`` rows before it.
    """
    sequence = np.asarray(sequence)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if sequence.ndim != 2:
        raise ValueError(f"sequence must be 2-D (T, C), got shape {sequence.shape}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if rows.size == 0:
        return np.empty((0, seq_len, sequence.shape[1]), dtype=np.float32)
    lo, hi = int(rows.min()), int(rows.max())
    if lo < seq_len - 1:
        raise ValueError(
            f"row {lo} has only {lo + 1} rows of history; seq_len {seq_len} needs row >= {seq_len - 1}"
        )
    if hi >= len(sequence):
        raise ValueError(f"row {hi} is out of range for a sequence of {len(sequence)} rows")
    windows = sliding_window_view(sequence, seq_len, axis=0)  # (T - seq_len + 1, C, seq_len)
    return np.ascontiguousarray(windows[rows - (seq_len - 1)].transpose(0, 2, 1), dtype=np.float32)
