"""Class balancing: every mode trains, and balancing lifts the minority classes (failure mode 9)."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine.agents import AGENT_CLASSES
from ai_engine.exceptions import DataError, NotFittedError


def _imbalanced(make_data, kind):
    X, y, names = make_data(kind, n=400)
    keep = np.flatnonzero(y == 1)
    minority = np.flatnonzero(y != 1)[:40]  # ~10% SELL+BUY, 90% HOLD
    idx = np.sort(np.concatenate([keep, minority]))
    return X[idx], y[idx], names


@pytest.mark.parametrize("name", ["lgbm", "nhits"])
@pytest.mark.parametrize("balance", ["weights", "sampler", "none"])
def test_every_balance_mode_trains(name, balance, fast_params, make_data):
    cls = AGENT_CLASSES[name]
    X, y, names = make_data(cls.input_kind, n=200)
    agent = cls(**{**fast_params[name], "balance": balance}).fit(X[:150], y[:150], X_val=X[150:], y_val=y[150:],
                                                                   feature_names=names)
    probs = agent.predict_proba(X)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


def test_weights_predict_minority_classes_more_often_than_none(fast_params, make_data):
    cls = AGENT_CLASSES["xgb"]
    X, y, names = _imbalanced(make_data, "tabular")
    share = {}
    for balance in ("none", "weights"):
        agent = cls(**{**fast_params["xgb"], "balance": balance}).fit(X, y, feature_names=names)
        share[balance] = float(np.mean(agent.predict_proba(X).argmax(axis=1) != 1))
    assert share["weights"] > share["none"]


def test_failed_fit_leaves_the_agent_unfitted(fast_params, make_data):
    cls = AGENT_CLASSES["patchtst"]
    X, y, names = make_data("sequence", n=20)
    X[3, 2, 1] = np.nan
    agent = cls(**fast_params["patchtst"])
    with pytest.raises(DataError, match="NaN"):
        agent.fit(X, y, feature_names=names)
    with pytest.raises(NotFittedError):
        agent.predict_proba(X[:2])
