"""Training matrices built with the serving feature code, labelled and split per symbol by time.

Tabular agents get FEATURE_NAMES rows; sequence agents get windows of SEQUENCE_CHANNELS cut
from real history (failure modes 7, 8: no constant or tiled windows). Only rows whose
features are valid and whose label is known are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ai_engine.exceptions import ConfigError, DataError
from ai_engine.training.labels import UNLABELLED, LabelConfig, make_labels
from ai_engine.training.split import time_split
from ai_engine.types import INTERVAL_MS

__all__ = ["Part", "Dataset", "build_dataset"]


@dataclass(frozen=True, slots=True)
class Part:
    """One split part, rows of all symbols concatenated (each symbol in time order).

    Attributes:
        X: (n, F) float64 rows or (n, seq_len, C) float32 windows.
        y: (n,) int64 labels in CLASS_ORDER.
        open_time: (n,) int64 open time of each row's bar.
        symbol: (n,) str symbol of each row.
    """

    X: np.ndarray
    y: np.ndarray
    open_time: np.ndarray
    symbol: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def class_share(self) -> tuple[float, float, float]:
        c = np.bincount(self.y, minlength=3).astype(np.float64)
        return tuple(float(x) for x in (c / c.sum() if c.sum() else c))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Dataset:
    """Train/validation/test parts and the schema they were built with."""

    train: Part
    val: Part
    test: Part
    feature_names: tuple[str, ...]
    input_kind: str
    seq_len: int | None
    symbols: tuple[str, ...]
    interval: str
    synthetic: bool


def _concat(parts: list[Part], empty_x: tuple[int, ...], dtype) -> Part:
    if not parts:
        return Part(np.zeros((0, *empty_x), dtype=dtype), np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros(0, dtype="<U1"))
    return Part(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("X", "y", "open_time", "symbol")))


def build_dataset(
    series: Mapping[str, object],
    *,
    input_kind: str,
    label_config: LabelConfig,
    seq_len: int | None = None,
    val_frac: float = 0.15,
    test_frac: float = 0.2,
) -> Dataset:
    """Features, labels and a purged time split for every symbol, concatenated per part.

    Args:
        series: symbol → CandleSeries (oldest first).
        input_kind: "tabular" (FEATURE_NAMES rows) or "sequence" (SEQUENCE_CHANNELS windows).
        label_config: how labels are made; its horizon is also the purge gap.
        seq_len: window length for sequence input.
        val_frac, test_frac: shares of the symbols' common time span (earliest first bar to latest
            last bar) for validation and held-out test: the boundaries fall at the same times for
            every symbol, so no training row is newer than another symbol's validation or test row.
    """
    from ai_engine.features import (
        FEATURE_NAMES,
        SEQUENCE_CHANNELS,
        compute_features,
        sequence_windows,
    )

    label_config.validate()
    if input_kind not in ("tabular", "sequence"):
        raise ConfigError(f"input_kind must be 'tabular' or 'sequence', got {input_kind!r}")
    if input_kind == "sequence" and (not isinstance(seq_len, int) or seq_len < 4):
        raise ConfigError(f"sequence input needs seq_len >= 4, got {seq_len!r}")
    if not series:
        raise DataError("no candle series to train on")
    parts: dict[str, list[Part]] = {"train": [], "val": [], "test": []}
    spans = [(int(s.open_time[0]), int(s.open_time[-1])) for s in series.values() if len(s)]
    span = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None
    intervals = set()
    synthetic = False
    for sym, s in series.items():
        intervals.add(s.interval)
        synthetic |= bool(getattr(s, "synthetic", False))
        frame = compute_features(s)
        y = make_labels(s.close, label_config, open_time=s.open_time, interval_ms=INTERVAL_MS.get(s.interval))
        usable = (frame.valid_windows(seq_len) if input_kind == "sequence" else frame.valid) & (y != UNLABELLED)
        split = time_split(s.open_time, gap=label_config.horizon, val_frac=val_frac, test_frac=test_frac, what=sym, span=span)
        for pname in ("train", "val", "test"):
            rows = getattr(split, pname)
            rows = rows[usable[rows]]
            if input_kind == "tabular":
                X = np.asarray(frame.tabular[rows], dtype=np.float64)
            else:
                X = sequence_windows(frame.sequence, rows, seq_len)
            parts[pname].append(Part(X, y[rows], np.asarray(s.open_time)[rows], np.full(len(rows), sym)))
    if len(intervals) > 1:
        raise DataError(f"series mix intervals {sorted(intervals)}; train one interval at a time")
    names = tuple(FEATURE_NAMES if input_kind == "tabular" else SEQUENCE_CHANNELS)
    shape = (len(names),) if input_kind == "tabular" else (seq_len, len(names))
    dtype = np.float64 if input_kind == "tabular" else np.float32
    ds = Dataset(
        train=_concat(parts["train"], shape, dtype),
        val=_concat(parts["val"], shape, dtype),
        test=_concat(parts["test"], shape, dtype),
        feature_names=names,
        input_kind=input_kind,
        seq_len=seq_len if input_kind == "sequence" else None,
        symbols=tuple(series),
        interval=intervals.pop(),
        synthetic=synthetic,
    )
    for pname in ("train", "val"):
        if len(getattr(ds, pname)) == 0:
            raise DataError(
                f"no usable {pname} rows for {', '.join(series)} (after {label_config.horizon}-bar labels, feature "
                "warm-up and the time split); give more history or a wider --start/--end"
            )
    return ds
