"""Training on a few thousand real BTCUSDT-1h candles (skips when the shared data are absent)."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine.agents import load_agent
from ai_engine.training import TrainOptions, train_model


@pytest.mark.parametrize(
    ("model", "epochs", "params"),
    [
        ("lgbm", None, None),
        ("patchtst", 3, {"seq_len": 32, "batch_size": 128}),
    ],
)
def test_train_on_real_btcusdt(model, epochs, params, candles_dir, tmp_path):
    out = tmp_path / f"{model}.artifact"
    agent, report = train_model(
        model, symbols=["BTCUSDT"], data_dir=candles_dir, out_path=out, epochs=epochs, seed=0, threads=1,
        options=TrainOptions(max_rows=3000), agent_params=params,
    )
    assert report.n_train + report.n_val + report.n_test > 2500 and not report.synthetic
    for m in (report.val, report.test):
        assert m.max_action_share <= 0.95  # the guard let it through; it must not be one-action
        assert m.confidence_std >= 0.02
        assert m.confidence_n_distinct > 0.5 * m.n
        assert 0 <= m.ece <= 0.25 and m.brier < 1.0
    # the label band keeps all three classes in play on real data
    assert min(report.train_label_share) > 0.1
    # trees must beat the majority class on balanced accuracy on the held-out test
    if model == "lgbm":
        assert report.test.balanced_accuracy > report.test.baselines[0].balanced_accuracy
    loaded = load_agent(model, out, expected_sha256=agent.sha256)
    rng = np.random.default_rng(0)
    shape = (5, len(agent.feature_names_in_)) if agent.input_kind == "tabular" else (5, 32, len(agent.feature_names_in_))
    X = rng.normal(size=shape).astype(np.float32 if agent.input_kind == "sequence" else np.float64)
    np.testing.assert_array_equal(loaded.predict_proba(X), agent.predict_proba(X))
