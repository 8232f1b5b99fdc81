"""Faults while running: a voter that raises or hangs, the store locked or full, the governor
unreadable, hostile candle streams, and a SIGKILL mid-replay. The engine keeps deciding, loses
nothing, and says what happened."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ai_engine.data import time_batches
from ai_engine.live import CandleProcessor
from ai_engine.runtime import open_engine
from ai_engine.types import Candle
from tests.helpers import AgentWrapper
from tests.reliability.conftest import engine_env, settings_for


class Misbehaving(AgentWrapper):
    """A real agent whose inference raises, or hangs until released."""

    def __init__(self, agent, mode: str, release: threading.Event | None = None) -> None:
        super().__init__(agent)
        self.mode, self.release = mode, release

    def predict(self, X):
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "exit":  # a library calling sys.exit: a BaseException, not an Exception
            sys.exit(3)
        self.release.wait(5.0)  # "hang": returns only when the test lets it (or after 5 s)
        return self._agent.predict(X)


def run_stream(engine, series, start: int, stop: int, proc: CandleProcessor | None = None):
    batches = list(time_batches({s: v.slice(0, stop) for s, v in series.items()}))
    if proc is None:
        proc = CandleProcessor(engine, "1h")
        proc.prime(c for b in batches[:start] for c in b)
    return proc, [r for b in batches[start:] for r in proc.process(b)]


@pytest.mark.parametrize(("mode", "reason"), [
    ("raise", "inference failed: RuntimeError: boom"),
    ("exit", "SystemExit: 3"),  # a BaseException: it must not end the voter worker either
])
def test_a_voter_that_raises_or_exits_is_excluded_per_decision_with_its_reason(models, series, tmp_path, mode, reason):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    engine.state.slots["xgb"].agent = Misbehaving(engine.state.slots["xgb"].agent, mode)
    try:
        _, records = run_stream(engine, series, 120, 160)
    finally:
        engine.close()
    assert len(records) == 80  # every candle decided
    for rec in records:
        x = next(r for r in rec.decision.results if r.model == "xgb")
        assert x.status.value == "error" and x.reason == reason
        assert x.prediction is None and not x.votes
        assert any(r.votes for r in rec.decision.results)  # the other voters still voted
    assert engine.store.count("decisions") == 80


def test_a_voter_that_hangs_is_cut_off_by_the_model_timeout(models, series, tmp_path):
    release = threading.Event()
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2", MODEL_TIMEOUT_MS="200")
    engine = open_engine(settings)
    engine.state.slots["xgb"].agent = Misbehaving(engine.state.slots["xgb"].agent, "hang", release)
    try:
        _, records = run_stream(engine, series, 120, 123)
        hung = [next(r for r in rec.decision.results if r.model == "xgb") for rec in records]
        done_before_release = not release.is_set()
    finally:
        release.set()
        engine.close()
    assert done_before_release and len(records) == 6
    assert all(r.status.value in ("error", "late") and "timed out" in (r.reason or "") for r in hung)


def test_locked_store_keeps_decisions_in_memory_and_writes_them_when_it_frees(models, series, tmp_path, caplog):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    engine.store.connection.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(settings.store_path, isolation_level=None)
    try:
        proc, before = run_stream(engine, series, 120, 130)
        other.execute("BEGIN EXCLUSIVE")
        caplog.set_level(logging.ERROR)
        _, during = run_stream(engine, series, 130, 140, proc)
        assert len(during) == 20  # still deciding
        assert engine.store.pending_writes > 0
        assert "decisions kept in memory until the store accepts them" in caplog.text and "locked" in caplog.text
        other.execute("ROLLBACK")
        _, after = run_stream(engine, series, 140, 150, proc)
    finally:
        other.close()
        engine.close()
    assert engine.store.pending_writes == 0
    ids = [r.event_id for r in before + during + after]
    assert len(ids) == len(set(ids)) == 60
    assert engine.store.count("decisions") == 60
    with sqlite3.connect(settings.store_path) as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM decisions")}
        n_candles = db.execute("SELECT COUNT(*) FROM candles WHERE open_time >= ?",
                               (int(series["BTCUSDT"].open_time[120]),)).fetchone()[0]
    assert stored == set(ids) and n_candles == 60


def test_full_disk_keeps_decisions_and_flushes_them_when_space_returns(models, series, tmp_path, caplog):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    db = engine.store.connection
    try:
        proc, before = run_stream(engine, series, 120, 125)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full: the file may not grow
        caplog.set_level(logging.ERROR)
        _, during = run_stream(engine, series, 125, 165, proc)
        assert len(during) == 80 and engine.store.pending_writes > 0
        assert "full" in caplog.text
        db.execute("PRAGMA max_page_count=1073741823")  # space freed
        _, after = run_stream(engine, series, 165, 166, proc)
    finally:
        engine.close()
    ids = {r.event_id for r in before + during + after}
    assert engine.store.pending_writes == 0 and engine.store.count("decisions") == len(ids) == 92



def test_retry_buffer_is_bounded_blocks_intents_and_reports_what_it_cannot_keep(models, series, tmp_path, caplog):
    """A store that stays unwritable must not grow the process without limit, nor let an intent out
    whose record it cannot keep: past the bound every intent is blocked (telemetry_unwritable), the
    blocked decisions are kept up to twice the bound and written once the store accepts writes, and
    each decision past that is counted and logged, never dropped silently."""
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="1")
    engine = open_engine(settings)
    store = engine.store
    store.max_pending_rows = 60
    store.connection.execute("PRAGMA busy_timeout=20")
    other = None
    try:
        proc, before = run_stream(engine, series, 120, 122)
        other = sqlite3.connect(settings.store_path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        caplog.set_level(logging.ERROR)
        during, peak = [], 0
        for stop in range(123, 146):
            during += run_stream(engine, series, stop - 1, stop, proc)[1]
            peak = max(peak, store.pending_rows)
        health = store.health()
        assert peak <= 2 * 60 and store.unkept_decisions > 0
        assert health["status"] == "unhealthy" and health["reason"].startswith("telemetry_unwritable: database is locked")
        assert "every intent is blocked (telemetry_unwritable)" in caplog.text and "retry buffer full" in caplog.text
        other.execute("ROLLBACK")
        _, after = run_stream(engine, series, 145, 146, proc)
    finally:
        if other is not None:
            other.close()
        engine.close()
    assert store.health()["status"] == "ok" and "decisions were not kept while it could not be written" in caplog.text
    held = [r for r in during if r.blocked_reason and r.blocked_reason.startswith("telemetry_unwritable")]
    assert held and not any(r.published for r in during[during.index(held[0]):])
    with sqlite3.connect(settings.store_path) as db:
        stored = dict(db.execute("SELECT event_id, blocked_reason FROM decisions"))
        intents = {row[0] for row in db.execute("SELECT decision_event_id FROM intents")}
    made = {r.event_id for r in before + during + after}
    assert len(made) == len(before + during + after)
    assert {r.event_id for r in before + after} <= set(stored) <= made
    assert len(made - set(stored)) == store.unkept_decisions  # every decision not kept is counted
    kept_held = [r for r in held if r.event_id in stored]
    assert kept_held and all(stored[r.event_id] == r.blocked_reason for r in kept_held)
    assert not intents & {r.event_id for r in held}


def test_pending_writes_are_flushed_or_reported_at_close(models, series, tmp_path, caplog):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    engine.store.connection.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(settings.store_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    _, records = run_stream(engine, series, 120, 125)
    caplog.set_level(logging.ERROR)
    engine.close()
    engine.store.close()
    assert "10 decisions in" in caplog.text and "could not be written before close" in caplog.text
    other.execute("ROLLBACK")
    other.close()
    assert len(records) == 10


@pytest.mark.parametrize("damage", ["garbage", "directory", "bad_mode"])
def test_unreadable_governor_blocks_every_actionable_decision_with_the_reason(damage, models, series, tmp_path):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="1")
    path = settings.governor_state_file
    path.unlink()
    if damage == "garbage":
        path.write_bytes(b"\x00{not json")
    elif damage == "directory":
        path.mkdir()
    else:
        path.write_text('{"kill": false, "mode": "YOLO"}')
    engine = open_engine(settings)
    try:
        _, records = run_stream(engine, series, 120, 170)
    finally:
        engine.close()
    actionable = [r for r in records if r.decision.actionable]
    assert len(records) == 100 and actionable, "need actionable decisions for the check to mean anything"
    assert not any(r.published for r in records)
    assert all(r.blocked_reason.startswith("governor state unreadable") for r in actionable)
    assert engine.store.count("intents") == 0 and engine.store.count("decisions") == 100


def test_hostile_candle_stream_is_filtered_and_every_good_candle_decided(models, series, tmp_path, caplog):
    """Duplicates, late (out-of-order) candles, a gap and a malformed candle, through CandleProcessor."""
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    batches = list(time_batches(series))
    proc = CandleProcessor(engine, "1h")
    proc.prime(c for b in batches[:120] for c in b)
    caplog.set_level(logging.WARNING)
    decided = []
    try:
        for i in range(120, 160):
            if 140 <= i < 143:  # a gap: three hours missing for every symbol
                continue
            batch = list(batches[i])
            decided += proc.process(batch)
            if i % 5 == 0:
                decided += proc.process(batch)  # duplicate delivery
                decided += proc.process(batches[i - 2])  # a late candle, after its successors
            if i == 150:
                c = batch[0]
                bad = Candle(c.symbol, "1h", c.open_time + 3_600_000, c.open, c.low * 0.5, c.high * 2, c.close, -1.0)
                decided += proc.process([bad])  # high below low, negative volume
    finally:
        engine.close()
    times = [(r.symbol, r.candle_open_time) for r in decided]
    assert len(times) == len(set(times)), "a candle was decided twice"
    expected = {(c.symbol, c.open_time) for i in range(120, 160) if not 140 <= i < 143 for c in batches[i]}
    assert set(times) == expected  # the rejected malformed candle did not take the real candle's slot
    assert proc.quarantined["duplicate"] >= 8 and proc.quarantined["out_of_order"] >= 8
    assert proc.quarantined["high_below_body"] + proc.quarantined["low_above_body"] + proc.quarantined["negative_volume"] == 1
    assert "rejected candle BTCUSDT" in caplog.text and "gap BTCUSDT" in caplog.text and "3 missing bars" in caplog.text
    assert engine.store.count("decisions") == len(times)


def _replay_cmd(env_file, *extra):
    return [sys.executable, "-m", "ai_engine.cli.main", "replay", "--synthetic", "--bars", "1500", "--seed", "5",
            "--env-file", str(env_file), *extra]


def test_sigkill_mid_replay_then_resume_loses_and_duplicates_nothing(models, tmp_path):
    """SQLite only (the Redis variant is tests/bus/test_bus_outage.py)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "REDIS_"))}
    stores = {}
    for run in ("reference", "killed"):
        home = tmp_path / run
        settings = settings_for(home, models, ENSEMBLE_MIN_CONSENSUS="2")
        env_file = tmp_path / f"{run}.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in engine_env(home, models, ENSEMBLE_MIN_CONSENSUS="2").items()))
        stores[run] = settings.store_path
        if run == "reference":
            assert subprocess.run(_replay_cmd(env_file), env=child_env, capture_output=True, timeout=300).returncode == 0
            continue
        proc = subprocess.Popen(_replay_cmd(env_file), env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        decided, deadline = 0, time.monotonic() + 120
        while decided < 300 and proc.poll() is None and time.monotonic() < deadline:
            try:
                with sqlite3.connect(settings.store_path, timeout=1) as db:
                    decided = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            except sqlite3.Error:
                pass
            time.sleep(0.01)
        assert proc.poll() is None, f"replay ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with sqlite3.connect(settings.store_path) as db:
            at_kill = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        done = subprocess.run(_replay_cmd(env_file, "--resume"), env=child_env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    sql = "SELECT event_id, action, round(confidence, 6), consensus_count, published FROM decisions ORDER BY event_id"
    with sqlite3.connect(stores["reference"]) as a, sqlite3.connect(stores["killed"]) as b:
        ref, got = a.execute(sql).fetchall(), b.execute(sql).fetchall()
        assert a.execute("SELECT COUNT(*) FROM intents").fetchone() == b.execute("SELECT COUNT(*) FROM intents").fetchone()
    assert 0 < at_kill < len(ref)
    assert got == ref


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a reader as a user without write access")
def test_an_operator_with_read_access_only_can_read_the_store_stopped_or_live():
    import tempfile

    from ai_engine.telemetry.sqlite import TelemetryStore

    where = Path(tempfile.mkdtemp(prefix="ai-engine-ro-", dir="/tmp"))
    try:
        where.chmod(0o755)  # readable, not writable, by others
        path = where / "telemetry.sqlite"
        TelemetryStore(path).close()
        path.chmod(0o644)
        read = [sys.executable, "-c", "import sys; from ai_engine.telemetry.sqlite import TelemetryStore; "
                "print(TelemetryStore(sys.argv[1], readonly=True).count('configs'))", str(path)]
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *read]
        done = subprocess.run(as_nobody, capture_output=True, text=True, timeout=60, cwd=where)
        assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr
        live = TelemetryStore(path)  # a service writing: the store has a -wal file
        live.record_config("c1", "start", {"models": {}})
        try:
            done = subprocess.run(as_nobody, capture_output=True, text=True, timeout=60, cwd=where)
            assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr  # the -wal's row included
        finally:
            live.close()
    finally:
        shutil.rmtree(where)
