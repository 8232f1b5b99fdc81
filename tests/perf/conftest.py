"""Two small tree models (seconds to train) for the engine's concurrency tests, and a model
wrapper that holds its forward on an Event so "slow" needs no sleeps and no timed assertions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ai_engine.config import load_settings
from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState
from tests.helpers import AgentWrapper

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="session")
def tree_models(tmp_path_factory) -> dict[str, Path]:
    from ai_engine.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("perf-models")
    paths = {"xgb": out / "xgb_model.ubj", "lgbm": out / "lgbm_model.txt"}
    for name, path in paths.items():
        train_model(name, symbols=SYMBOLS, out_path=path, synthetic=True, epochs=40, seed=0, threads=1, force=True,
                    options=TrainOptions(synthetic_bars=1200))
    return paths


@pytest.fixture(scope="session")
def market():
    from ai_engine.data import synthetic_market, time_batches

    return list(time_batches(synthetic_market(list(SYMBOLS), interval="1h", n_bars=420, seed=5)))


def tree_settings(home: Path, models: dict[str, Path], **env: str):
    """xgb and lgbm only (the sequence models disabled, so consensus 2), governor released."""
    environ = {"AI_ENGINE_HOME": str(home), "AI_ENGINE_SYMBOLS": ",".join(SYMBOLS),
               "XGB_MODEL_PATH": str(models["xgb"]), "LGBM_MODEL_PATH": str(models["lgbm"]),
               "NHITS_ROLE": "disabled", "PATCHTST_ROLE": "disabled", "ENSEMBLE_MIN_CONSENSUS": "2", **env}
    settings = load_settings(None, environ=environ)
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER))
    return settings


class Held(AgentWrapper):
    """A real agent whose forward waits until ``release`` is set; ``entered`` says it is inside."""

    def __init__(self, agent) -> None:
        super().__init__(agent)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def predict(self, X):
        self.calls += 1
        self.entered.set()
        if not self.release.wait(timeout=120):
            raise RuntimeError("test never released the held model")
        return self._agent.predict(X)


class Sink:
    """Records what the engine published, as the Redis publisher would see it."""

    def __init__(self) -> None:
        self.records = []

    def notify(self, records) -> None:
        self.records.extend(records)
