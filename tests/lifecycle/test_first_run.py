"""The runbook's first run, command by command, from a fresh home: `init` (taking real baseline
models), the governor closed until released, a real `serve` on the local file source, backup,
stage and shadow of a retrained PatchTST, `verify-shadow` PASS right after the deploy, the spec's
greps on that serve's log, and `analyze`.

The commands run are the ones `init` prints, and they must be the runbook's block (paths and the
sizes init computed aside). One step differs: the retrained PatchTST comes from the session's
artifacts instead of running `train` (the same kind of file; training it here would double the
test's time)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from ai_engine.agents import DEFAULT_ARTIFACT_NAME
from ai_engine.cli.init_commands import GOVERNOR_CLOSED_LINE
from ai_engine.health import fetch_health
from tests.helpers import wait_for
from tests.lifecycle.conftest import copy_artifact

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
# values init computes from its sizes (the runbook shows those of the defaults)
_SIZED = re.compile(r"(--history|--end|--max-rows|--epochs|--hours|--threads) \S+")


def _runbook_commands() -> list[str]:
    section = RUNBOOK.read_text().split("## First run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("   #", 1)[0].strip() for ln in section.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _normal(cmd: str, home: Path) -> str:
    return _SIZED.sub(r"\1 N", cmd.replace(str(home), "~/ai-engine"))


def _run(cmd: str, env: dict) -> subprocess.CompletedProcess:
    argv = shlex.split(cmd)
    assert argv[0] == "ai-engine", cmd
    return subprocess.run([sys.executable, "-m", "ai_engine.cli.main", *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=300)


def test_runbook_first_run_from_a_fresh_home(tmp_path, artifacts):
    baselines = tmp_path / "baselines"
    for m in ("xgb", "lgbm", "nhits", "patchtst"):
        copy_artifact(getattr(artifacts, m), baselines / DEFAULT_ARTIFACT_NAME[m])
    home = tmp_path / "ai-engine"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    env["COLUMNS"] = "80"  # a narrow terminal's width must not split the printed commands

    book = _runbook_commands()
    assert book[0] == "ai-engine init --home ~/ai-engine"
    res = _run(f"ai-engine init --home {home} --models-from {baselines} --bars 1500 --serve-bars 200", env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert GOVERNOR_CLOSED_LINE in res.stdout
    printed = [ln.strip() for ln in res.stdout.split("next (", 1)[1].splitlines()[1:] if ln.strip()]
    assert [_normal(c, home) for c in printed] == [_normal(c, home) for c in book[1:]]
    env_file = home / "ai-engine.env"
    settings = dict(ln.split("=", 1) for ln in env_file.read_text().splitlines() if "=" in ln and ln[0] != "#")
    assert all(settings[k].startswith(str(home)) for k in settings if k.endswith(("_HOME", "_STORE", "_DIR", "_PATH",
                                                                                  "_FILE")))
    port = int(settings["AI_ENGINE_HEALTH_PORT"])
    cmds = iter(printed)

    def step(expect: str | None = None, rc: int = 0) -> str:
        cmd = next(cmds)
        got = _run(cmd, env)
        out = " ".join(got.stdout.split())
        assert got.returncode == rc, f"{cmd}\n{got.stdout}{got.stderr}"
        assert expect is None or expect in out, f"{cmd}\n{got.stdout}"
        return out

    step("intents BLOCKED", rc=1)
    step("kill switch OFF, mode PAPER")
    serve_cmd = next(cmds)
    argv, log_path = shlex.split(serve_cmd.split(" > ", 1)[0]), Path(serve_cmd.split(" > ", 1)[1].split()[0])
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ai_engine.cli.main", *argv[1:]], env=env | {"PYTHONUNBUFFERED": "1"},
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (h := fetch_health(port)) and h.get("decisions_made"), "first decisions", timeout=120)
        out = step("state: running")
        assert all(re.search(rf"{m}\W+voter", out) for m in ("xgb", "lgbm", "nhits", "patchtst")), out
        assert "_model_BASELINE_" in step()
        mkdir_and_train = next(cmds)
        retrained = Path(mkdir_and_train.rsplit("--out ", 1)[1])
        assert mkdir_and_train.startswith(f"mkdir -p {retrained.parent} && ai-engine train patchtst ")
        copy_artifact(artifacts.patchtst_new, retrained)  # stands for the printed `train` (see the docstring)
        step("staged: patchtst")
        old = fetch_health(port)["config_id"]
        step(f"reload signalled to ai-engine serve pid {proc.pid}")
        new = wait_for(lambda: (h := fetch_health(port))["config_id"] != old and h["state"] == "running"
                       and h["config_id"], "the shadow configuration in force")
        db = home / "telemetry.sqlite"

        def decided_under_new() -> int:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                return c.execute("SELECT COUNT(*) FROM decisions WHERE config_id=?", (new,)).fetchone()[0]

        wait_for(lambda: decided_under_new() >= 10 and "[SHADOW] PatchTST |" in log_path.read_text(),
                 "decisions and a [SHADOW] line under the shadow configuration", timeout=120)
        got = _run(next(cmds), env)
        assert got.returncode == 0 and got.stdout.rstrip().endswith("PASS: 0 of 9 criteria failed"), got.stdout
        assert "under an earlier configuration not counted" in got.stdout  # right after a correct deploy
        # piped at COLUMNS=80, no line is wrapped: each is one criterion
        assert all(re.match(r"(PASS|FAIL|SKIP|INFO):? ", ln) for ln in got.stdout.splitlines()), got.stdout
        listed = _run(f"ai-engine models list --env-file {env_file}", env).stdout
        assert any(ln.count("│") >= 7 and "patchtst_v" in ln and " shadow " in ln for ln in listed.splitlines()), listed

        # the spec's greps on this serve's log, before and after the shadow deployment
        lines = log_path.read_text().splitlines()
        cut = next(i for i, ln in enumerate(lines) if "/models/patchtst/" in ln)  # the reload loads the staged file
        before, after = lines[:cut], lines[cut:]

        def grep(part: list[str], pattern: str, flags: int = 0) -> list[str]:
            return [ln for ln in part if re.search(pattern, ln, flags)]

        def count(ln: str) -> int:
            return json.loads(ln.split("Publishing trade.intent ", 1)[1])["consensus_count"]

        assert grep(after, "consensus_count.*4") == []
        assert grep(before, "consensus_count.*4") == [ln for ln in grep(before, "Publishing trade.intent")
                                                      if count(ln) == 4]
        assert grep(before, "SHADOW") == []
        assert any("[SHADOW] PatchTST |" in ln for ln in grep(after, "SHADOW"))
        loaded = grep(after, "PatchTST.*SHADOW|PATCHTST_MODEL_PATH")
        assert any("Using PATCHTST_MODEL_PATH env var:" in ln and "/models/patchtst/" in ln for ln in loaded)
        assert any("Model weights loaded" in ln and "SHADOW_ONLY" in ln for ln in loaded)
        assert all('"shadow":true' in ln.split('"patchtst":', 1)[1][:200]
                   for ln in grep(after, "Publishing trade.intent"))
        assert grep(lines, "patchtst.*error", re.I) == [] and len(grep(lines, "error", re.I)) <= 2

        got = _run(next(cmds), env)
        assert got.returncode in (0, 1, 3), got.stdout + got.stderr  # ready, not ready, inconclusive
        assert "Shadow metrics analysis — patchtst" in got.stdout
        assert "⚠ SYNTHETIC candles:" in got.stdout  # init's candles are generated, and the verdict says so
        assert next(cmds, None) is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        log.close()
