"""Delivery survives a Redis outage and a SIGKILL of the engine: every event exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from bus_helpers import assert_exactly_once, bus_env, load_bus_settings, stream_events

from ai_engine.data import synthetic_market
from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.telemetry.redis_streams import RedisPublisher

pytestmark = pytest.mark.redis


def _release(settings) -> None:
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "test"))


def test_redis_outage_spools_and_drains_in_order(tmp_path, artifacts, own_redis, caplog):
    settings = load_bus_settings(bus_env(tmp_path / "home", artifacts, own_redis.url, "q", GOVERNOR_BACKEND="file"))
    _release(settings)
    series = synthetic_market(list(settings.symbols), interval="1h", n_bars=700, seed=7)
    cut = series["BTCUSDT"].open_time[450]
    engine = open_engine(settings, wait_for_shadow=True)
    publisher = engine.sinks[0]
    replay_series(engine, {s: v.time_slice(None, cut) for s, v in series.items()})
    deadline = time.monotonic() + 20
    while publisher.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.pending() == 0 and publisher.delivered > 0
    own_redis.stop()
    summary = replay_series(engine, series, resume=True)  # decisions go on while Redis is down
    assert summary.decisions > 0 and summary.published > 0
    time.sleep(0.5)
    assert not publisher.connected
    assert publisher.pending() >= summary.decisions + summary.published
    assert "unreachable" in caplog.text and "spooled" in caplog.text
    own_redis.start()
    engine.close()
    assert publisher.close(timeout=30) == 0
    assert "is back after" in caplog.text
    n_dec, n_int = assert_exactly_once(own_redis.url, "q", [settings.store_path])
    assert n_dec > summary.decisions
    times = [json.loads(e["payload"])["candle_open_time"] for e in stream_events(own_redis.url, "q", "ai.decision")]
    assert times == sorted(times), "spooled events were not delivered in order"


def test_sigkill_mid_replay_then_resume_loses_and_duplicates_nothing(tmp_path, artifacts, redis_url, prefix):
    env_file = tmp_path / "ai-engine.env"
    env = bus_env(tmp_path / "home", artifacts, redis_url, prefix, GOVERNOR_BACKEND="file")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    settings = load_bus_settings(env)
    _release(settings)
    cmd = [sys.executable, "-m", "ai_engine.cli.main", "replay", "--synthetic", "--bars", "2500", "--seed", "11",
           "--env-file", str(env_file)]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "REDIS_"))}
    proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = settings.store_path
    decided = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=1) as db:
                    decided = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            except sqlite3.Error:
                decided = 0
            if decided >= 600:
                break
        time.sleep(0.01)
    assert proc.poll() is None, f"replay ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store) as db:
        at_kill = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    done = subprocess.run([*cmd, "--resume"], env=child_env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with sqlite3.connect(store) as db:
        total = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    assert 0 < at_kill < total
    # whatever the killed or the finished process left spooled is delivered by the next publisher
    assert RedisPublisher(store, redis_url, prefix=prefix).close(timeout=30) == 0
    n_dec, n_int = assert_exactly_once(redis_url, prefix, [store])
    assert n_dec == total and n_int > 0
