"""Walk-forward folds: where each fold trains, calibrates and tests, and which rows fall in each part.

The common time span is cut into ``train_blocks + folds`` equal blocks on the bar grid. Fold ``k``
tests on block ``train_blocks + k``; its window is the ``train_blocks`` blocks just before it
(``rolling``) or every block before it (``expanding``). The last ``cal_frac`` of one rolling
window's length, just before the test block, calibrates (early stopping and the probability
correction of the agents' ``fit``); the rest trains. Every fold calibrates on a period of the same
length, so expanding windows only grow the training part.

Rows are purged exactly as ``training.split.time_split`` purges them: the ``gap`` rows of a symbol
just before a boundary are dropped, so with ``gap >= horizon`` no training label (which reads the
close ``horizon`` rows ahead) reaches into the calibration part, and no calibration label into the
test block. ``time_split`` itself is not used because it places boundaries at fractions of one
span (and limits them); walk-forward needs absolute block boundaries shared by every symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ai_engine.data.validate import iso_utc
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.training import check_time_order

__all__ = ["Window", "FoldPlan", "FoldRows", "plan_folds", "fold_rows"]

Window = Literal["rolling", "expanding"]


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """Boundaries of one fold as open times (ms UTC, on the bar grid): train
    ``[train_start, cal_start)``, calibrate ``[cal_start, test_start)``, test ``[test_start, test_end)``."""

    index: int
    train_start: int
    cal_start: int
    test_start: int
    test_end: int

    def to_json(self) -> dict:
        return {"fold": self.index, **{k: iso_utc(getattr(self, k)) for k in
                                       ("train_start", "cal_start", "test_start", "test_end")}}


@dataclass(frozen=True, slots=True)
class FoldRows:
    """Row indices (into one symbol's series) of each part of a fold; ascending and disjoint."""

    train: np.ndarray
    cal: np.ndarray
    test: np.ndarray


def plan_folds(
    first_ms: int,
    last_ms: int,
    interval_ms: int,
    *,
    folds: int,
    window: Window = "rolling",
    train_blocks: int = 3,
    cal_frac: float = 0.2,
) -> tuple[FoldPlan, ...]:
    """The folds over the bars ``first_ms .. last_ms`` (inclusive open times) of one interval.

    Args:
        first_ms, last_ms: first and last open time of the common span.
        interval_ms: bar length; every boundary is a bar open time.
        folds: number of test blocks (>= 2, so that a spread over folds exists).
        window: ``rolling`` (fixed length, ``train_blocks`` blocks) or ``expanding`` (from the start).
        train_blocks: blocks in the first window (train + calibration), >= 1.
        cal_frac: share of one rolling window's length used to calibrate, in (0, 1).
    """
    if not isinstance(folds, int) or not 2 <= folds <= 100:
        raise ConfigError(f"folds must be an integer in [2, 100], got {folds!r}")
    if window not in ("rolling", "expanding"):
        raise ConfigError(f"window must be 'rolling' or 'expanding', got {window!r}")
    if not isinstance(train_blocks, int) or train_blocks < 1:
        raise ConfigError(f"train_blocks must be an integer >= 1, got {train_blocks!r}")
    if not 0 < cal_frac < 1:
        raise ConfigError(f"cal_frac must be in (0, 1), got {cal_frac!r}")
    if interval_ms <= 0 or (last_ms - first_ms) % interval_ms:
        raise ConfigError(f"span {first_ms}..{last_ms} is not on a {interval_ms} ms bar grid")
    bars = (last_ms - first_ms) // interval_ms + 1
    n_blocks = train_blocks + folds
    block = bars // n_blocks
    cal_bars = int(round(block * train_blocks * cal_frac))
    if cal_bars < 1 or block * train_blocks - cal_bars < 1:
        raise DataError(
            f"{bars} bars are too few for {folds} folds of {train_blocks}+1 blocks each "
            f"({block} bars per block); give more history or fewer folds"
        )

    def edge(i: int) -> int:
        return first_ms + (bars * i // n_blocks) * interval_ms

    plans = []
    for k in range(folds):
        test_start, test_end = edge(train_blocks + k), edge(train_blocks + k + 1)
        plans.append(FoldPlan(
            index=k,
            train_start=edge(k) if window == "rolling" else edge(0),
            cal_start=test_start - cal_bars * interval_ms,
            test_start=test_start,
            test_end=test_end,
        ))
    return tuple(plans)


def fold_rows(open_time: np.ndarray, plan: FoldPlan, *, gap: int, what: str = "series") -> FoldRows:
    """Rows of one symbol in each part of ``plan``, with ``gap`` rows purged before each boundary."""
    if gap < 0:
        raise ConfigError(f"purge gap must be >= 0 rows, got {gap}")
    t = np.asarray(open_time, dtype=np.int64)
    check_time_order(t, what)
    a, c, s, e = np.searchsorted(t, [plan.train_start, plan.cal_start, plan.test_start, plan.test_end])
    return FoldRows(
        train=np.arange(a, max(c - gap, a)),
        cal=np.arange(c, max(s - gap, c)),
        test=np.arange(s, e),
    )
