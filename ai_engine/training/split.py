"""Time-ordered train/validation/test split with purge gaps (failure mode 10: never newest-first).

Each symbol is split on its own timeline; rows within ``gap`` bars before a boundary are
dropped, so no training label (which looks ``horizon`` bars ahead) overlaps the next part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai_engine.exceptions import ConfigError, DataError

__all__ = ["SplitIndices", "time_split", "check_time_order"]


@dataclass(frozen=True, slots=True)
class SplitIndices:
    """Row indices (into one symbol's rows) of each part; ascending and disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def check_time_order(open_time: np.ndarray, what: str = "series") -> None:
    """Raise DataError unless times strictly increase (newest-first or duplicate rows are refused)."""
    t = np.asarray(open_time)
    if t.size > 1:
        d = np.diff(t)
        if np.any(d <= 0):
            i = int(np.flatnonzero(d <= 0)[0])
            order = "newest-first" if np.all(d < 0) else "not strictly increasing"
            raise DataError(
                f"{what}: open_time is {order} at row {i + 1} ({int(t[i])} then {int(t[i + 1])}); "
                "sort candles oldest-first with one row per open_time"
            )


def time_split(
    open_time: np.ndarray,
    *,
    gap: int,
    val_frac: float = 0.15,
    test_frac: float = 0.2,
    what: str = "series",
    span: tuple[int, int] | None = None,
) -> SplitIndices:
    """Split rows by time: train | gap | val | gap | test, where test is the last ``test_frac`` of time.

    Args:
        open_time: (n,) candle open times, strictly increasing.
        gap: rows purged before each boundary (use >= label horizon).
        val_frac: share of the time span used for validation (just before test).
        test_frac: share of the time span held out as test (0 disables the test part).
        what: name used in error messages (e.g. the symbol).
        span: (first, last) open time the fractions are taken of; default this series' own. Give
            every symbol the common span so the boundaries fall at the same times for all of them:
            with each symbol's own span, one whose history starts later would train on rows newer
            than another's test rows (failure mode 10).
    """
    if not (0 < val_frac < 1) or not (0 <= test_frac < 1) or val_frac + test_frac >= 0.9:
        raise ConfigError(
            f"split fractions must satisfy 0<val_frac, 0<=test_frac, val+test<0.9; got {val_frac}, {test_frac}"
        )
    if gap < 0:
        raise ConfigError(f"purge gap must be >= 0 rows, got {gap}")
    t = np.asarray(open_time, dtype=np.int64)
    check_time_order(t, what)
    n = t.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SplitIndices(empty, empty, empty)
    t0, t1 = (int(t[0]), int(t[-1])) if span is None else span
    width = t1 - t0
    test_start = np.searchsorted(t, t0 + width * (1 - test_frac), side="left") if test_frac > 0 else n
    val_start = np.searchsorted(t, t0 + width * (1 - test_frac - val_frac), side="left")
    idx = np.arange(n)
    train = idx[: max(val_start - gap, 0)]
    val = idx[val_start : max(test_start - gap, val_start)]
    test = idx[test_start:]
    return SplitIndices(train=train, val=val, test=test)
