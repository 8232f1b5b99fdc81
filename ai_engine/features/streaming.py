"""Streaming features for serving: the batch computation run over a trailing candle buffer.

Windowed features only see their window, so they match batch values exactly. Recursive ones
(EMA, Wilder RSI/ATR/ADX, TRIX) forget old bars geometrically: with a buffer of ``n`` bars the
difference from the batch value is bounded by about ``SLOWEST_DECAY ** (n - WARMUP_BARS)``
relative, which at the default 1000 bars is ~1e-31, far below float64 precision.
``MIN_BUFFER_BARS`` is the smallest buffer for which that bound is below 1e-16.

Symbols that close a bar together go through :func:`update_many`: one computation for all of
them (a single update is mostly per-call overhead), the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ai_engine.data.validate import check_values, iso_utc
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.features.indicators import (
    SEQUENCE_CHANNELS,
    SLOWEST_DECAY,
    WARMUP_BARS,
    compute_arrays,
)
from ai_engine.types import Candle

__all__ = ["BUFFER_BARS", "MIN_BUFFER_BARS", "FeatureRow", "StreamingFeatures", "update_many"]

BUFFER_BARS: int = 1000
# Smallest buffer whose recursive-indicator error bound SLOWEST_DECAY ** (n - WARMUP_BARS) < 1e-16.
MIN_BUFFER_BARS: int = WARMUP_BARS + math.ceil(math.log(1e-16) / math.log(SLOWEST_DECAY))


class _Ring:
    """Append-only rows with the last ``cap`` always contiguous (amortised O(1) append)."""

    def __init__(self, cap: int, width: int, dtype: type) -> None:
        self.cap = cap
        self.buf = np.full((2 * cap, width), np.nan, dtype=dtype)
        self.end = 0

    def append(self, row: np.ndarray) -> None:
        if self.end == len(self.buf):
            self.buf[: self.cap - 1] = self.buf[self.end - self.cap + 1 : self.end]
            self.end = self.cap - 1
        self.buf[self.end] = row
        self.end += 1

    def tail(self) -> np.ndarray:
        return self.buf[max(0, self.end - self.cap) : self.end]


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """Features of the latest bar of one symbol.

    Attributes:
        symbol, open_time: which bar.
        tabular: (len(FEATURE_NAMES),) float64, equal to the batch row of the same bar.
        history: (n, len(SEQUENCE_CHANNELS)) float32 sequence rows ending at this bar (read-only).
    """

    symbol: str
    open_time: int
    tabular: np.ndarray
    history: np.ndarray

    def sequence_window(self, seq_len: int) -> np.ndarray:
        """The last ``seq_len`` sequence rows (seq_len, C), built from real candle history.

        Raises:
            DataError: fewer than ``seq_len`` bars seen, or the window reaches into warm-up rows.
        """
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if seq_len > len(self.history):
            raise DataError(
                f"{self.symbol} {iso_utc(self.open_time)}: sequence window of {seq_len} bars requested, "
                f"only {len(self.history)} bars of history held"
            )
        window = self.history[-seq_len:]
        if not np.isfinite(window).all():
            raise DataError(
                f"{self.symbol} {iso_utc(self.open_time)}: the last {seq_len} bars include warm-up "
                f"or undefined rows; feed at least {seq_len + WARMUP_BARS} candles first"
            )
        return window.copy()


class StreamingFeatures:
    """Per-symbol incremental features, equal to :func:`compute_features` on the same candles.

    Args:
        symbol, interval: the only candles this instance accepts.
        buffer_bars: trailing candles kept and recomputed on each update (>= MIN_BUFFER_BARS).
        seq_len_max: longest sequence window a FeatureRow can serve.
    """

    def __init__(
        self, symbol: str, interval: str, buffer_bars: int = BUFFER_BARS, seq_len_max: int = 512
    ) -> None:
        if buffer_bars < MIN_BUFFER_BARS:
            raise ConfigError(
                f"buffer_bars {buffer_bars} is too short for streaming features to equal batch values; "
                f"use at least {MIN_BUFFER_BARS}"
            )
        if seq_len_max < 1:
            raise ConfigError(f"seq_len_max must be >= 1, got {seq_len_max}")
        self.symbol = symbol
        self.interval = interval
        self.buffer_bars = buffer_bars
        self.seq_len_max = seq_len_max
        self._ohlcv = _Ring(buffer_bars, 5, np.float64)
        self._seq = _Ring(seq_len_max, len(SEQUENCE_CHANNELS), np.float32)
        self._last_open_time: int | None = None
        self._seen = 0

    @property
    def bars_seen(self) -> int:
        return self._seen

    def update(self, candle: Candle) -> FeatureRow | None:
        """Append the next closed candle; return its features, or None while warming up.

        Raises:
            DataError: the candle is for another symbol/interval, not after the last one, or invalid.
        """
        self._append(candle)
        bars = self._ohlcv.tail()
        tab, seq = compute_arrays(*bars.T, start=len(bars) - 1)
        return self._row(candle.open_time, tab[-1], seq[-1], _finite(tab, seq))

    def _append(self, candle: Candle) -> None:
        """Validate ``candle`` and buffer it (the instance is unchanged when it raises DataError)."""
        if (candle.symbol, candle.interval) != (self.symbol, self.interval):
            raise DataError(
                f"candle {candle.symbol} {candle.interval} fed to the features of {self.symbol} {self.interval}"
            )
        if self._last_open_time is not None and candle.open_time <= self._last_open_time:
            raise DataError(
                f"{self.symbol} {iso_utc(candle.open_time)}: not after the last candle "
                f"{iso_utc(self._last_open_time)} (duplicate or out of order)"
            )
        row = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        problem = check_values(*row)
        if problem is not None:
            raise DataError(
                f"{self.symbol} {iso_utc(candle.open_time)}: invalid candle: {problem[1]}"
            )
        self._ohlcv.append(np.array(row))
        self._last_open_time = candle.open_time
        self._seen += 1

    def _row(
        self, open_time: int, tab: np.ndarray, seq: np.ndarray, finite: bool
    ) -> FeatureRow | None:
        """The FeatureRow of the newest bar from its computed values, or None while warming up."""
        if self._seen <= WARMUP_BARS or not finite:
            self._seq.append(np.nan)  # windows may span valid rows only, as in batch valid_windows
            return None
        self._seq.append(seq)
        history = self._seq.tail().copy()
        history.setflags(write=False)
        tabular = tab.copy()
        tabular.setflags(write=False)
        return FeatureRow(self.symbol, open_time, tabular, history)


def _finite(tab: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Whether the last row of each (..., T, F) tabular / sequence pair is all finite."""
    return np.isfinite(tab[..., -1, :]).all(axis=-1) & np.isfinite(seq[..., -1, :]).all(axis=-1)


