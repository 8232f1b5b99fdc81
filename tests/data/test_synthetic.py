"""The synthetic market: deterministic, valid, different per symbol, and learnable."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from ai_engine.data import synthetic_market
from ai_engine.exceptions import ConfigError
from ai_engine.features import compute_features


def test_same_seed_same_market_and_symbols_differ():
    a = synthetic_market(["AAA", "BBB"], n_bars=500, seed=3)
    b = synthetic_market(["BBB", "AAA"], n_bars=500, seed=3)
    c = synthetic_market(["AAA"], n_bars=500, seed=4)
    for field in ("open_time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a["AAA"], field), getattr(b["AAA"], field))
    assert not np.allclose(a["AAA"].close, a["BBB"].close)
    assert not np.allclose(a["AAA"].close, c["AAA"].close)
    np.testing.assert_array_equal(a["AAA"].open_time, a["BBB"].open_time)


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
def test_candles_are_valid(interval):
    for s in synthetic_market(
        ["AAA", "BBB", "CCC"], interval=interval, n_bars=3000, seed=7
    ).values():
        assert s.synthetic and s.candle(0).synthetic and s.interval == interval
        assert np.all(np.diff(s.open_time) == s.candle(0).close_time - s.open_time[0])
        assert np.all(np.isfinite(s.close)) and np.all(s.low > 0) and np.all(s.volume > 0)
        assert np.all(s.high >= np.maximum(s.open, s.close))
        assert np.all(s.low <= np.minimum(s.open, s.close))
        np.testing.assert_array_equal(s.open[1:], s.close[:-1])


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="unknown interval"):
        synthetic_market(["AAA"], interval="2m")
    with pytest.raises(ConfigError, match="distinct"):
        synthetic_market(["AAA", "AAA"])
    with pytest.raises(ConfigError, match="n_bars"):
        synthetic_market(["AAA"], n_bars=0)
    with pytest.raises(ConfigError, match="not a multiple"):
        synthetic_market(["AAA"], start_ms=1)


def test_held_out_accuracy_beats_majority_with_diverse_actions():
    """A small tree model on our features, time-ordered split: better than always-majority."""
    horizon, wins = 12, 0
    for s in synthetic_market(["AAA", "BBB", "CCC"], n_bars=6000, seed=1).values():
        frame = compute_features(s)
        lc = np.log(s.close)
        fwd = np.full(len(s), np.nan)
        fwd[:-horizon] = lc[horizon:] - lc[:-horizon]
        ok = frame.valid & np.isfinite(fwd)
        x, r = frame.tabular[ok], fwd[ok]
        k = np.quantile(np.abs(r), 0.4)
        y = np.where(r > k, 2, np.where(r < -k, 0, 1))  # SELL, HOLD, BUY
        cut = int(0.7 * len(y))
        params = {
            "objective": "multiclass",
            "num_class": 3,
            "learning_rate": 0.05,
            "num_leaves": 15,
            "verbose": -1,
            "seed": 0,
            "num_threads": 1,
        }
        booster = lgb.train(params, lgb.Dataset(x[:cut], y[:cut]), 150)
        pred = booster.predict(x[cut + horizon :]).argmax(axis=1)
        truth = y[cut + horizon :]
        majority = np.bincount(y[:cut]).argmax()
        wins += (pred == truth).mean() > (truth == majority).mean() + 0.02
        assert np.bincount(pred, minlength=3).min() > 0.1 * len(pred)  # every action is used
    assert wins >= 2
