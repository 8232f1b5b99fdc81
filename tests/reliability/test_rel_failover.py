"""Shards that fail over (AI_ENGINE_SHARD=lease): three real `serve` instances read one klines
stream on Redis, fed at a fixed pace; one is killed with SIGKILL. Its symbols must be decided by the
others within two candle intervals, primed from the stored history, every candle decided exactly
once across the three stores and the ai.decision stream, none lost. The same on a three-node Redis
Cluster the test starts itself. /health and `status` show which symbols each instance owns."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from ai_engine.health import fetch_health
from ai_engine.market import kline_entry
from ai_engine.telemetry.redis_streams import redis_client, slot_tag, stream_key
from ai_engine.types import Candle
from tests.helpers import drop_prefix, free_port, shared_redis_url, wait_for
from tests.reliability.conftest import PREFIX, SERVE, settings_for

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
INTERVAL_S = 1.5  # the producer closes one candle per symbol this often: the candle interval
TTL_MS = 600
HISTORY = 90  # candles in the stream before the instances start (the features warm up on them)
BEFORE, AFTER = 4, 5  # live candles before and after the kill


@dataclass
class Instance:
    name: str
    home: Path
    port: int
    env: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home.parent / f"{self.name}.log"

    def health(self) -> dict | None:
        return fetch_health(self.port)


def market(n: int) -> list[list[Candle]]:
    """``n`` closing times of SYMBOLS from the seeded synthetic market, in time order."""
    from ai_engine.data import synthetic_market

    series = synthetic_market(list(SYMBOLS), "1h", n_bars=n, seed=11)
    return [[Candle(s, "1h", int(series[s].open_time[i]), float(series[s].open[i]), float(series[s].high[i]),
                    float(series[s].low[i]), float(series[s].close[i]), float(series[s].volume[i])) for s in SYMBOLS]
            for i in range(n)]


def start(tmp_path: Path, models, url: str, prefix: str, name: str) -> Instance:
    home = tmp_path / name
    settings_for(home, models)  # releases the governor (PAPER)
    inst = Instance(name, home, free_port(), tmp_path / f"{name}.env")
    lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}", f"AI_ENGINE_HEALTH_PORT={inst.port}",
             f"REDIS_URL={url}", f"AI_ENGINE_REDIS_PREFIX={prefix}", "AI_ENGINE_SHARD=lease",
             f"AI_ENGINE_INSTANCE={name}", f"AI_ENGINE_LEASE_TTL_MS={TTL_MS}", "GOVERNOR_BACKEND=file",
             "SHADOW_ISOLATION=thread", "ENSEMBLE_MIN_CONSENSUS=1", "AI_ENGINE_DECISION_CPU=off"]
    lines += [f"{PREFIX[m]}_MODEL_PATH={p}" for m, p in models.items()]
    inst.env.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    with open(inst.log, "w") as log:
        inst.proc = subprocess.Popen([*SERVE, "--env-file", str(inst.env), "--source", "redis"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
    return inst


def owned(instances: list[Instance]) -> dict[str, list[str]] | None:
    """Each running instance's symbols once all of them are up and every symbol is held once."""
    out = {}
    for inst in instances:
        h = inst.health()
        if not h or h.get("state") != "running" or h["shards"].get("mode") != "lease":
            return None
        out[inst.name] = h["shards"]["owned"]
    held = sorted(s for syms in out.values() for s in syms)
    return out if held == sorted(SYMBOLS) and all(out.values()) else None


