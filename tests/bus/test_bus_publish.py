"""Decisions and intents reach the Redis streams as real JSON, exactly once, through the outbox."""

from __future__ import annotations

import json
import sqlite3

import pytest
import redis
from bus_helpers import assert_exactly_once, bus_env, load_bus_settings, stream_events

from ai_engine.data import synthetic_market
from ai_engine.enums import GovernorMode
from ai_engine.governor import Governor, GovernorState
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.telemetry.redis_governor import RedisGovernorBackend
from ai_engine.telemetry.redis_reader import materialize_from_redis
from ai_engine.telemetry.redis_streams import RedisPublisher

pytestmark = pytest.mark.redis

FIELDS = {"event_type", "payload", "trace_id", "correlation_id", "timestamp", "source", "event_id"}


@pytest.fixture
def replayed(tmp_path, artifacts, redis_url, prefix):
    """A replay through ``open_engine`` with REDIS_URL set (Redis governor released to PAPER)."""
    settings = load_bus_settings(bus_env(tmp_path / "home", artifacts, redis_url, prefix))
    RedisGovernorBackend(redis_url, prefix).write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    engine = open_engine(settings, wait_for_shadow=True)
    series = synthetic_market(list(settings.symbols), interval="1h", n_bars=700, seed=3)
    summary = replay_series(engine, series)
    publisher = next(s for s in engine.sinks if isinstance(s, RedisPublisher))
    engine.close()
    assert publisher.close(timeout=20) == 0
    return settings, summary


def test_replay_puts_every_decision_and_intent_on_the_streams(replayed, redis_url, prefix):
    settings, summary = replayed
    n_dec, n_int = assert_exactly_once(redis_url, prefix, [settings.store_path])
    assert n_dec == summary.decisions > 0
    assert n_int == summary.published > 0, "the test needs some allowed intents"
    decisions = stream_events(redis_url, prefix, "ai.decision")
    intents = stream_events(redis_url, prefix, "trade.intent")
    for e in decisions + intents:
        assert set(e) == FIELDS
        assert e["source"] == "ai-engine"
        assert '"shadow":true' in e["payload"] and "True" not in e["payload"]
        payload = json.loads(e["payload"])
        assert payload["model_breakdown"]["patchtst"]["shadow"] is True
        assert payload["model_breakdown"]["xgb"]["shadow"] is False
    for e in intents:
        payload = json.loads(e["payload"])
        assert e["event_type"] == "trade.intent" and payload["side"] in ("BUY", "SELL")
        assert e["correlation_id"] == payload["decision_event_id"]
    # stream order follows decision order (the outbox seq)
    times = [json.loads(e["payload"])["candle_open_time"] for e in decisions]
    assert times == sorted(times)


