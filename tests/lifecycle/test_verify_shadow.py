"""`verify-shadow` on a store and log from a real `serve` with a staged PatchTST in shadow: every
criterion passes, and each failure the spec names is provoked in a copy and detected (exit 1)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

_LINE = re.compile(r"^(PASS|FAIL|SKIP|INFO) +([^:]+):", re.MULTILINE)


@pytest.fixture
def shadow_run(deployment, artifacts, cli):
    """Stage a retrained PatchTST, put it in shadow, and serve 100 closes of the CSVs (log kept)."""
    env_text = deployment.env.read_text().replace("SHADOW_LOG_INTERVAL_S=1\n", "SHADOW_LOG_INTERVAL_S=0\n")
    deployment.env.write_text(env_text)
    for args in (("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst"),
                 ("models", "shadow", "patchtst")):
        res = cli(*args, "--env-file", str(deployment.env))
        assert res.exit_code == 0, res.output
    log = deployment.home.parent / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    with log.open("w") as out:
        rc = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "serve", "--env-file", str(deployment.env),
                             "--data", str(deployment.data), "--pace", "0", "--history", "1100", "--exit-at-end"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode
    assert rc == 0, log.read_text()[-3000:]
    return deployment, log


def _verify(cli, env: Path, log: Path | None = None) -> tuple[int, dict[str, str]]:
    args = ["verify-shadow", "--env-file", str(env), "--since", "10m"]
    if log is not None:
        args += ["--log", str(log)]
    res = cli(*args)
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, {name.strip(): status for status, name in _LINE.findall(res.output)}


def _copy(dep, tmp_path: Path, name: str, edit) -> Path:
    """An env file whose store is a copy of the run's store with ``edit(db)`` applied."""
    store = tmp_path / f"{name}.sqlite"
    with sqlite3.connect(dep.home / "telemetry.sqlite") as src, sqlite3.connect(store) as dst:
        src.backup(dst)
        edit(dst)
    env = tmp_path / f"{name}.env"
    env.write_text(dep.env.read_text() + f"AI_ENGINE_STORE={store}\n")
    return env


def _edit_decision(db: sqlite3.Connection, change) -> None:
    event_id, payload = db.execute("SELECT event_id, payload FROM decisions ORDER BY candle_open_time LIMIT 1").fetchone()
    d = json.loads(payload)
    change(d)
    db.execute("UPDATE decisions SET payload=? WHERE event_id=?", (json.dumps(d), event_id))


def _counted_the_shadow(d: dict) -> None:
    """What failure mode 2 wrote: the shadow's vote counted in consensus_count."""
    d["model_breakdown"]["patchtst"]["action"] = d["action"]
    d["consensus_count"] = 1 + sum(1 for e in d["model_breakdown"].values() if not e["shadow"]
                                   and e["status"] == "ok" and e["action"] == d["action"])


def _untagged(d: dict) -> None:
    d["model_breakdown"]["patchtst"]["shadow"] = False


def _log_with(src: Path, dest: Path, keep=lambda line: True, extra: list[str] = ()) -> Path:
    lines = [ln for ln in src.read_text().splitlines() if keep(ln)]
    dest.write_text("\n".join(lines + list(extra)) + "\n")
    return dest


