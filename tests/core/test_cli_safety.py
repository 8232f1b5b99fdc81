"""The CLI never loses what is the user's: nothing is deleted or overwritten unasked, and
file-system errors are one `error:` line naming the path, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from ai_engine.cli.main import app, main
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.core.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
TRAIN = ("train", "xgb", "--synthetic", "--symbols", "AAAUSDT", "--synthetic-bars", "1200", "--threads", "1", "--quiet",
         "--epochs", "40", "--min-conf-std", "0.001")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh AI_ENGINE_HOME, with no env file and no inherited engine keys."""
    for key in [k for k in os.environ if k.startswith("AI_ENGINE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AI_ENGINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "500")  # rich reads it on each print: no line wrapped inside a path
    return tmp_path / "home"


@pytest.fixture
def cli(capsys):
    """Run the real entry point in process: (exit code, stdout, stderr), whitespace collapsed."""

    def run(*args) -> tuple[int, str, str]:
        rc = main([str(a) for a in args])
        out = capsys.readouterr()
        return rc, " ".join(out.out.split()), " ".join(out.err.split())

    return run


@pytest.fixture
def read_only_home(home):
    """``home`` with an env file, made read-only: chmod, or for root (who ignores modes) chattr +i."""
    home.mkdir()
    env = home / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={home}\n")
    root = os.geteuid() == 0
    lock, unlock = (["chattr", "+i", str(home)], ["chattr", "-i", str(home)]) if root else (None, None)
    if root and (not shutil.which("chattr") or subprocess.run(lock, capture_output=True).returncode != 0):
        pytest.skip("running as root and chattr +i is not available")
    if not root:
        home.chmod(0o500)
    yield env
    if root:
        subprocess.run(unlock, check=True)
    else:
        home.chmod(0o700)


def test_demo_refuses_a_workdir_it_did_not_create(home, cli, tmp_path):
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    rc, _, err = cli("demo", "--workdir", work, "--bars", "600")  # few bars: quick if it does not refuse
    assert rc == 2 and f"workdir {work} exists and was not created by `ai-engine demo`" in err
    assert (work / "notes.txt").read_text() == "keep me"


def test_demo_reuses_only_an_empty_or_its_own_workdir(tmp_path):
    from ai_engine.cli.demo_commands import MARKER, fresh_workdir

    work = tmp_path / "w"
    work.mkdir()
    fresh_workdir(work)  # empty: used as is
    assert (work / MARKER).is_file() and (work / "models").is_dir()
    (work / "models" / "old.ubj").write_text("old run")
    fresh_workdir(work)  # its own: emptied
    assert (work / MARKER).is_file() and not any((work / "models").iterdir())


def test_train_refuses_an_existing_out_file_unless_overwrite(home, cli, tmp_path):
    out = tmp_path / "xgb_model.ubj"
    out.write_text("the model in use")
    rc, _, err = cli(*TRAIN, "--out", out)
    assert rc == 2 and f"--out {out} exists; pass --overwrite" in err
    assert out.read_text() == "the model in use"
    rc, stdout, err = cli(*TRAIN, "--out", out, "--overwrite")
    assert rc == 0, err
    assert "saved xgb_v" in stdout and out.read_bytes() != b"the model in use"


def test_replay_resume_appends_to_the_jsonl(tmp_path, synthetic_models, synthetic_series):
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine

    settings, _ = make_settings(tmp_path, synthetic_models)
    jsonl = tmp_path / "d.jsonl"
    first = {s: v.slice(0, 600) for s, v in synthetic_series.items()}
    for series, resume in ((first, False), (synthetic_series, True)):
        engine = open_engine(settings, wait_for_shadow=True)
        try:
            replay_series(engine, series, jsonl=jsonl, resume=resume)
        finally:
            engine.close()
    ids = [json.loads(line)["event_id"] for line in jsonl.read_text().splitlines()]
    store = TelemetryStore(settings.store_path, readonly=True)
    assert len(ids) == len(set(ids)) == store.count("decisions") > 0
    store.close()


def test_governor_kill_on_a_read_only_home_says_the_switch_is_not_engaged(home, cli, read_only_home):
    rc, _, err = cli("governor", "kill", "--env-file", read_only_home)
    assert rc == 2 and "kill switch NOT engaged" in err and "Traceback" not in err
    assert f"error: {home}/" in err and ("Permission denied" in err or "Operation not permitted" in err)


@pytest.mark.parametrize("cmd", [["models", "backup"], ["models", "activate", "patchtst", "--weight", "20", "--force"]])
def test_models_commands_on_a_read_only_home_are_one_line(home, cli, read_only_home, cmd):
    rc, _, err = cli(*cmd, "--env-file", read_only_home)
    assert rc == 2 and err.startswith(f"error: {home}/") and "Traceback" not in err
    assert "Permission denied" in err or "Operation not permitted" in err


def test_stage_into_a_models_dir_that_is_a_file(home, cli, monkeypatch, tmp_path, synthetic_models):
    (tmp_path / "models-file").write_text("x")
    monkeypatch.setenv("AI_ENGINE_MODELS_DIR", str(tmp_path / "models-file"))
    rc, _, err = cli("models", "stage", synthetic_models["xgb"], "--model", "xgb", "--env-file", "none")
    assert rc == 2 and err.startswith(f"error: {tmp_path / 'models-file'}") and "Not a directory" in err


@pytest.mark.parametrize("where", ["directory", "missing dir"])
def test_replay_jsonl_at_a_bad_path_is_one_line(tmp_path, synthetic_models, where):
    _, environ = make_settings(tmp_path, synthetic_models)
    jsonl = tmp_path if where == "directory" else tmp_path / "nosuch" / "d.jsonl"
    r = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "replay", "--synthetic", "--bars", "700",
                        "--env-file", "none", "--jsonl", str(jsonl)], capture_output=True, text=True,
                       env={**os.environ, **environ}, timeout=600)
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith(f"error: {jsonl}: "), r.stderr
    assert "Traceback" not in r.stderr


def test_models_list_and_status_mark_a_missing_model_file(home, cli):
    xgb = home / "models" / "xgb_model.ubj"
    rc, out, _ = cli("models", "list", "--env-file", "none")
    assert rc == 0 and f"xgb: in use {xgb} (MISSING: no such file)" in out
    rc, out, _ = cli("status", "--env-file", "none")
    assert rc == 0 and f"xgb: model file MISSING {xgb}" in out


def test_status_says_there_is_no_store_yet(home, cli):
    rc, out, _ = cli("status", "--env-file", "none")
    assert rc == 0 and f"store: no store yet at {home / 'telemetry.sqlite'}" in out


def test_status_with_a_directory_as_store_is_an_error(home, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("AI_ENGINE_STORE", str(tmp_path))
    rc, _, err = cli("status", "--env-file", "none")
    assert rc == 2 and f"telemetry store {tmp_path} is not a file" in err


def test_readme_names_every_command_without_env_file():
    """The README's --env-file sentence holds: the commands without the option are the ones it names."""
    without = set()

    def walk(cmd, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        if not hasattr(cmd, "commands") and not any("--env-file" in p.opts for p in cmd.params):
            without.add(path)

    walk(typer.main.get_command(app), "")
    para = [p for p in (REPO / "README.md").read_text().split("\n\n") if "takes `--env-file F`" in p]
    assert len(para) == 1 and "Every command takes" not in para[0], para
    text = " ".join(para[0].split())
    assert without and all(f"`{c}`" in text for c in without), sorted(without)
