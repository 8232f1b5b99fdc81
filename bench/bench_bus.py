"""Bus benchmark: publish latency (notify → XADD acknowledged) and spool drain rate after an outage.

Starts its own redis-server on a free port, trains small xgb/lgbm models on a synthetic market,
and prints figures. Publish latency is measured twice: live-like (candles through the streaming
path one closing time at a time, --pace-ms apart, so the publisher works as it does in service)
and during a full-speed replay (both cores busy deciding; the publisher gets what is left).
Usage: python bench/bench_bus.py [--outage-seconds 60] [--bars 1500] [--pace-ms 20]
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from ai_engine.agents import DEFAULT_ARTIFACT_NAME
from ai_engine.config import load_settings
from ai_engine.data import synthetic_market, time_batches
from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState
from ai_engine.live import CandleProcessor
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.training import TrainOptions, train_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--daemonize", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


class _Timed:
    """Sink wrapper stamping each event id when the publisher is notified."""

    def __init__(self, publisher, stamps: dict[str, float]) -> None:
        self.publisher, self.stamps = publisher, stamps

    def notify(self, records) -> None:
        now = time.perf_counter()
        for r in records:
            self.stamps[r.event_id] = now
            if r.intent_event_id:
                self.stamps[r.intent_event_id] = now
        self.publisher.notify(records)


WARM_BARS = 200  # history fed before the live-like run (features and sequence windows full)


def _report(what: str, publisher, stamps: dict[str, float], acked: dict[str, float]) -> None:
    """Print notify → acknowledged latency of the events stamped since the last report."""
    deadline = time.monotonic() + 30
    while publisher.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    lat_all = np.array([acked[k] - stamps[k] for k in stamps if k in acked]) * 1000
    with sqlite3.connect(publisher.store_path) as db:
        intent_ids = {r[0] for r in db.execute("SELECT event_id FROM intents")}
    lat_int = np.array([acked[k] - stamps[k] for k in intent_ids if k in acked and k in stamps]) * 1000
    print(f"publish latency {what}, all events ({len(lat_all)}): p50 {np.percentile(lat_all, 50):.2f} ms, "
          f"p99 {np.percentile(lat_all, 99):.2f} ms")
    if len(lat_int):
        print(f"publish latency {what}, trade.intent ({len(lat_int)}): p50 {np.percentile(lat_int, 50):.2f} ms, "
              f"p99 {np.percentile(lat_int, 99):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--outage-seconds", type=float, default=60.0)
    ap.add_argument("--bars", type=int, default=1500, help="bars per symbol for the latency runs")
    ap.add_argument("--pace-ms", type=float, default=20.0, help="time between closing times in the live-like run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-bus-"))
    port = _free_port()
    server = _redis(port)
    try:
        arts = {}
        for name in ("xgb", "lgbm"):
            arts[name] = work / DEFAULT_ARTIFACT_NAME[name]
            train_model(name, symbols=["BTCUSDT", "ETHUSDT"], out_path=arts[name], synthetic=True,
                        options=TrainOptions(synthetic_bars=1500), threads=1, force=True)
        settings = load_settings(None, environ={}, overrides={
            "AI_ENGINE_HOME": str(work / "home"), "XGB_MODEL_PATH": str(arts["xgb"]), "LGBM_MODEL_PATH": str(arts["lgbm"]),
            "NHITS_ROLE": "disabled", "PATCHTST_ROLE": "shadow", "XGB_WEIGHT": "50", "LGBM_WEIGHT": "50",
            "NHITS_WEIGHT": "0", "PATCHTST_WEIGHT": "0", "ENSEMBLE_MIN_CONSENSUS": "2", "GOVERNOR_BACKEND": "file",
            "AI_ENGINE_SYMBOLS": "BTCUSDT,ETHUSDT", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "AI_ENGINE_REDIS_PREFIX": "bench",
        })
        FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "bench"))
        engine = open_engine(settings, wait_for_shadow=True)
        publisher = engine.sinks[0]
        stamps: dict[str, float] = {}
        acked: dict[str, float] = {}
        publisher.on_delivered = lambda ids: acked.update(dict.fromkeys(ids, time.perf_counter()))
        engine.sinks = [_Timed(publisher, stamps)]

        series = synthetic_market(["BTCUSDT", "ETHUSDT"], interval="1h", n_bars=args.bars + 5000, seed=1)
        steps = list(time_batches({s: v.slice(0, args.bars) for s, v in series.items()}))
        half = len(steps) // 2

        # 1a. live-like: each closing time through the streaming path, paced
        proc = CandleProcessor(engine, "1h")
        proc.prime(c for step in steps[:WARM_BARS] for c in step)
        for step in steps[WARM_BARS:half]:
            t = time.perf_counter()
            proc.process(step)
            time.sleep(max(0.0, args.pace_ms / 1000 - (time.perf_counter() - t)))
        _report(f"live-like, one closing time every {args.pace_ms:g} ms", publisher, stamps, acked)

        # 1b. the rest at full speed: one time step (both symbols) per decide call, back to back
        stamps.clear()
        replay_series(engine, {s: v.slice(0, args.bars) for s, v in series.items()}, resume=True, chunk=2)
        _report("during a full-speed replay", publisher, stamps, acked)

        # 2. outage: stop Redis, keep deciding for --outage-seconds, restart, time the drain
        server.terminate()
        server.wait()
        t0, bars = time.monotonic(), args.bars
        while time.monotonic() - t0 < args.outage_seconds and bars < args.bars + 5000:
            bars += 100
            replay_series(engine, {s: v.slice(0, bars) for s, v in series.items()}, resume=True, chunk=2)
        spooled = publisher.pending()
        outage = time.monotonic() - t0
        server = _redis(port)
        t1 = time.monotonic()
        delivered0 = publisher.delivered
        publisher.notify()
        while publisher.pending():
            time.sleep(0.01)
        drain = time.monotonic() - t1
        print(f"outage {outage:.1f}s: {spooled} events spooled; drained in {drain:.2f}s after restart "
              f"({(publisher.delivered - delivered0) / max(drain, 1e-9):.0f} events/s, incl. reconnect backoff)")
        engine.close()
        publisher.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
