"""`ai-engine train` / `ai-engine models report` through a local Typer app (the lead wires main.py)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ai_engine.agents.artifacts import meta_path_for
from ai_engine.cli.train_commands import register, register_models_report


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    models = typer.Typer()
    register_models_report(models)
    app.add_typer(models, name="models")
    return app


def _run(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


BASE = ("--synthetic", "--symbols", "AAAUSDT,BBBUSDT", "--synthetic-bars", "1200", "--threads", "1", "--quiet")


def test_train_prints_the_report_and_saves(app, tmp_path):
    out = tmp_path / "xgb_model.ubj"
    # 1,200 synthetic bars hold no skill to speak of: honest probabilities sit at the class shares
    # and arg-max picks one class, so this CLI test lifts both guard limits
    code, stdout, stderr = _run(app, "train", "xgb", *BASE, "--out", out, "--epochs", "40", "--min-conf-std", "0.001",
                                "--max-action-share", "1.0")
    assert code == 0, stderr
    assert "held-out test" in stdout and "balanced_accuracy" in stdout and "saved xgb_v" in stdout
    assert out.is_file() and json.loads(meta_path_for(out).read_text())["model"] == "xgb"
    code, stdout, _ = _run(app, "models", "report", out)
    assert code == 0 and "held-out test" in stdout and "xgb_v" in stdout
    code, stdout, _ = _run(app, "models", "report", meta_path_for(out), "--json")
    assert code == 0 and json.loads(stdout)["model"] == "xgb"


def test_models_report_reads_a_pth_without_sidecar(app, tmp_path):
    out = tmp_path / "nhits_model.pth"
    code, _, stderr = _run(app, "train", "nhits", "--synthetic", "--symbols", "AAAUSDT", "--synthetic-bars", "500",
                           "--threads", "1", "--quiet", "--out", out, "--epochs", "1", "--seq-len", "16", "--force")
    assert code == 0, stderr
    meta_path_for(out).unlink()
    code, stdout, _ = _run(app, "models", "report", out)
    assert code == 0 and "nhits_v" in stdout and "validation" in stdout


def test_degenerate_model_exits_4_and_saves_nothing(app, tmp_path):
    out = tmp_path / "m.txt"
    code, _, stderr = _run(app, "train", "lgbm", *BASE, "--out", out, "--band-mode", "fixed", "--band", "0.9")
    assert code == 4
    assert "training labels are all HOLD" in stderr and "exit 4" in stderr and "Traceback" not in stderr
    assert not out.exists()
    code, _, stderr = _run(app, "train", "lgbm", *BASE, "--out", out, "--band-mode", "fixed", "--band", "0.9",
                           "--force")
    assert code == 0, stderr
    assert out.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "/nonexistent/dir", "--symbols", "BTCUSDT"), "candle directory not found: /nonexistent/dir"),
        ((*BASE, "--band-mode", "fixed"), "--band-mode fixed needs --band"),
        ((*BASE, "--horizon", "0"), "horizon must be an integer >= 1"),
        ((*BASE, "--start", "yesterday"), "start='yesterday' is not a date"),
        ((*BASE, "--max-action-share", "1.5"), "max_action_share must be in (0, 1]"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(app, tmp_path, args, message):
    code, _, stderr = _run(app, "train", "xgb", *args, "--out", tmp_path / "m.ubj")
    assert code == 2
    assert message in stderr and "Traceback" not in stderr


def test_models_report_on_a_missing_or_reportless_file(app, tmp_path):
    code, _, stderr = _run(app, "models", "report", tmp_path / "gone.pth")
    assert code == 5 and "model file missing" in stderr
    junk = tmp_path / "x.ubj"
    junk.write_bytes(b"junk")
    code, _, stderr = _run(app, "models", "report", junk)
    assert code == 5 and "no sidecar" in stderr


def test_unknown_model_is_a_usage_error(app, tmp_path):
    code, _, _ = _run(app, "train", "tft", *BASE, "--out", tmp_path / "m")
    assert code == 2