def test_redelivery_after_a_crash_before_marking_adds_nothing(replayed, redis_url, prefix):
    """Rows XADDed but not marked delivered (crash in between) are skipped by the Lua guard."""
    settings, summary = replayed
    with sqlite3.connect(settings.store_path) as db:
        db.execute("UPDATE outbox SET delivered_at = NULL")
    pub = RedisPublisher(settings.store_path, redis_url, prefix=prefix, start=False)
    db = sqlite3.connect(settings.store_path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    while pub.drain_once(db):
        pass
    db.close()
    assert pub.duplicates_skipped == summary.decisions + summary.published
    assert pub.pending() == 0
    assert_exactly_once(redis_url, prefix, [settings.store_path])


def test_materialize_from_redis_rebuilds_the_decision_store(replayed, redis_url, prefix, tmp_path):
    settings, summary = replayed
    copy = materialize_from_redis(redis_url, prefix, tmp_path / "from_redis.sqlite")
    dest = copy.path
    assert copy.read == summary.decisions and copy.skipped == {} and copy.source.endswith(":stream:ai.decision")
    with sqlite3.connect(dest) as db, sqlite3.connect(settings.store_path) as src:
        q = "SELECT event_id, action, ROUND(confidence, 6), published FROM decisions ORDER BY event_id"
        assert db.execute(q).fetchall() == src.execute(q).fetchall()
        q = "SELECT event_id, model, role, status, action, ROUND(p_buy, 6) FROM predictions ORDER BY event_id, model"
        assert db.execute(q).fetchall() == src.execute(q).fetchall()
        shadow = db.execute("SELECT COUNT(*) FROM predictions WHERE model='patchtst' AND role='shadow'").fetchone()[0]
        assert shadow == summary.decisions
        closes = db.execute("SELECT COUNT(*) FROM candles WHERE open=close AND high=close AND volume=0").fetchone()[0]
        assert closes == summary.decisions
    # versions and checksums per configuration, as the engine's store has them
    from ai_engine.analysis import analyze

    def versions(path):
        return {(v.role, v.version, v.sha256, v.n) for v in analyze(path, 24 * 3650, model="lgbm").primary.versions}

    seen = versions(dest)
    assert seen == versions(settings.store_path) and all(version and sha for _, version, sha, _ in seen), seen


def test_materialize_counts_and_skips_unreadable_entries(redis_url, prefix, tmp_path, caplog):
    from ai_engine.exceptions import DataError

    client = redis.Redis.from_url(redis_url)
    client.xadd(f"{prefix}:stream:ai.decision", {"payload": "{'shadow': True}"})
    with pytest.raises(DataError, match="no readable decision .1 entries skipped"):
        materialize_from_redis(redis_url, prefix, tmp_path / "x.sqlite")
    with pytest.raises(DataError, match="does not exist"):
        materialize_from_redis(redis_url, prefix + "-none", tmp_path / "y.sqlite")


def test_two_shards_publish_every_event_exactly_once(tmp_path, artifacts, redis_url, prefix):
    """Two engines (shards 0/2 and 1/2, own stores) on one Redis: no symbol decided twice."""
    syms = "BTCUSDT,ETHUSDT,SOLUSDT,XRPUSDT"
    RedisGovernorBackend(redis_url, prefix).write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    stores, owned = [], []
    for i in (0, 1):
        s = load_bus_settings(bus_env(tmp_path / f"home{i}", artifacts, redis_url, prefix,
                                      AI_ENGINE_SYMBOLS=syms, AI_ENGINE_SHARD=f"{i}/2"))
        engine = open_engine(s, wait_for_shadow=True)
        replay_series(engine, synthetic_market(list(s.my_symbols()), interval="1h", n_bars=400, seed=5))
        engine.close()
        assert engine.sinks[0].close(timeout=20) == 0
        stores.append(s.store_path)
        owned.append(set(s.my_symbols()))
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(syms.split(","))
    assert_exactly_once(redis_url, prefix, stores)
    by_symbol = {}
    for e in stream_events(redis_url, prefix, "ai.decision"):
        d = json.loads(e["payload"])
        by_symbol.setdefault(d["symbol"], set()).add(d["config_id"])
    assert set(by_symbol) == set(syms.split(","))


def test_redis_governor_fails_closed(redis_url, prefix):
    backend = RedisGovernorBackend(redis_url, prefix)
    gov = Governor(backend)
    st, err = gov.state()
    assert st is None and "missing" in err
    backend.write(GovernorState.new(False, GovernorMode.LIVE, "go"))
    st, err = gov.state()
    assert err is None and st.mode is GovernorMode.LIVE and not st.kill and st.reason == "go"
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:kill", "yes")
    st, err = gov.state()
    assert st is None and f"{prefix}:kill='yes' is malformed" in err
    client.set(f"{prefix}:kill", "0")
    client.set(f"{prefix}:mode", "live")
    assert "'live' is malformed" in gov.state()[1]
    client.set(f"{prefix}:mode", "PAPER")
    client.set(f"{prefix}:governor:execution", "{not json")
    assert "not valid JSON" in gov.state()[1]
    from tests.helpers import free_port

    down = Governor(RedisGovernorBackend(f"redis://127.0.0.1:{free_port()}/0", prefix, timeout_s=0.5))
    st, err = down.state()
    assert st is None and "unreadable" in err and "unreachable" in err


def test_analyze_reads_the_redis_stream_like_the_store(replayed, redis_url, prefix):
    """`ai-engine analyze --redis URL` judges the same predictions as the SQLite store, and reports
    the stream entries it could not read (a dict repr, failure mode 1) in its text and JSON."""
    from typer.testing import CliRunner

    from ai_engine.cli.main import app

    settings, _ = replayed
    client = redis.Redis.from_url(redis_url)
    for junk in ("{'shadow': True}", "{'shadow': False}", '{"event_id": "x"}'):
        client.xadd(f"{prefix}:stream:ai.decision", {"payload": junk})
    runner = CliRunner()
    args = ["analyze", "--hours", "100000", "--json", "--horizon", "4", "--band", "0.004"]
    from_store = runner.invoke(app, [*args, "--store", str(settings.store_path)])
    from_redis = runner.invoke(app, [*args, "--redis", redis_url, "--redis-prefix", prefix])
    a, b = json.loads(from_store.stdout), json.loads(from_redis.stdout)
    assert from_store.exit_code == from_redis.exit_code
    for key in ("n_decisions", "n_shadow", "n_scored", "gates_passed", "verdict"):
        assert a[key] == b[key], key
    assert {k: g["status"] for k, g in a["gates"].items()} == {k: g["status"] for k, g in b["gates"].items()}
    assert a["bus_skipped"] is None
    assert b["bus_skipped"]["total"] == 3 and sum(b["bus_skipped"]["reasons"].values()) == 3
    assert b["store"].endswith(f"{prefix}:stream:ai.decision")
    text = runner.invoke(app, [a for a in args if a != "--json"] + ["--redis", redis_url, "--redis-prefix", prefix]).stdout
    assert "Bus:      3 unreadable stream entries skipped (not analysed)" in text
    assert "2× JSONDecodeError" in text and "1× KeyError" in text
