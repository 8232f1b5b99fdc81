from __future__ import annotations

import numpy as np
import pytest

from ai_engine.data import synthetic_market
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.training import LabelConfig, build_dataset, time_split

H = 3_600_000


def test_parts_are_time_ordered_with_purge_gaps_and_test_is_the_last_fifth():
    t = np.arange(1000, dtype=np.int64) * H
    s = time_split(t, gap=4, val_frac=0.15, test_frac=0.2)
    assert s.train.max() + 4 < s.val.min() and s.val.max() + 4 < s.test.min()
    assert s.test.max() == 999
    assert t[s.test[0]] >= t[0] + 0.8 * (t[-1] - t[0]) > t[s.test[0] - 1]
    for part in (s.train, s.val, s.test):
        assert np.all(np.diff(part) == 1)
    assert len(s.train) + len(s.val) + len(s.test) == 1000 - 8


@pytest.mark.parametrize("times", [np.arange(10)[::-1] * H, np.array([0, H, H, 2 * H])])
def test_newest_first_or_duplicate_times_are_refused(times):
    with pytest.raises(DataError, match="open_time is (newest-first|not strictly increasing)"):
        time_split(times, gap=1, what="BTCUSDT")


def test_bad_fractions_are_config_errors():
    with pytest.raises(ConfigError, match="fractions"):
        time_split(np.arange(10), gap=1, val_frac=0.5, test_frac=0.5)


@pytest.mark.parametrize("kind", ["tabular", "sequence"])
def test_dataset_splits_each_symbol_by_time(kind):
    market = synthetic_market(["AAAUSDT", "BBBUSDT"], n_bars=900, seed=3)
    cfg = LabelConfig(horizon=4)
    ds = build_dataset(market, input_kind=kind, label_config=cfg, seq_len=16)
    for sym in market:
        tr, va, te = (p.open_time[p.symbol == sym] for p in (ds.train, ds.val, ds.test))
        assert len(tr) and len(va) and len(te)
        assert tr.max() + cfg.horizon * H < va.min()
        assert va.max() + cfg.horizon * H < te.min()
        for part in (tr, va, te):
            assert np.all(np.diff(part) > 0)
    assert ds.train.X.shape[1:] == ((len(ds.feature_names),) if kind == "tabular" else (16, len(ds.feature_names)))
    assert set(np.unique(ds.train.y)) <= {0, 1, 2} and ds.synthetic


def test_symbols_starting_at_different_times_share_the_split_boundaries():
    """Failure mode 10 across symbols: a symbol whose history starts later is cut at the same times
    as the others, so no training row is newer than any symbol's validation or test row."""
    market = synthetic_market(["AAAUSDT", "BBBUSDT"], n_bars=2000, seed=3)
    market["BBBUSDT"] = market["BBBUSDT"].slice(800, 2000)
    cfg = LabelConfig(horizon=4)
    ds = build_dataset(market, input_kind="tabular", label_config=cfg)
    assert len(ds.train) and len(ds.val) and len(ds.test)
    assert ds.train.open_time.max() + cfg.horizon * H < ds.val.open_time.min()
    assert ds.val.open_time.max() + cfg.horizon * H < ds.test.open_time.min()
    assert (ds.train.symbol == "BBBUSDT").any()  # the late symbol still trains, on its older rows


def test_sequence_windows_are_real_history_not_tiled_features():
    """Failure modes 7/8: each window must vary over time and end at its own bar."""
    from ai_engine.features import compute_features

    market = synthetic_market(["AAAUSDT"], n_bars=600, seed=1)
    ds = build_dataset(market, input_kind="sequence", label_config=LabelConfig(), seq_len=32)
    X = ds.train.X
    assert np.all(X.std(axis=1).max(axis=1) > 0)  # no constant windows
    frame = compute_features(market["AAAUSDT"])
    row = int(np.searchsorted(frame.open_time, ds.train.open_time[5]))
    np.testing.assert_array_equal(X[5], frame.sequence[row - 31 : row + 1])
