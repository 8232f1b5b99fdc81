"""`serve` as a real subprocess: commands change the roles seen in the very next decisions, no restart."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import tempfile
import threading
import urllib.request
from pathlib import Path

from ai_engine.cpu_affinity import ALL_CPUS
from ai_engine.health import fetch_health
from ai_engine.lifecycle.audit import read_audit
from tests.helpers import wait_for


def _db(dep) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{dep.home / 'telemetry.sqlite'}?mode=ro", uri=True)


def _next_decision_roles(dep, config_id: str) -> dict[str, tuple[str, float, str]]:
    """(role, weight, sha256) per model of the first decision made on ``config_id``."""
    def first():
        with _db(dep) as db:
            return db.execute("SELECT event_id FROM decisions WHERE config_id=? ORDER BY decided_at LIMIT 1",
                              (config_id,)).fetchone()
    (event_id,) = wait_for(first, f"a decision on config {config_id}")
    with _db(dep) as db:
        rows = db.execute("SELECT model, role, weight, sha256 FROM predictions WHERE event_id=?", (event_id,))
        return {m: (r, w, s) for m, r, w, s in rows}


def _apply(cli, dep, pid: int, *args: str) -> dict[str, tuple[str, float, str]]:
    """Run a command against the live service; return the roles of the first decision on the new config."""
    old = fetch_health(dep.port)["config_id"]
    res = cli(*args, "--env-file", str(dep.env))
    assert res.exit_code == 0, res.output
    assert f"pid {pid}" in res.output  # the running service was told to reload
    snap = wait_for(lambda: (h := fetch_health(dep.port)) and h["config_id"] != old and h["state"] == "running" and h,
                 f"reload after {args}")
    assert snap["pid"] == pid and snap["reloads"]["refused"] == 0
    return _next_decision_roles(dep, snap["config_id"])


def test_lifecycle_commands_reach_the_next_decisions_without_restart(deployment, artifacts, cli, start_serve):
    sock_dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(f"{sock_dir}/notify")
    notify.settimeout(0.5)
    messages: list[bytes] = []
    done = threading.Event()

    def listen():  # systemd's side: read every notification
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(4096))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # a flat-line threshold every model falls under, so /health and status must show the flags
    deployment.env.write_text(deployment.env.read_text() + "FLATLINE_WINDOW=10\nFLATLINE_MIN_STD=1.0\n")
    proc = start_serve(pace=0.25, NOTIFY_SOCKET=f"{sock_dir}/notify")
    wait_for(lambda: messages, "READY=1")
    assert messages[0] == b"READY=1"
    pid = proc.pid
    assert (deployment.home / "ai-engine.pid").read_text().strip() == str(pid)
    snap = wait_for(lambda: (h := fetch_health(deployment.port)) and h.get("decisions_made") and h, "first decisions")
    assert snap["roles"] == {"xgb": "voter", "lgbm": "voter", "nhits": "voter", "patchtst": "voter"}
    assert snap["governor"]["mode"] == "PAPER" and snap["last_decision_at"]
    assert snap["status"] == "ok" and snap["store"]["pending_rows"] == 0 and snap["store"]["unkept_decisions"] == 0
    assert snap["decision_cpu"] == (max(ALL_CPUS) if len(ALL_CPUS) > 1 else None)  # AI_ENGINE_DECISION_CPU=auto
    flat = wait_for(lambda: fetch_health(deployment.port)["flatlined"], "flat-line flags on /health")
    assert set(flat) <= {"xgb", "lgbm", "nhits", "patchtst"}
    assert all(f["window"] == 10 and f["min_std"] == 1.0 and 0 <= f["std"] < 1 for f in flat.values())
    status = cli("status", "--env-file", str(deployment.env))
    assert status.exit_code == 0 and f"{next(iter(flat))}: output FLAT-LINED" in status.output
    # the health endpoint is read-only
    req = urllib.request.Request(f"http://127.0.0.1:{deployment.port}/health", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(req, timeout=2)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 405

    assert cli("models", "backup", "--env-file", str(deployment.env)).exit_code == 0
    assert cli("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst",
               "--env-file", str(deployment.env)).exit_code == 0
    new_sha = json.loads(Path(f"{artifacts.patchtst_new}.meta.json").read_text())["sha256"]
    base_sha = json.loads(Path(f"{artifacts.patchtst}.meta.json").read_text())["sha256"]

    roles = _apply(cli, deployment, pid, "models", "shadow", "patchtst")
    assert roles["patchtst"][0] == "shadow" and roles["patchtst"][2] == new_sha
    # the shadow runs in a child process of the service, shown on /health
    child = wait_for(lambda: (h := fetch_health(deployment.port)).get("model_processes", {}).get("patchtst", {})
                     .get("state") == "running" and h["model_processes"]["patchtst"]["pid"], "shadow process running")
    assert child != pid and Path(f"/proc/{child}").exists()
    assert {m: r[0] for m, r in roles.items() if m != "patchtst"} == {"xgb": "voter", "lgbm": "voter", "nhits": "voter"}
    assert messages[1].startswith(b"RELOADING=1\nMONOTONIC_USEC=") and messages[2] == b"READY=1"

    roles = _apply(cli, deployment, pid, "models", "activate", "patchtst", "--weight", "20", "--force")  # option A
    assert roles["patchtst"] == ("voter", 20.0, new_sha)
    assert fetch_health(deployment.port)["model_processes"] == {}  # a voter runs in the service itself

    roles = _apply(cli, deployment, pid, "models", "activate", "patchtst", "--weight", "5",
                   "--rebalance", "xgb=27.5,lgbm=27.5,nhits=40", "--force")  # option B
    assert {m: r[:2] for m, r in roles.items()} == {
        "xgb": ("voter", 27.5), "lgbm": ("voter", 27.5), "nhits": ("voter", 40.0), "patchtst": ("voter", 5.0)}

    assert _apply(cli, deployment, pid, "models", "shadow", "patchtst")["patchtst"][0] == "shadow"
    roles = _apply(cli, deployment, pid, "models", "rollback", "--fast", "--force")
    assert roles["patchtst"][:1] == ("voter",) and roles["patchtst"][2] == new_sha

    roles = _apply(cli, deployment, pid, "models", "rollback", "--full")
    assert roles["patchtst"] == ("voter", 20.0, base_sha)
    assert {m: r[1] for m, r in roles.items()} == {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}

    _apply(cli, deployment, pid, "models", "shadow", "patchtst")
    _apply(cli, deployment, pid, "models", "rollback", "--nuclear")
    backup_env = next(deployment.env.parent.glob("ai-engine.env.backup.*"))
    assert deployment.env.read_bytes() == backup_env.read_bytes()
    snap = fetch_health(deployment.port)
    assert snap["roles"]["patchtst"] == "voter" and snap["pid"] == pid

    # a refused change does nothing to the running service
    before = deployment.env.read_bytes()
    res = cli("models", "activate", "patchtst", "--weight", "5", "--rebalance", "xgb=27.5,,", "--force",
              "--env-file", str(deployment.env))
    assert res.exit_code != 0 and deployment.env.read_bytes() == before

    status = cli("status", "--json", "--env-file", str(deployment.env))
    assert status.exit_code == 0 and '"status_source": "health endpoint"' in status.output

    shadow_child = fetch_health(deployment.port)["model_processes"].get("patchtst", {}).get("pid")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    done.set()
    assert not Path(f"/proc/{child}").exists()  # the service's shadow processes end with it
    if shadow_child is not None:
        assert not Path(f"/proc/{shadow_child}").exists()
    listener.join()
    notify.close()
    assert messages[-1] == b"STOPPING=1"
    assert not (deployment.home / "ai-engine.pid").exists()

    whats = [e["what"] for e in read_audit(deployment.home)]
    assert whats == ["models.backup", "models.stage", "models.shadow patchtst", "models.activate patchtst",
                     "models.activate patchtst", "models.shadow patchtst", "models.rollback.fast patchtst",
                     "models.rollback.full patchtst", "models.shadow patchtst", "models.rollback.nuclear"]
    # one decision per candle per symbol, in candle order, across every reload
    with _db(deployment) as db:
        for sym in ("BTCUSDT", "ETHUSDT"):
            times = [t for (t,) in db.execute(
                "SELECT candle_open_time FROM decisions WHERE symbol=? ORDER BY decided_at, candle_open_time", (sym,))]
            assert times == sorted(set(times))
            assert all(b - a == 3_600_000 for a, b in zip(times, times[1:], strict=False))
        configs = {c for (c,) in db.execute("SELECT DISTINCT config_id FROM decisions")}
    assert len(configs) == 6  # original (= nuclear), shadow, A, B, fast, full

    # offline status reads the env file and the store
    off = cli("status", "--json", "--env-file", str(deployment.env))
    assert off.exit_code == 0 and '"not running"' in off.output


def test_resume_after_restart_neither_skips_nor_repeats(deployment, start_serve):
    def decided():
        if not (deployment.home / "telemetry.sqlite").exists():
            return 0
        with _db(deployment) as db:
            try:
                return db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            except sqlite3.OperationalError:  # schema not created yet
                return 0

    proc = start_serve(pace=0.05)
    wait_for(lambda: decided() >= 6, "some decisions")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    n_first = decided()
    proc = start_serve(pace=0.05)
    wait_for(lambda: decided() >= n_first + 6, "decisions after restart")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    with _db(deployment) as db:
        times = [t for (t,) in db.execute("SELECT candle_open_time FROM decisions WHERE symbol='BTCUSDT' ORDER BY decided_at")]
    assert all(b - a == 3_600_000 for a, b in zip(times, times[1:], strict=False))