def decisions(store: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT event_id, symbol, candle_open_time, decided_at FROM decisions").fetchall()


def run_failover(tmp_path: Path, models, url: str, prefix: str) -> None:
    client = redis_client(url)
    klines = stream_key(prefix, "market.klines")
    closes = market(HISTORY + BEFORE + AFTER)
    for batch in closes[:HISTORY]:
        for c in batch:
            client.xadd(klines, kline_entry(c))
    instances = [start(tmp_path, models, url, prefix, f"i{k}") for k in range(3)]
    produced: dict[tuple[str, int], float] = {}
    stop = threading.Event()

    def produce(batches: list[list[Candle]]) -> None:
        for batch in batches:
            if stop.wait(INTERVAL_S):
                return
            for c in batch:
                client.xadd(klines, kline_entry(c))
                produced[(c.symbol, c.open_time)] = time.time()

    try:
        shares = wait_for(lambda: owned(instances), "three instances up, each holding a share", timeout=120)
        producer = threading.Thread(target=produce, args=(closes[HISTORY:HISTORY + BEFORE],))
        producer.start()
        producer.join()
        victim = next(i for i in instances if len(shares[i.name]) == max(map(len, shares.values())))
        orphans = victim.health()["shards"]["owned"]
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        victim.proc.wait(10)
        producer = threading.Thread(target=produce, args=(closes[HISTORY + BEFORE:],))
        producer.start()
        producer.join()
        survivors = [i for i in instances if i is not victim]
        last = closes[-1][0].open_time
        wait_for(lambda: all(any((s, last) == (d[1], d[2]) for i in survivors for d in decisions(i.home / "telemetry.sqlite"))
                             for s in SYMBOLS), "the last candle of every symbol decided", timeout=60)
        after = {i.name: i.health()["shards"] for i in survivors}
        from typer.testing import CliRunner

        from ai_engine.cli.main import app

        status = CliRunner().invoke(app, ["status", "--env-file", str(survivors[0].env)])
        for i in survivors:
            i.proc.send_signal(signal.SIGTERM)
        for i in survivors:
            assert i.proc.wait(60) == 0
    finally:
        stop.set()
        for i in instances:
            if i.proc is not None and i.proc.poll() is None:
                i.proc.kill()
                i.proc.wait(10)
    # the survivors hold every symbol between them, and say so on /health and in `status`
    assert sorted(s for a in after.values() for s in a["owned"]) == sorted(SYMBOLS)
    assert all(a["members"] == sorted(i.name for i in survivors) for a in after.values())
    assert status.exit_code == 0 and f"instance {survivors[0].name} owns {','.join(after[survivors[0].name]['owned'])}" \
        in status.output
    # every candle decided exactly once across the stores, none lost after the features warmed up
    rows = {i.name: decisions(i.home / "telemetry.sqlite") for i in instances}
    every = [r for rs in rows.values() for r in rs]
    assert len({r[0] for r in every}) == len(every)
    times = [c.open_time for c in (b[0] for b in closes)]
    for sym in SYMBOLS:
        decided = sorted(r[2] for r in every if r[1] == sym)
        assert decided == times[times.index(decided[0]):], f"{sym}: candles lost or decided twice"
        assert decided[0] <= times[HISTORY - 1]  # deciding before the live candles began
    # the bus got each decision once (what the victim had not yet delivered stays in its outbox)
    bus = [f[b"event_id"].decode() for _, f in client.xrange(stream_key(prefix, "ai.decision"))]
    assert len(bus) == len(set(bus)) and set(bus) <= {r[0] for r in every}
    with sqlite3.connect(victim.home / "telemetry.sqlite") as db:
        spooled = {r[0] for r in db.execute("SELECT event_id FROM outbox WHERE stream='ai.decision' AND "
                                            "delivered_at IS NULL")}
    assert {r[0] for r in every} - set(bus) <= spooled
    # its symbols decided by the others within two candle intervals, primed from the stored history
    victim_last = {s: max((r[2] for r in rows[victim.name] if r[1] == s), default=-1) for s in orphans}
    for sym in orphans:
        first = min(t for t in times if t > victim_last[sym])
        by = [(n, r[3]) for n, rs in rows.items() for r in rs if (r[1], r[2]) == (sym, first)]
        assert len(by) == 1 and by[0][0] != victim.name
        due = max(killed_at, produced.get((sym, first), killed_at)) + 2 * INTERVAL_S
        print(f"{sym}: first orphaned candle decided {by[0][1] / 1000 - due + 2 * INTERVAL_S:.2f} s after the kill or "
              f"its close (bound {2 * INTERVAL_S:g} s)")
        assert by[0][1] / 1000 <= due, f"{sym}: taken over {by[0][1] / 1000 - due + 2 * INTERVAL_S:.2f}s after"
        taker = by[0][0]
        took = re.search(rf"took {sym} \(token {after[taker]['tokens'][sym]}\), resuming after {victim_last[sym]} with "
                         r"(\d+) candles of stored history", (tmp_path / f"{taker}.log").read_text())
        assert took and int(took.group(1)) >= 60, f"{sym}: not primed from the stored history"
    for i in instances:
        assert "Traceback" not in i.log.read_text()


def test_a_killed_instance_hands_its_symbols_over_on_redis(models, tmp_path):
    url = shared_redis_url()
    prefix = f"failover:{uuid.uuid4().hex[:10]}"
    try:
        run_failover(tmp_path, models, url, prefix)
    finally:
        drop_prefix(url, prefix)
        drop_prefix(url, slot_tag(prefix))


@pytest.fixture
def redis_cluster(tmp_path):
    """Three redis-server nodes in cluster mode, all slots assigned; stopped afterwards."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed to start a local Redis Cluster")
    ports, procs = [_cluster_port() for _ in range(3)], []
    try:
        for port in ports:
            work = tmp_path / f"node{port}"
            work.mkdir()
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--save", "",
                 "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        nodes = [redis.Redis(port=p, socket_connect_timeout=0.2) for p in ports]
        wait_for(lambda: all(_pings(n) for n in nodes), "cluster nodes up", timeout=20)
        if nodes[0].info("cluster").get("cluster_enabled") != 1:
            pytest.skip("this redis-server has no cluster support (cluster_enabled:0)")
        created = subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                                  "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stdout + created.stderr
        wait_for(lambda: all(n.cluster("info").get("cluster_state") == "ok" for n in nodes),
                 "cluster_state:ok on every node", timeout=30)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = free_port()
        if port < 55535:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port + 10000)) != 0:
                    return port


def _pings(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.RedisError:
        return False


def test_a_killed_instance_hands_its_symbols_over_on_redis_cluster(models, tmp_path, redis_cluster):
    # a hash-tagged prefix: the bus's script writes an event's delivery marker and its stream together
    run_failover(tmp_path, models, redis_cluster, "{failover}")


def test_a_stale_owner_records_and_publishes_nothing_once_its_lease_moved(models, series, tmp_path, caplog):
    """Fencing: an owner whose heartbeat stalled past its TTL (its heartbeat thread stopped, as a
    paused process's would) still believes it holds its symbols; once another instance has taken
    them, every decision it makes is refused inside its store's transaction: no decision row, no
    outbox row (so nothing reaches the bus), and the new owner records the same candle."""
    from ai_engine.data import time_batches
    from ai_engine.leases import Leases
    from ai_engine.live import CandleProcessor
    from ai_engine.runtime import open_engine

    caplog.set_level(logging.INFO)  # the intent lines are INFO
    url = shared_redis_url()
    prefix = f"stale:{uuid.uuid4().hex[:10]}"
    syms = tuple(series)
    stale = Leases(url, prefix, "stale", syms, "1h", 300)
    fresh = None
    try:
        assert {a.symbol for a in stale.rebalance()[1]} == set(syms)
        stale._stop.set()  # its heartbeat stalls: the lease expires while it still thinks it holds it
        stale._thread.join()
        fresh = Leases(url, prefix, "fresh", syms, "1h", 300)
        wait_for(lambda: fresh.rebalance() and fresh.held == syms, "the other instance taking the symbols", timeout=10)
        assert stale.held == syms
        engine = open_engine(settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="1", REDIS_URL=url,
                                          AI_ENGINE_REDIS_PREFIX=prefix, GOVERNOR_BACKEND="file"))
        engine.store.fence = stale.commit
        batches = list(time_batches({s: v.slice(0, 130) for s, v in series.items()}))
        proc = CandleProcessor(engine, "1h")
        proc.prime(c for b in batches[:128] for c in b)
        try:
            records = [r for b in batches[128:] for r in proc.process(b)]
        finally:
            engine.close()
        assert len(records) == 4 and any(r.published for r in records)
        assert engine.store.count("decisions") == 0 and engine.store.count("outbox") == 0
        assert "no longer holds them (fenced)" in caplog.text and "commit refused" in caplog.text
        assert "Publishing trade.intent" not in caplog.text  # the spec's grep counts only what was published
        assert stale.held == ()  # it let go of them
        assert fresh.commit(batches[128]) == set()  # the new owner records the same candles
    finally:
        if fresh is not None:
            fresh.close()
        drop_prefix(url, slot_tag(prefix))
        drop_prefix(url, prefix)
