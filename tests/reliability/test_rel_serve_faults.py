"""`serve` end to end under faults: a model missing at start, a hot reload onto a truncated file,
the governor unreadable. The service keeps deciding and its health says what happened."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess

from ai_engine.health import fetch_health
from tests.helpers import reap, stop_gracefully, wait_for
from tests.reliability.conftest import SERVE, SYMBOLS, copy_artifact, free_port, write_csvs


def test_serve_survives_a_missing_model_a_broken_reload_and_an_unreadable_governor(models, tmp_path):
    home, port = tmp_path / "home", free_port()
    for m in ("xgb", "lgbm", "nhits"):
        copy_artifact(models[m], home / "models" / models[m].name)
    env = tmp_path / "ai-engine.env"
    lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}", f"AI_ENGINE_HEALTH_PORT={port}",
             "ENSEMBLE_MIN_CONSENSUS=2", "GOVERNOR_BACKEND=file"]
    lines += [f"{p}_MODEL_PATH={home / 'models' / models[m].name}" for m, p in (("xgb", "XGB"), ("lgbm", "LGBM"), ("nhits", "NHITS"))]
    lines.append(f"PATCHTST_MODEL_PATH={home / 'models' / 'patchtst_model.pth'}")  # not there
    env.write_text("\n".join(lines) + "\n")
    (home / "governor.json").write_text("{not json")  # unreadable from the start
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*SERVE, "--env-file", str(env), "--data", str(write_csvs(tmp_path / "candles", 400)),
                             "--pace", "0.02", "--history", "150"], env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        snap = wait_for(lambda: (h := fetch_health(port)) and (h.get("decisions_made") or 0) > 5 and h, "first decisions")
        config_id = snap["config_id"]
        # a hot reload onto a truncated PatchTST is refused; the old configuration keeps deciding
        bad = home / "models" / "patchtst_trunc.pth"
        copy_artifact(models["patchtst"], bad)
        bad.write_bytes(bad.read_bytes()[:1000])
        env.write_text(env.read_text().replace("patchtst_model.pth", "patchtst_trunc.pth"))
        proc.send_signal(signal.SIGHUP)
        snap = wait_for(lambda: (h := fetch_health(port)) and h["reloads"]["refused"] >= 1 and h, "refused reload")
        made = snap["decisions_made"]
        snap = wait_for(lambda: (h := fetch_health(port)) and h["decisions_made"] > made + 5 and h, "decisions after the reload")
        assert snap["config_id"] == config_id and snap["state"] == "running"
        stop_gracefully(proc)
    finally:
        reap(proc, log)
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text
    assert "[PatchTST] ❌ model not loaded" in text and "reload refused" in text
    with sqlite3.connect(home / "telemetry.sqlite") as db:
        statuses = {r[0] for r in db.execute("SELECT DISTINCT status FROM predictions WHERE model='patchtst'")}
        blocked = db.execute("SELECT COUNT(*), SUM(blocked_reason LIKE 'governor state unreadable%') FROM decisions "
                             "WHERE actionable=1").fetchone()
        assert db.execute("SELECT COUNT(*) FROM intents").fetchone()[0] == 0
        assert {r[0] for r in db.execute("SELECT DISTINCT config_id FROM decisions")} == {config_id}
    assert statuses == {"inactive"}
    assert blocked[0] > 0 and blocked[0] == blocked[1]
