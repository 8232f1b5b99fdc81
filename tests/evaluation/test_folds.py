"""Walk-forward folds: time-ordered blocks, the purge gap, and no test row before a training label ends."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine.evaluation import FoldPlan, fold_rows, plan_folds
from ai_engine.exceptions import ConfigError, DataError

H = 3_600_000  # one hour
T0 = 1_700_000_000_000 - 1_700_000_000_000 % H


def test_exact_small_case_rolling_and_expanding():
    # 40 bars, 2 + 2 blocks of 10 bars; calibration = 30% of a 20-bar window = 6 bars; gap 2
    rolling = plan_folds(T0, T0 + 39 * H, H, folds=2, window="rolling", train_blocks=2, cal_frac=0.3)
    assert rolling == (FoldPlan(0, T0, T0 + 14 * H, T0 + 20 * H, T0 + 30 * H),
                       FoldPlan(1, T0 + 10 * H, T0 + 24 * H, T0 + 30 * H, T0 + 40 * H))
    expanding = plan_folds(T0, T0 + 39 * H, H, folds=2, window="expanding", train_blocks=2, cal_frac=0.3)
    assert expanding[1] == FoldPlan(1, T0, T0 + 24 * H, T0 + 30 * H, T0 + 40 * H)
    t = T0 + np.arange(40) * H
    r0 = fold_rows(t, rolling[0], gap=2)
    np.testing.assert_array_equal(r0.train, np.arange(0, 12))  # rows 12, 13 purged before calibration
    np.testing.assert_array_equal(r0.cal, np.arange(14, 18))  # rows 18, 19 purged before the test block
    np.testing.assert_array_equal(r0.test, np.arange(20, 30))
    r1 = fold_rows(t, rolling[1], gap=2)
    np.testing.assert_array_equal(r1.train, np.arange(10, 22))
    np.testing.assert_array_equal(r1.cal, np.arange(24, 28))
    np.testing.assert_array_equal(r1.test, np.arange(30, 40))
    np.testing.assert_array_equal(fold_rows(t, expanding[1], gap=2).train, np.arange(0, 22))


def _assert_no_leak(t: np.ndarray, rows, horizon: int) -> None:
    """A label of row i reads the close of row i + horizon: that row must precede the next part."""
    last = t.size - 1
    for earlier, later in ((rows.train, rows.cal), (rows.cal, rows.test), (rows.train, rows.test)):
        if earlier.size and later.size:
            assert t[np.minimum(earlier + horizon, last)].max() < t[later].min()
    assert np.all(np.diff(np.concatenate([rows.train, rows.cal, rows.test])) > 0)  # time-ordered, disjoint


@pytest.mark.parametrize("window", ["rolling", "expanding"])
@pytest.mark.parametrize("folds", [2, 5, 7])
def test_blocks_tile_the_span_in_time_order_with_missing_bars(window, folds):
    rng = np.random.default_rng(folds)
    n = 3000
    t = T0 + np.sort(rng.choice(np.arange(n + 200), n, replace=False)) * H  # 200 missing bars, anywhere
    plans = plan_folds(int(t[0]), int(t[-1]), H, folds=folds, window=window, train_blocks=3, cal_frac=0.2)
    assert len(plans) == folds
    assert plans[-1].test_end == t[-1] + H  # the last block reaches the last bar
    for a, b in zip(plans, plans[1:], strict=False):
        assert a.test_end == b.test_start  # test blocks are contiguous and never overlap
    cal_lengths = {p.test_start - p.cal_start for p in plans}
    assert len(cal_lengths) == 1  # every fold calibrates on the same length of time
    for p in plans:
        assert p.train_start < p.cal_start < p.test_start < p.test_end
        assert all(x % H == T0 % H for x in (p.train_start, p.cal_start, p.test_start, p.test_end))
        rows = fold_rows(t, p, gap=4)
        _assert_no_leak(t, rows, horizon=4)
        assert t[rows.test].min() >= p.test_start and t[rows.test].max() < p.test_end


def test_bad_layouts_are_refused():
    with pytest.raises(ConfigError, match="folds"):
        plan_folds(T0, T0 + 999 * H, H, folds=1)
    with pytest.raises(ConfigError, match="window"):
        plan_folds(T0, T0 + 999 * H, H, folds=2, window="sliding")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cal_frac"):
        plan_folds(T0, T0 + 999 * H, H, folds=2, cal_frac=1.0)
    with pytest.raises(DataError, match="too few"):
        plan_folds(T0, T0 + 5 * H, H, folds=5)
    with pytest.raises(ConfigError, match="gap"):
        fold_rows(T0 + np.arange(10) * H, plan_folds(T0, T0 + 99 * H, H, folds=2), gap=-1)
