"""Small real models, trained once per session by our own training code, for engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_engine.config import load_settings
from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState

SYMBOLS = ("BTCUSDT", "ETHUSDT")
EXT = {"xgb": ".ubj", "lgbm": ".txt", "nhits": ".pth", "patchtst": ".pth"}
PREFIX = {"xgb": "XGB", "lgbm": "LGBM", "nhits": "NHITS", "patchtst": "PATCHTST"}
SMALL = {
    "xgb": dict(epochs=60),
    "lgbm": dict(epochs=60),
    "nhits": dict(epochs=2),
    "patchtst": dict(epochs=2),
}


def train_four(out_dir: Path, **kw) -> dict[str, Path]:
    from ai_engine.training import train_model

    paths = {}
    for name in ("xgb", "lgbm", "nhits", "patchtst"):
        paths[name] = out_dir / f"{name}_model{EXT[name]}"
        train_model(name, symbols=SYMBOLS, out_path=paths[name], seed=0, threads=2, force=True, **SMALL[name], **kw)
    return paths


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory) -> dict[str, Path]:
    from ai_engine.training import TrainOptions

    return train_four(tmp_path_factory.mktemp("models"), synthetic=True, options=TrainOptions(synthetic_bars=1500))


@pytest.fixture(scope="session")
def synthetic_series():
    from ai_engine.data import synthetic_market

    return synthetic_market(list(SYMBOLS), interval="1h", n_bars=900, seed=7)


def make_settings(home: Path, models: dict[str, Path], **env: str):
    """Settings for a test engine in ``home`` with a released governor."""
    environ = {"AI_ENGINE_HOME": str(home), "AI_ENGINE_SYMBOLS": ",".join(SYMBOLS)}
    environ |= {f"{PREFIX[m]}_MODEL_PATH": str(p) for m, p in models.items()}
    environ |= env
    settings = load_settings(None, environ=environ)
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER))
    return settings, environ
