"""`ai-engine analyze` and the ops script as the spec runs them: no --hours, the system python3,
a mistyped model, the Redis prefix of the env file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ai_engine.cli.main import main
from ai_engine.exceptions import DataError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ops/analysis/analyze_shadow_metrics.py"


@pytest.fixture
def cli(capsys):
    def run(*args) -> tuple[int, str, str]:
        rc = main(["analyze", *map(str, args)])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


@pytest.fixture(scope="module")
def bare_python() -> str:
    """An interpreter without the engine's dependencies, as the spec's `python3` is."""
    python = getattr(sys, "_base_executable", "") or shutil.which("python3") or ""
    if not python or subprocess.run([python, "-I", "-c", "import typer"], capture_output=True).returncode == 0:
        pytest.skip(f"no interpreter without typer found ({python or 'none'})")
    return python


@pytest.mark.parametrize("flag", ["--model", "--compare"])
def test_unknown_model_exits_2_naming_the_flag_and_the_known_models(cli, make_store, flag):
    rc, _, err = cli("--store", make_store(n=50), flag, "nosuch")
    assert rc == 2 and f"{flag} 'nosuch': no such model" in err
    assert "xgb, lgbm, nhits, patchtst" in err and "the store has predictions of lgbm, patchtst" in err


def test_hours_defaults_to_the_spec_window_of_24(cli, make_store):
    rc, out, err = cli("--store", make_store(n=50), "--json")
    assert rc in (0, 1, 3), err
    window = json.loads(out)["window"]
    assert window["end_ms"] - window["start_ms"] == 24 * 3_600_000


def test_spec_gate_command_without_hours(make_store):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--store", str(make_store(n=50))],
                          capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert any(line.startswith("Gate") and "Action Diversity" in line for line in proc.stdout.splitlines())


@pytest.mark.skipif(not (REPO / ".venv/bin/python").is_file(), reason="no .venv beside the repository")
def test_ops_script_under_a_bare_python_runs_with_the_venv(bare_python, make_store):
    args = ["--hours", "2", "--store", str(make_store(n=50))]
    venv = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    bare = subprocess.run([bare_python, "-I", str(SCRIPT), *args], capture_output=True, text=True, cwd="/", timeout=120)
    assert (bare.returncode, bare.stdout) == (venv.returncode, venv.stdout), bare.stderr
    assert "Traceback" not in bare.stderr


def test_ops_script_without_a_venv_says_how_to_install(bare_python, tmp_path):
    copy = tmp_path / "repo/ops/analysis/analyze_shadow_metrics.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, copy)
    proc = subprocess.run([bare_python, "-I", str(copy), "--hours", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "python3 -m venv .venv && .venv/bin/pip install -e ." in proc.stderr


@pytest.mark.parametrize(("extra", "prefix"), [([], "envprefix"), (["--redis-prefix", "flag"], "flag")])
def test_redis_prefix_defaults_to_the_env_file(cli, monkeypatch, tmp_path, extra, prefix):
    seen = []

    def materialize(url, pfx, dest):
        seen.append(pfx)
        raise DataError("stop here")

    monkeypatch.setattr("ai_engine.telemetry.redis_reader.materialize_from_redis", materialize)
    env = tmp_path / "ai-engine.env"
    env.write_text("AI_ENGINE_REDIS_PREFIX=envprefix\n")
    monkeypatch.setenv("AI_ENGINE_HOME", str(tmp_path))
    rc, _, _ = cli("--redis", "redis://127.0.0.1:1/0", "--env-file", env, *extra)
    assert rc == 2 and seen == [prefix]


def test_os_error_in_the_ops_script_is_one_line(monkeypatch, capsys):
    from ai_engine.cli.analyze_commands import main as ops_main

    def analyze(*a, **kw):
        raise PermissionError(13, "Permission denied", "/var/lib/x.sqlite")

    monkeypatch.setattr("ai_engine.analysis.analyze", analyze)
    assert ops_main(["--store", "/var/lib/x.sqlite"]) == 2
    assert capsys.readouterr().err == "error: /var/lib/x.sqlite: Permission denied\n"
