"""Fixtures for lifecycle tests: small real artifacts (trained once), a deployment layout, CSV candles."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import reap

SYMBOLS = ("BTCUSDT", "ETHUSDT")


@dataclass(frozen=True)
class Artifacts:
    xgb: Path
    lgbm: Path
    nhits: Path
    patchtst: Path  # the baseline PatchTST
    patchtst_new: Path  # a retrained PatchTST to deploy in shadow


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    from ai_engine.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("artifacts")
    opts = TrainOptions(synthetic_bars=1500)
    paths = {}
    for name, model, seed, epochs in (("xgb", "xgb", 0, 30), ("lgbm", "lgbm", 0, 30), ("nhits", "nhits", 0, 1),
                                      ("patchtst", "patchtst", 0, 1), ("patchtst_new", "patchtst", 1, 1)):
        (out / name).mkdir()
        agent, _ = train_model(model, symbols=list(SYMBOLS), out_path=out / name / "model", synthetic=True,
                               options=opts, seed=seed, epochs=epochs, threads=1, force=True)
        paths[name] = out / name / "model"
    return Artifacts(**paths)


def copy_artifact(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    shutil.copyfile(f"{src}.meta.json", f"{dest}.meta.json")
    return dest


def write_csvs(directory: Path, n_bars: int = 1200) -> Path:
    from ai_engine.data import synthetic_market

    directory.mkdir(parents=True, exist_ok=True)
    for sym, s in synthetic_market(list(SYMBOLS), "1h", n_bars=n_bars, seed=7).items():
        rows = ["open_time,open,high,low,close,volume"]
        cols = zip(s.open_time, s.open, s.high, s.low, s.close, s.volume, strict=True)
        rows += [f"{int(t)}," + ",".join(repr(float(x)) for x in rest) for t, *rest in cols]
        (directory / f"{sym}-1h.csv").write_text("\n".join(rows) + "\n")
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Deployment:
    home: Path
    env: Path
    models_dir: Path
    data: Path
    port: int


@pytest.fixture()
def deployment(tmp_path, artifacts) -> Deployment:
    """A deployment as the spec's starting point: four voters on their default files, governor released."""
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState

    home = tmp_path / "home"
    models = home / "models"
    for m in ("xgb", "lgbm", "nhits", "patchtst"):
        copy_artifact(getattr(artifacts, m), models / DEFAULT_ARTIFACT_NAME[m])
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    port = free_port()
    env = tmp_path / "ai-engine.env"
    env.write_text(
        "# test deployment\n"
        f"AI_ENGINE_HOME={home}\n"
        "AI_ENGINE_SYMBOLS=BTCUSDT,ETHUSDT\n"
        "AI_ENGINE_INTERVAL=1h\n"
        f"AI_ENGINE_HEALTH_PORT={port}\n"
        "SHADOW_LOG_INTERVAL_S=1\n"
        "# weights (sum to 100)\n"
        "XGB_WEIGHT=25\nLGBM_WEIGHT=25\nNHITS_WEIGHT=30\nPATCHTST_WEIGHT=20\n"
    )
    return Deployment(home, env, models, write_csvs(tmp_path / "candles"), port)


@pytest.fixture()
def cli():
    """Invoke our commands in-process (a Typer app built the way the main CLI registers them)."""
    import typer
    from typer.testing import CliRunner

    from ai_engine.cli import models_commands, service_commands

    app = typer.Typer()
    models_app = typer.Typer()
    app.add_typer(models_app, name="models")
    models_commands.register_models(models_app)
    service_commands.register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


_SERVE_CMD = [
    sys.executable, "-c",
    "import typer; from ai_engine.cli import service_commands as s; app = typer.Typer(); s.register(app); app()",
    "serve",
]


@pytest.fixture()
def start_serve(deployment):
    """Start ``serve`` as a subprocess on the deployment's paced CSV replay; stopped at teardown."""
    import subprocess

    procs = []

    def start(pace: float = 0.3, log: Path | None = None, **extra_env: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET"))}
        env |= {"PYTHONUNBUFFERED": "1"} | extra_env
        out = open(log or deployment.home.parent / "serve.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [*_SERVE_CMD, "--env-file", str(deployment.env), "--data", str(deployment.data), "--pace", str(pace)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        procs.append((proc, out))
        return proc

    yield start
    for proc, out in procs:
        reap(proc, out)
