"""Walk-forward on real Binance candles (skips when ../shared/data is absent): the folds over the real
timeline (its missing bars included) never let a test row precede a training label's end, and one
fast model evaluates end to end."""

from __future__ import annotations

import math

import numpy as np

from ai_engine.data import load_dir
from ai_engine.evaluation import (
    WalkForwardConfig,
    fold_rows,
    load_series,
    plan_folds,
    run_walkforward,
)
from ai_engine.training import LabelConfig
from ai_engine.types import INTERVAL_MS


def test_real_timeline_folds_are_purged(candles_dir):
    series = load_dir(candles_dir, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1h")
    first = min(int(s.open_time[0]) for s in series.values())
    last = max(int(s.open_time[-1]) for s in series.values())
    h = LabelConfig().horizon
    for window in ("rolling", "expanding"):
        plans = plan_folds(first, last, INTERVAL_MS["1h"], folds=5, window=window)
        for s in series.values():
            t = np.asarray(s.open_time)
            assert np.any(np.diff(t) > INTERVAL_MS["1h"])  # the real files have missing bars
            for p in plans:
                rows = fold_rows(t, p, gap=h, what=s.symbol)
                assert rows.train.size > 1000 and rows.cal.size > 500 and rows.test.size > 1000
                assert t[rows.train + h].max() < t[rows.cal].min()
                assert t[rows.cal + h].max() < t[rows.test].min()


def test_lgbm_walk_forward_on_real_btcusdt(candles_dir):
    series = load_series(candles_dir, ("BTCUSDT",), "1h", start="2022-07-01")
    cfg = WalkForwardConfig(model="lgbm", folds=2, epochs=60, threads=1)
    r = run_walkforward(series, cfg)
    assert not r.synthetic and r.symbols == ("BTCUSDT",) and len(r.folds) == 2
    for f in r.folds:
        o = f.outcome("lgbm")
        assert o.scores.n > 1500 and o.decisions.n >= o.scores.n
        assert o.decisions.confidence_std > 0 and math.isclose(sum(o.decisions.action_share), 1.0)
        assert 0.25 < o.scores.balanced_accuracy < 0.6 and math.isfinite(o.scores.log_loss_skill)
        assert min(o.scores.label_share) > 0.1  # the label band keeps all three classes in every block
        assert o.money.periods == (f.plan.test_end - f.plan.test_start) // INTERVAL_MS["1h"]
    pooled = r.overall[0]
    assert pooled.scores.n == sum(f.outcome("lgbm").scores.n for f in r.folds)
    assert r.summary("lgbm")["money_net_return"]["std"] >= 0
