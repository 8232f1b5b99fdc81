"""Small learnable data and fast settings shared by the agent tests (as fixtures: ``fast_params``,
``make_data``, ``fit_agent``)."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine.agents import AGENT_CLASSES, BaseAgent
from ai_engine.features import FEATURE_NAMES, SEQUENCE_CHANNELS

SEQ_LEN = 16
FAST_PARAMS: dict[str, dict] = {
    "xgb": {"n_estimators": 30, "n_jobs": 1},
    "lgbm": {"n_estimators": 30, "n_jobs": 1},
    "nhits": {"seq_len": SEQ_LEN, "epochs": 2, "batch_size": 128,
              "net_params": {"hidden_size": 16, "latent_horizon": 4, "pool_kernels": [4, 2, 1],
                             "downsample": [4, 2, 1]}},
    "patchtst": {"seq_len": SEQ_LEN, "epochs": 2, "batch_size": 128,
                 "net_params": {"patch_len": 4, "stride": 4, "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16}},
}


def make_data(kind: str, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Rows (tabular) or windows (sequence) whose label depends on the inputs, with all three classes."""
    rng = np.random.default_rng(seed)
    if kind == "tabular":
        X = rng.normal(size=(n, len(FEATURE_NAMES)))
        signal = X[:, 0] + 0.5 * X[:, 3]
        names = FEATURE_NAMES
    else:
        X = rng.normal(size=(n, SEQ_LEN, len(SEQUENCE_CHANNELS))).astype(np.float32)
        signal = X[:, -4:, 3].mean(axis=1) * 2
        names = SEQUENCE_CHANNELS
    y = np.digitize(signal + 0.3 * rng.normal(size=n), [-0.5, 0.5]).astype(np.int64)
    return X, y, tuple(names)


def fit_agent(name: str, seed: int = 0, **overrides) -> tuple[BaseAgent, np.ndarray, np.ndarray]:
    """A fitted agent of kind ``name`` and held-out rows (X, y) to predict on."""
    cls = AGENT_CLASSES[name]
    X, y, names = make_data(cls.input_kind, seed=0)
    agent = cls(**{**FAST_PARAMS[name], "seed": seed, **overrides})
    agent.fit(X[:250], y[:250], X_val=X[250:330], y_val=y[250:330], feature_names=names)
    return agent, X[330:], y[330:]


@pytest.fixture(scope="session")
def fast_params() -> dict[str, dict]:
    return FAST_PARAMS


@pytest.fixture(name="make_data", scope="session")
def make_data_fixture():
    return make_data


@pytest.fixture(name="fit_agent", scope="session")
def fit_agent_fixture():
    return fit_agent