def update_many(
    features: Sequence[StreamingFeatures], candles: Sequence[Candle]
) -> list[FeatureRow | DataError | None]:
    """``features[i].update(candles[i])`` for each i (e.g. the symbols closing a bar together), with
    the buffers of equal length computed in one pass of :func:`compute_arrays`.

    Per-call overhead dominates a single update, so one pass over S symbols costs far less than S
    updates; the rows are the same.

    Returns:
        For each pair, what ``update`` returns, or the DataError it would raise: that instance is
        left unchanged and the others are updated.

    Raises:
        ValueError: ``features`` and ``candles`` differ in length, or an instance appears twice.
    """
    if len(features) != len(candles):
        raise ValueError(f"{len(features)} feature states for {len(candles)} candles")
    if len({id(f) for f in features}) != len(features):
        raise ValueError("a StreamingFeatures instance appears twice; give it one candle per call")
    out: list[FeatureRow | DataError | None] = [None] * len(features)
    by_length: dict[int, list[int]] = {}
    for i, (f, candle) in enumerate(zip(features, candles, strict=True)):
        try:
            f._append(candle)
        except DataError as exc:
            out[i] = exc
            continue
        by_length.setdefault(len(f._ohlcv.tail()), []).append(i)
    for n, group in by_length.items():
        bars = np.stack([features[i]._ohlcv.tail() for i in group])  # (S, n, 5)
        tab, seq = compute_arrays(*bars.transpose(2, 0, 1), start=n - 1)
        finite = _finite(tab, seq)
        for k, i in enumerate(group):
            out[i] = features[i]._row(candles[i].open_time, tab[k, -1], seq[k, -1], finite[k])
    return out