def _now_line(text: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f",000 INFO ai_engine.test: {text}"


def test_verify_shadow_passes_a_real_run_and_detects_each_failure(shadow_run, cli, tmp_path):
    dep, log = shadow_run
    with sqlite3.connect(dep.home / "telemetry.sqlite") as db:
        decisions, intents = (db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("decisions", "intents"))
        roles = dict(db.execute("SELECT DISTINCT model, role FROM predictions"))
    assert decisions == 2 * 100 and roles["patchtst"] == "shadow"
    assert "[SHADOW] PatchTST |" in log.read_text()

    # Right after the first start, --since 10m holds a minute or so of evidence: the expected
    # [SHADOW] lines (one per 30 s, half tolerated) are counted over that, not over ten minutes.
    shadow_lines = iter(range(3))
    few = _log_with(log, tmp_path / "few.log", keep=lambda ln: "[SHADOW]" not in ln or next(shadow_lines, None) is not None)
    slow = tmp_path / "slow.env"
    slow.write_text(dep.env.read_text().replace("SHADOW_LOG_INTERVAL_S=0\n", "SHADOW_LOG_INTERVAL_S=30\n"))
    res = cli("verify-shadow", "--env-file", str(slow), "--since", "10m", "--log", str(few))
    assert "PASS shadow log lines: 3 [SHADOW] PatchTST lines" in res.output and "the first start was" in res.output
    # a log source with nothing in it while decisions were made is not a clean log
    code, got = _verify(cli, dep.env, _log_with(log, tmp_path / "empty.log", keep=lambda ln: False))
    assert code == 1 and got["shadow log lines"] == got["errors"] == got["log volume"] == "FAIL"

    # From here on, a service deployed 10 minutes ago (this run made its evidence at full speed).
    with sqlite3.connect(dep.home / "telemetry.sqlite") as db:
        db.execute("UPDATE configs SET applied_at = applied_at - 600000 WHERE reason IN ('start', 'stop')")
    code, got = _verify(cli, dep.env, log)
    assert code == 0
    assert got == {"model loaded": "PASS", "shadow entry in every decision and intent": "PASS",
                   "consensus_count excludes the shadow model": "PASS", "restarts in 24 h": "PASS",
                   "publish rate": "INFO", "telemetry disk growth": "PASS", "shadow log lines": "PASS",
                   "errors": "PASS", "log volume": "PASS"}, f"{intents} intents"

    # without a log the log criteria are skipped, not passed
    code, got = _verify(cli, dep.env)
    assert code == 0 and got["shadow log lines"] == got["errors"] == got["log volume"] == "SKIP"

    def fails(env: Path, log_file: Path | None = log) -> set[str]:
        code, got = _verify(cli, env, log_file)
        failed = {n for n, s in got.items() if s == "FAIL"}
        assert (code == 1) == bool(failed)
        return failed

    # store evidence, each provoked in a copy of the store
    assert fails(_copy(dep, tmp_path, "counted", lambda db: _edit_decision(db, _counted_the_shadow))) == {
        "consensus_count excludes the shadow model"}
    assert fails(_copy(dep, tmp_path, "untagged", lambda db: _edit_decision(db, _untagged))) == {
        "shadow entry in every decision and intent"}

    def wrong_checksum(db: sqlite3.Connection) -> None:
        config_id, applied_at, payload = db.execute(
            "SELECT config_id, applied_at, payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()
        p = json.loads(payload)
        p["models"]["patchtst"]["sha256"] = "0" * 64
        db.execute("UPDATE configs SET payload=? WHERE config_id=? AND applied_at=?", (json.dumps(p), config_id,
                                                                                      applied_at))

    assert fails(_copy(dep, tmp_path, "checksum", wrong_checksum)) == {"model loaded"}

    def restarts(*reasons: str):
        """Starts and stops recorded after the run's own clean stop, a millisecond apart, in order."""
        def edit(db: sqlite3.Connection) -> None:
            (last,) = db.execute("SELECT MAX(applied_at) FROM configs").fetchone()
            db.executemany("INSERT INTO configs SELECT config_id, ?, ?, payload FROM configs LIMIT 1",
                           [(last + 1 + i, r) for i, r in enumerate(reasons)])
        return edit

    # the run ended cleanly (exit at the file's end): its 'stop' row makes the next start planned
    crashed = _copy(dep, tmp_path, "crashes", restarts("start", "start", "start", "start"))
    assert fails(crashed) == {"restarts in 24 h"}
    res = cli("verify-shadow", "--env-file", str(crashed), "--since", "10m")
    assert "5 starts: 3 after a crash or kill (the run before never stopped cleanly), 1 after a planned stop" in " ".join(
        res.output.split())
    planned = _copy(dep, tmp_path, "planned", restarts("start", "stop", "start", "stop", "start", "stop", "start"))
    assert fails(planned) == set()
    res = cli("verify-shadow", "--env-file", str(planned), "--since", "10m")
    assert "5 starts: 0 after a crash or kill" in " ".join(res.output.split())

    # log evidence
    assert fails(dep.env, _log_with(log, tmp_path / "noisy.log", extra=[_now_line(f"line {i}")
                                                                        for i in range(10_001)])) == {"log volume"}
    assert fails(dep.env, _log_with(log, tmp_path / "silent.log", keep=lambda ln: "[SHADOW]" not in ln)) == {
        "shadow log lines"}
    assert fails(dep.env, _log_with(log, tmp_path / "errors.log", extra=[_now_line("ERROR boom")] * 3)) == {"errors"}


@pytest.fixture
def redeployed(deployment, artifacts, cli):
    """The spec's path: four voters serve 50 closes, then a retrained PatchTST is staged and put in
    shadow and the service serves the next 50 (one log, as the journal would hold both)."""
    env_text = deployment.env.read_text().replace("SHADOW_LOG_INTERVAL_S=1\n", "SHADOW_LOG_INTERVAL_S=0\n")
    deployment.env.write_text(env_text)
    before = deployment.home.parent / "candles-before"
    before.mkdir()
    for csv in deployment.data.glob("*.csv"):
        (before / csv.name).write_text("\n".join(csv.read_text().splitlines()[:1 + 1150]) + "\n")
    log = deployment.home.parent / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}

    def serve(data: Path) -> None:
        with log.open("a") as out:
            rc = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "serve", "--env-file", str(deployment.env),
                                 "--data", str(data), "--pace", "0", "--history", "1100", "--exit-at-end"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode
        assert rc == 0, log.read_text()[-3000:]

    serve(before)
    for args in (("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst"),
                 ("models", "shadow", "patchtst")):
        res = cli(*args, "--env-file", str(deployment.env))
        assert res.exit_code == 0, res.output
    serve(deployment.data)
    return deployment, log


def test_verify_shadow_judges_the_deployment_in_force_and_never_passes_on_no_evidence(redeployed, cli, tmp_path):
    """Right after a correct deploy, decisions of the four-voter configuration before it are excluded
    (and counted as such), not failures; a 4 of 3 voters fails; no decisions or no log lines is no PASS."""
    dep, log = redeployed
    with sqlite3.connect(dep.home / "telemetry.sqlite") as db:
        per_config = dict(db.execute("SELECT config_id, COUNT(*) FROM decisions GROUP BY config_id"))
        current = db.execute("SELECT config_id FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()[0]
        # as in the test above: a service deployed 10 minutes ago (this run made its evidence at full speed)
        db.execute("UPDATE configs SET applied_at = applied_at - 600000 WHERE reason IN ('start', 'stop')")
    assert sorted(per_config.values()) == [100, 100] and per_config[current] == 100
    res = cli("verify-shadow", "--env-file", str(dep.env), "--since", "10m", "--log", str(log))
    got, text = {n.strip(): s for s, n in _LINE.findall(res.output)}, " ".join(res.output.split())  # unwrapped
    assert res.exit_code == 0, res.output
    assert set(got.values()) <= {"PASS", "INFO"} and len(got) == 9, res.output
    assert "PASS restarts in 24 h: 2 starts: 0 after a crash or kill (the run before never stopped cleanly), 1 after " \
           "a planned stop" in text  # the first serve ended at its file's end
    assert ("PASS shadow entry in every decision and intent: 100 decisions, " in text
            and "; 100 decisions of the window made under an earlier configuration not counted" in text), text
    values = re.search(r"PASS consensus_count excludes the shadow model: .*? consensus_count values \[([\d, ]*)\]", text)
    assert set(map(int, values.group(1).split(", "))) <= {1, 2, 3}, text

    def counted_and_untagged(db: sqlite3.Connection) -> None:
        """PatchTST voting again, untagged: every entry agrees and the count says 4 (of 3 voters)."""
        event_id, payload = db.execute("SELECT event_id, payload FROM decisions WHERE config_id = ? "
                                       "ORDER BY candle_open_time DESC LIMIT 1", (current,)).fetchone()
        d = json.loads(payload)
        for e in d["model_breakdown"].values():
            e.update(action=d["action"], status="ok", shadow=False)
        d["consensus_count"] = 4
        db.execute("UPDATE decisions SET payload=? WHERE event_id=?", (json.dumps(d), event_id))

    code, got = _verify(cli, _copy(dep, tmp_path, "four", counted_and_untagged), log)
    assert code == 1 and got["consensus_count excludes the shadow model"] == "FAIL"

    # no evidence: no decisions in the window, and a log source without lines
    empty = _copy(dep, tmp_path, "nothing", lambda db: db.execute("DELETE FROM decisions"))
    code, got = _verify(cli, empty, _log_with(log, tmp_path / "none.log", keep=lambda ln: False))
    assert code == 1 and got["shadow log lines"] == got["errors"] == got["log volume"] == "FAIL"
    assert got["shadow entry in every decision and intent"] == got["consensus_count excludes the shadow model"] == "FAIL"
    code, got = _verify(cli, empty, log)  # lines, but no decisions to hold them against
    assert code == 1 and got["shadow log lines"] == "FAIL"
    journal = subprocess.run(["journalctl", "-q", "-u", "quantum-ai-engine.service", "--since", "-600s", "-o", "cat",
                              "--no-pager"], capture_output=True, text=True) if shutil.which("journalctl") else None
    if journal is not None and journal.returncode == 0 and not journal.stdout.strip():
        res = cli("verify-shadow", "--env-file", str(empty), "--since", "10m", "--journal")
        got = {n.strip(): s for s, n in _LINE.findall(res.output)}
        assert res.exit_code == 1 and got["shadow log lines"] == got["errors"] == got["log volume"] == "FAIL"
        assert "no log lines at all in the window from journalctl" in " ".join(res.output.split())
