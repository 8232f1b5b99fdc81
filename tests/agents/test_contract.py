"""One contract check run over all four agents (STYLE.md §10)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ai_engine.agents import AGENT_CLASSES, DEFAULT_ARTIFACT_NAME, load_agent
from ai_engine.enums import CLASS_ORDER, MODEL_NAMES, Action
from ai_engine.exceptions import ConfigError, FeatureMismatchError, NotFittedError

pytestmark = pytest.mark.parametrize("name", MODEL_NAMES)


@pytest.fixture(scope="module")
def fitted(fit_agent):
    """Each agent fitted once per module (the expensive part), keyed by model name."""
    return {name: fit_agent(name) for name in MODEL_NAMES}


def test_registry_names_and_artifact_names(name):
    assert AGENT_CLASSES[name].name == name
    assert DEFAULT_ARTIFACT_NAME[name].startswith(f"{name}_model.")


def test_fit_predict_shapes_and_probabilities(name, fitted, make_data):
    agent, X, _ = fitted[name]
    probs = agent.predict_proba(X)
    assert probs.shape == (len(X), 3) and probs.dtype == np.float64
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    preds = agent.predict(X)
    assert len(preds) == len(X)
    for p, row in zip(preds[:20], probs[:20], strict=True):
        assert isinstance(p.action, Action)
        assert p.action is CLASS_ORDER[int(np.argmax(row))]
        assert p.confidence == pytest.approx(row.max()) and 0 <= p.confidence <= 1
        assert np.isfinite(p.logit)
    assert agent.predict_proba(X[:0]).shape == (0, 3)
    assert agent.feature_names_in_ == make_data(agent.input_kind)[2]
    assert agent.version.startswith(f"{name}_v") and len(agent.version) == len(name) + 17
    assert 0.05 <= agent.temperature_ <= 20


def test_learns_a_simple_signal(name, fitted, fast_params, make_data):
    """Balanced accuracy well above chance (1/3) on held-out rows of a learnable signal."""
    agent, X, y = fitted[name]
    if agent.input_kind == "sequence":  # nets need more rows and steps than the shared fixture gives
        X, y, names = make_data("sequence", n=1400)
        params = {**fast_params[name], "epochs": 8, "batch_size": 64, "lr": 3e-3}
        agent = type(agent)(**params).fit(X[:1000], y[:1000], X_val=X[1000:1200], y_val=y[1000:1200],
                                          feature_names=names)
        X, y = X[1200:], y[1200:]
    pred = agent.predict_proba(X).argmax(axis=1)
    balanced = np.mean([np.mean(pred[y == k] == k) for k in range(3)])
    assert balanced > 0.45


def test_seed_makes_results_repeat(name, fitted, fit_agent):
    agent, X, _ = fitted[name]
    again, _, _ = fit_agent(name)
    np.testing.assert_allclose(again.predict_proba(X), agent.predict_proba(X), rtol=0, atol=1e-7)


def test_save_load_round_trip(name, fitted, tmp_path, fast_params):
    agent, X, _ = fitted[name]
    agent.metadata_["label_config"] = {"horizon": 4, "mode": "vol"}
    info = agent.save(tmp_path / DEFAULT_ARTIFACT_NAME[name])
    assert info.sha256 == agent.sha256 and len(info.sha256) == 64 and info.size == info.path.stat().st_size
    meta = json.loads(info.meta_path.read_text())
    assert meta["model"] == name and meta["version"] == agent.version and meta["sha256"] == info.sha256
    assert meta["feature_names"] == list(agent.feature_names_in_)
    assert meta["calibration"]["temperature"] == pytest.approx(agent.temperature_)
    assert meta["calibration"]["bias"] == pytest.approx(list(agent.calibration_bias_))
    assert meta["label_config"] == {"horizon": 4, "mode": "vol"}
    assert meta["seq_len"] == fast_params[name].get("seq_len")
    loaded = load_agent(name, info.path, expected_sha256=info.sha256)
    assert type(loaded) is type(agent)
    assert loaded.version == agent.version and loaded.sha256 == info.sha256
    assert loaded.get_params() == agent.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), agent.predict_proba(X))
    assert [p.logit for p in loaded.predict(X[:5])] == [p.logit for p in agent.predict(X[:5])]
    assert loaded.calibration_bias_ == agent.calibration_bias_


def test_calibration_bias_is_part_of_the_served_probabilities(name, fitted):
    """The class bias fitted on validation moves the served probabilities; without it they are
    the temperature-only ones an artifact from before the bias would serve."""
    agent, X, _ = fitted[name]
    assert any(b != 0.0 for b in agent.calibration_bias_)
    raw = agent._raw_logits(agent._as_input(X, "X")) / agent.temperature_
    np.testing.assert_allclose(agent.predict_logits(X), raw + np.asarray(agent.calibration_bias_))


def test_unfitted_raises_not_fitted(name, fast_params, make_data):
    agent = AGENT_CLASSES[name](**fast_params[name])
    X, _, _ = make_data(agent.input_kind, n=5)
    for call in (agent.predict_proba, agent.predict):
        with pytest.raises(NotFittedError, match="not fitted"):
            call(X)
    with pytest.raises(NotFittedError):
        _ = agent.version
    with pytest.raises(NotFittedError):
        agent.save("unused.bin")


def test_wrong_feature_schema_raises(name, fitted):
    agent, X, _ = fitted[name]
    with pytest.raises(FeatureMismatchError, match="expects"):
        agent.predict_proba(X[..., :-1])
    names = list(agent.feature_names_in_)
    with pytest.raises(FeatureMismatchError, match="reordered"):
        agent.check_features(names[::-1])
    with pytest.raises(FeatureMismatchError, match=r"missing \['" + names[0]):
        agent.check_features(names[1:] + ["not_a_feature"])
    if agent.input_kind == "sequence":
        with pytest.raises(FeatureMismatchError, match="bars"):
            agent.predict_proba(X[:, 1:, :])


def test_hyperparameters_stored_as_is_and_validated_in_fit(name, make_data):
    cls = AGENT_CLASSES[name]
    agent = cls(seed=-1)  # no validation in __init__
    assert agent.get_params()["seed"] == -1
    X, y, names = make_data(cls.input_kind, n=30)
    with pytest.raises(ConfigError, match=r"seed=-1"):
        agent.fit(X, y, feature_names=names)
    with pytest.raises(ConfigError, match="balance"):
        cls(balance="oversample").fit(X, y, feature_names=names)
