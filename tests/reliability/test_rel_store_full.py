"""`serve` on a store whose filesystem fills up: a real tmpfs of its own, filled by another file
until SQLite cannot grow its WAL. Decisions keep coming, the retry buffer stays bounded, intents are
blocked as ``telemetry_unwritable``, /health says so, and once space returns everything kept is
written and what was not kept is counted."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess

import pytest

from ai_engine.health import fetch_health
from tests.helpers import reap, stop_gracefully, wait_for
from tests.reliability.conftest import SERVE, SYMBOLS, free_port, settings_for, write_csvs

BOUND = 200  # AI_ENGINE_STORE_BUFFER_ROWS: about 14 batches of two symbols


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MiB tmpfs (mounting needs root: as another user the test is skipped, saying so)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full filesystem needs a tmpfs of the test's own, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path) -> None:
    """Write ``path`` until the filesystem has no space left."""
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_serve_blocks_intents_while_its_store_is_full_and_recovers_by_itself(models, tmp_path, small_fs):
    home, port = tmp_path / "home", free_port()
    store = small_fs / "telemetry.sqlite"
    settings_for(home, models)  # releases the governor (PAPER)
    env = tmp_path / "ai-engine.env"
    lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}", f"AI_ENGINE_HEALTH_PORT={port}",
             f"AI_ENGINE_STORE={store}", f"AI_ENGINE_STORE_BUFFER_ROWS={BOUND}", "ENSEMBLE_MIN_CONSENSUS=1",
             "GOVERNOR_BACKEND=file", "SHADOW_ISOLATION=thread"]
    lines += [f"{p}_MODEL_PATH={models[m]}" for m, p in (("xgb", "XGB"), ("lgbm", "LGBM"), ("nhits", "NHITS"),
                                                         ("patchtst", "PATCHTST"))]
    env.write_text("\n".join(lines) + "\n")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*SERVE, "--env-file", str(env), "--data", str(write_csvs(tmp_path / "candles", 3000)),
                             "--pace", "0.05", "--history", "150"], env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (h := fetch_health(port)) and (h.get("decisions_made") or 0) > 10, "first decisions")
        fill(small_fs / "filler")
        full = wait_for(lambda: (h := fetch_health(port)) and h["status"] == "unhealthy" and h, "/health unhealthy")
        assert full["store"]["reason"].startswith("telemetry_unwritable: database or disk is full")
        # decisions keep coming, and past twice the bound are counted, not kept
        worst = wait_for(lambda: (h := fetch_health(port)) and h["store"]["unkept_decisions"] > 10 and h, "unkept")
        assert worst["decisions_made"] > full["decisions_made"] and worst["state"] == "running"
        assert worst["store"]["pending_rows"] <= 2 * BOUND
        os.unlink(small_fs / "filler")
        ok = wait_for(lambda: (h := fetch_health(port)) and h["status"] == "ok" and h, "/health ok again")
        made = ok["decisions_made"]
        wait_for(lambda: fetch_health(port)["decisions_made"] > made + 5, "decisions after the recovery")
        stop_gracefully(proc)
    finally:
        reap(proc, log)
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text
    assert "every intent is blocked (telemetry_unwritable)" in text and "accepts writes again" in text
    unkept = int(re.search(r"(\d+) decisions were not kept while it could not be written", text).group(1))
    total = int(re.search(r"stopped after (\d+) decisions", text).group(1))
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        held = db.execute("SELECT COUNT(*), SUM(published) FROM decisions WHERE blocked_reason LIKE "
                          "'telemetry_unwritable: database or disk is full%'").fetchone()
        held_intents = db.execute("SELECT COUNT(*) FROM intents i JOIN decisions d ON d.event_id = i.decision_event_id "
                                  "WHERE d.blocked_reason IS NOT NULL").fetchone()[0]
        published_after = db.execute("SELECT COUNT(*) FROM intents").fetchone()[0]
    assert unkept == ok["store"]["unkept_decisions"] > 10
    assert stored + unkept == total  # everything kept was written; the rest is counted
    assert held[0] > 0 and held[1] == 0 and held_intents == 0
    assert published_after > 0  # intents went out before and after
