from __future__ import annotations

import json

import numpy as np
import pytest

from ai_engine.exceptions import DegenerateModelError
from ai_engine.training import (
    GuardConfig,
    TrainingReport,
    apply_temperature,
    check_degeneracy,
    enforce_guard,
    evaluate,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    render,
    softmax,
)


def _sample(logits: np.ndarray, seed: int = 0) -> np.ndarray:
    p = softmax(logits)
    u = np.random.default_rng(seed).random(len(p))[:, None]
    return (u > np.cumsum(p, axis=1)).sum(axis=1)


def test_temperature_recovers_known_overconfidence():
    z = np.random.default_rng(0).normal(0, 2, size=(20_000, 3))
    y = _sample(z / 2.5)  # true probabilities are softmax(z / 2.5)
    temp = fit_temperature(z, y)
    assert temp == pytest.approx(2.5, rel=0.05)
    assert expected_calibration_error(apply_temperature(z, temp), y) < expected_calibration_error(softmax(z), y)


def test_calibration_undoes_the_prior_shift_of_class_balancing():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, size=(30_000, 3))
    true_bias = np.log([0.2, 0.6, 0.2])
    y = _sample(z / 1.5 + true_bias)  # a balanced model's logits: the class prior is missing from them
    cal = fit_calibration(z, y, prior=np.array([0.2, 0.6, 0.2]))
    assert cal.temperature == pytest.approx(1.5, rel=0.05)
    np.testing.assert_allclose(np.subtract(cal.bias, np.mean(cal.bias)), true_bias - true_bias.mean(), atol=0.05)
    def nll(p):
        return -np.mean(np.log(p[np.arange(len(y)), y]))
    assert nll(softmax(cal.apply(z))) < nll(apply_temperature(z, fit_temperature(z, y)))
    # a class never seen in validation keeps bias 0 instead of running to the bound
    assert fit_calibration(z[y != 2], y[y != 2]).bias[2] == 0.0


def test_skill_scores_are_against_the_judged_rows_own_class_shares():
    y = np.array([0, 1, 1, 1, 2, 2, 1, 1])
    clim = np.bincount(y, minlength=3) / len(y)
    m = evaluate(np.tile(clim, (len(y), 1)), y, train_prior=np.array([1 / 3, 1 / 3, 1 / 3]))
    assert [b.name for b in m.baselines] == ["majority", "prior", "climatology"]
    assert m.log_loss == pytest.approx(m.baseline("climatology").log_loss)
    assert m.log_loss_skill == pytest.approx(0.0) and m.brier_skill == pytest.approx(0.0)
    assert m.baseline("prior").log_loss > m.log_loss  # the train prior is not this period's shares
    sharp = evaluate(np.eye(3)[y] * 0.9 + 0.1 / 3, y, train_prior=clim)
    assert sharp.log_loss_skill > 0.5 and sharp.brier_skill > 0.5


def test_evaluate_counts_the_confusion_and_per_class_scores():
    y = np.array([0, 0, 1, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 2]] * 0.7 + 0.1
    m = evaluate(probs, y, train_prior=np.array([0.2, 0.6, 0.2]))
    assert m.confusion == ((1, 1, 0), (0, 2, 1), (0, 0, 1))
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.balanced_accuracy == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    sell = m.per_class[0]
    assert (sell.action, sell.precision, sell.recall, sell.support, sell.predicted) == ("SELL", 1.0, 0.5, 2, 1)
    assert m.action_share == pytest.approx((1 / 6, 3 / 6, 2 / 6))
    assert m.confidence_std == pytest.approx(0.0) and m.confidence_n_distinct == 1
    majority = m.baselines[0]
    assert majority.name == "majority" and majority.accuracy == pytest.approx(0.5)
    assert majority.balanced_accuracy == pytest.approx(1 / 3)


def _report(m) -> TrainingReport:
    return TrainingReport(
        model="xgb", version="xgb_v20260101_000000", created_at="2026-01-01T00:00:00+00:00",
        symbols=("BTCUSDT",), interval="1h", label_config={"horizon": 4, "mode": "vol"}, n_train=10, n_val=6,
        n_test=6, train_label_share=(0.2, 0.6, 0.2), temperature=1.3, epochs_run=5, best_epoch=3,
        train_seconds=1.0, val=m, test=m,
    )


def test_report_is_json_and_round_trips_and_renders():
    y = np.array([0, 1, 2, 1, 1, 0])
    m = evaluate(softmax(np.random.default_rng(0).normal(size=(6, 3))), y, np.array([0.3, 0.4, 0.3]))
    rep = _report(m)
    text = json.dumps(rep.to_dict())
    assert TrainingReport.from_dict(json.loads(text)) == rep
    out = render(rep)
    for needle in ("held-out test", "balanced_accuracy", "ece", "brier", "majority", "prior", "SELL P/R/F1",
                   "confusion", "temperature=1.3000"):
        assert needle in out


def test_guard_refuses_one_action_models_with_the_figures():
    probs = np.tile([0.2, 0.5, 0.3], (100, 1)) + np.linspace(0, 0.1, 100)[:, None] * [0, 1, -1]
    with pytest.raises(DegenerateModelError, match=r"100.0% of validation predictions are HOLD \(limit 95%\)"):
        enforce_guard(probs)
    assert enforce_guard(probs, force=True).reasons  # forced: passes through, reasons kept


def test_guard_refuses_flat_lined_confidence():
    """Failure mode 9: 'unique' confidences that all sit within 1e-4."""
    rng = np.random.default_rng(0)
    probs = np.full((300, 3), 1 / 3) + rng.uniform(-1e-4, 1e-4, size=(300, 3))
    probs /= probs.sum(axis=1, keepdims=True)
    res = check_degeneracy(probs)
    assert any("confidence std" in r for r in res.reasons)
    with pytest.raises(DegenerateModelError, match="flat-lined"):
        enforce_guard(probs)


def test_guard_passes_a_healthy_model_and_thresholds_are_configurable():
    rng = np.random.default_rng(1)
    probs = softmax(rng.normal(0, 1, size=(500, 3)))
    assert check_degeneracy(probs).ok
    assert not check_degeneracy(probs, GuardConfig(max_action_share=0.3)).ok
    assert not check_degeneracy(probs, GuardConfig(min_conf_std=0.5)).ok
