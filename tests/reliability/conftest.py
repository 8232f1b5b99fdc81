"""Fixtures for the reliability suite: small real models (trained once per session), a synthetic
market, settings for a test engine, and a private redis-server."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import RedisServer, free_port  # noqa: F401  (free_port re-used by reliability tests)

SYMBOLS = ("BTCUSDT", "ETHUSDT")
PREFIX = {"xgb": "XGB", "lgbm": "LGBM", "nhits": "NHITS", "patchtst": "PATCHTST"}
TINY_TORCH = {
    "nhits": {"seq_len": 16, "epochs": 1, "batch_size": 128,
              "net_params": {"hidden_size": 16, "latent_horizon": 4, "pool_kernels": [4, 2, 1], "downsample": [4, 2, 1]}},
    "patchtst": {"seq_len": 16, "epochs": 1, "batch_size": 128,
                 "net_params": {"patch_len": 4, "stride": 4, "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16}},
}


def tiny_torch_model(name: str, out: Path, seed: int = 0) -> Path:
    """A small but real NHiTS/PatchTST fitted on random windows with the engine's channels."""
    from ai_engine.agents import AGENT_CLASSES
    from ai_engine.features import SEQUENCE_CHANNELS

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 16, len(SEQUENCE_CHANNELS))).astype(np.float32)
    y = np.digitize(X[:, -4:, 3].mean(axis=1) * 2, [-0.3, 0.3]).astype(np.int64)
    agent = AGENT_CLASSES[name](**TINY_TORCH[name], seed=seed)
    agent.fit(X[:240], y[:240], X_val=X[240:], y_val=y[240:], feature_names=SEQUENCE_CHANNELS)
    out.parent.mkdir(parents=True, exist_ok=True)
    agent.save(out)
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """xgb and lgbm trained by the training code on a synthetic market, tiny nhits and patchtst."""
    from ai_engine.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("rel_models")
    paths = {}
    for name, ext in (("xgb", ".ubj"), ("lgbm", ".txt")):
        paths[name] = out / f"{name}_model{ext}"
        train_model(name, symbols=SYMBOLS, out_path=paths[name], synthetic=True, epochs=30, seed=0, threads=2,
                    force=True, options=TrainOptions(synthetic_bars=1500))
    for name in ("nhits", "patchtst"):
        paths[name] = tiny_torch_model(name, out / f"{name}_model.pth")
    return paths


@pytest.fixture(scope="session")
def series():
    from ai_engine.data import synthetic_market

    return synthetic_market(list(SYMBOLS), interval="1h", n_bars=260, seed=3)


# ``serve`` as its own process, its CLI built the way the service's tests need it (no other command)
SERVE = [sys.executable, "-c",
         "import typer; from ai_engine.cli import service_commands as s; app = typer.Typer(); s.register(app); app()",
         "serve"]


def write_csvs(directory: Path, n_bars: int) -> Path:
    """A synthetic market of SYMBOLS as the file source's 1h CSVs in ``directory``."""
    from ai_engine.data import synthetic_market

    directory.mkdir(parents=True)
    for sym, s in synthetic_market(list(SYMBOLS), "1h", n_bars=n_bars, seed=7).items():
        rows = ["open_time,open,high,low,close,volume"]
        rows += [f"{int(t)}," + ",".join(repr(float(x)) for x in rest)
                 for t, *rest in zip(s.open_time, s.open, s.high, s.low, s.close, s.volume, strict=True)]
        (directory / f"{sym}-1h.csv").write_text("\n".join(rows) + "\n")
    return directory


def copy_artifact(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    shutil.copyfile(f"{src}.meta.json", f"{dest}.meta.json")
    return dest


def engine_env(home: Path, models: dict[str, Path], **env: str) -> dict[str, str]:
    environ = {"AI_ENGINE_HOME": str(home), "AI_ENGINE_SYMBOLS": ",".join(SYMBOLS)}
    environ |= {f"{PREFIX[m]}_MODEL_PATH": str(p) for m, p in models.items()}
    return environ | env


def settings_for(home: Path, models: dict[str, Path], *, release: bool = True, **env: str):
    """Settings of a test engine in ``home``; the governor is released unless told otherwise."""
    from ai_engine.config import load_settings
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState

    settings = load_settings(None, environ=engine_env(home, models, **env))
    if release:
        FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    return settings


@pytest.fixture
def private_redis(tmp_path):
    """Factory of private redis-servers, all stopped at the end of the test."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found; these tests start their own server")
    servers: list[RedisServer] = []

    def make(password: str | None = None) -> RedisServer:
        servers.append(RedisServer(tmp_path / f"redis{len(servers)}", password).start())
        return servers[-1]

    yield make
    for s in servers:
        s.stop()
