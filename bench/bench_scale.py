#!/usr/bin/env python3
"""How the streaming path's cost grows with the number of symbols closing together (issue 20).

For each symbol count (1, 30, 100, 400, 1000 by default) a fresh process primes an engine with the
three voters (PatchTST disabled: the shadow's figures are bench_latency's) on 1,000 bars of a
synthetic market per symbol, so every feature buffer is full, then decides closing times back to
back and reports: decision latency p50/p99 (the last candle's arrival to every decision ready),
``process()`` wall time (store write included), the voters' bare batched forwards at the same rows
(timed between closing times, as bench_latency does), the ratio of the two p50s, where the time
goes (validation and features, voters, ensemble and governor), resident memory after priming and
at the end, the store's ``record_decisions`` rate (decisions and prediction rows per second into a
fresh store, the batches as they were decided) and the bus's (the publisher's ``drain_once`` of
that store's outbox: XADD through its script to the Redis at --redis-url, under a key prefix of
its own that is deleted afterwards). Memory per symbol is the slope of the end RSS between the two
largest counts.
Asserts nothing; prints the load average with each count.

    python bench/bench_scale.py [--symbols 1,30,100,400,1000] [--batches 300,300,200,120,60] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_latency import (  # noqa: E402
    DEFAULT_MODELS_DIR,
    VOTERS,
    bare_forward,
    engine_settings,
    ensure_models,
    forward_inputs,
    load_average,
    symbol_batches,
    time_call,
)

HISTORY = 1000  # bars primed per symbol (PRIME_BARS, as the service primes), as after a day of 1 m bars
STORE_BATCHES = 20  # decided batches kept to measure the store and the bus on


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def store_and_bus(batches: list[tuple[list, list]], tmp: Path, redis_url: str) -> dict:
    """Decisions/s and prediction rows/s of ``record_decisions`` into a fresh store, then XADD rows/s
    of the publisher draining its outbox (the key prefix is removed afterwards)."""
    import redis

    from ai_engine.telemetry.redis_streams import RedisPublisher
    from ai_engine.telemetry.sqlite import TelemetryStore

    store = TelemetryStore(tmp / "scale-store.sqlite", outbox=True)
    decisions = sum(len(r) for r, _ in batches)
    predictions = sum(len(rec.decision.results) for r, _ in batches for rec in r)
    t0 = time.perf_counter()
    for records, candles in batches:
        store.record_decisions(records, candles)
    store_s = time.perf_counter() - t0
    store.close()
    out = {"store_decisions_per_s": decisions / store_s, "store_prediction_rows_per_s": predictions / store_s}
    prefix = f"bench-scale-{os.getpid()}"
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        out["bus_error"] = f"{type(exc).__name__}: {exc}"
        return out
    pub = RedisPublisher(tmp / "scale-store.sqlite", redis_url, prefix=prefix, maxlen=10_000_000, start=False)
    db = sqlite3.connect(tmp / "scale-store.sqlite", isolation_level=None)
    rows = 0
    t0 = time.perf_counter()
    while n := pub.drain_once(db):
        rows += n
    bus_s = time.perf_counter() - t0
    db.close()
    pub.close(timeout=0)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i:i + 1000])
    out |= {"bus_rows": rows, "bus_rows_per_s": rows / bus_s if bus_s else float("nan"),
            "bus_keys_cleaned": len(keys)}
    return out


def run_one(models: dict[str, Path], n_symbols: int, batches: int, redis_url: str) -> dict:
    """One symbol count, in this process (the parent starts a fresh one per count)."""
    from ai_engine.data import synthetic_market, time_batches
    from ai_engine.live import CandleProcessor
    from ai_engine.runtime import open_engine, settle_heap

    rss_start = rss_mib()
    symbols = [f"S{i:04d}USDT" for i in range(n_symbols)]
    series = synthetic_market(symbols, interval="1m", n_bars=HISTORY + batches, seed=11)
    steps = list(time_batches(series))
    del series
    tmp = Path(tempfile.mkdtemp(prefix="ai-engine-scale-"))
    engine = open_engine(engine_settings(tmp / "home", models, symbols, PATCHTST_ROLE="disabled"))
    engine.pin_decisions()
    proc = CandleProcessor(engine, "1m")
    t0 = time.perf_counter()
    proc.prime(c for step in steps[:HISTORY] for c in step)
    prime_s = time.perf_counter() - t0
    settle_heap()  # as the service does once primed
    rss_primed = rss_mib()
    sections = {"features": [], "voters": [], "vote_governor": []}
    marks: dict[str, float] = {}
    seen: list = []
    begin, run_voters = engine._begin, engine._voters.run

    def timed_begin(inputs):
        marks["begin"] = time.perf_counter()
        sections["features"].append((marks["begin"] - marks["arrived"]) * 1000.0)
        seen.append(inputs)
        return begin(inputs)

    def timed_voters(*args):
        t = time.perf_counter()
        out = run_voters(*args)
        marks["voters_done"] = time.perf_counter()
        sections["voters"].append((marks["voters_done"] - t) * 1000.0)
        return out

    engine._begin, engine._voters.run = timed_begin, timed_voters
    slots = engine.state.slots
    fns = {m: bare_forward(slots[m].agent) for m in VOTERS}
    lat, wall, fwd = [], [], {m: [] for m in VOTERS}
    kept: list[tuple[list, list]] = []
    load_before = load_average()
    for step in steps[HISTORY:]:
        marks["arrived"] = time.perf_counter()
        records = proc.process(step, arrived_at=marks["arrived"])
        wall.append((time.perf_counter() - marks["arrived"]) * 1000.0)
        lat.append(records[0].decision_latency_ms)
        # t_ready is arrival + latency: what follows the voters inside it is the vote and the governor
        sections["vote_governor"].append(marks["arrived"] * 1000.0 + lat[-1] - marks["voters_done"] * 1000.0)
        if len(kept) < STORE_BATCHES:
            kept.append((records, list(step)))
        inputs = seen[-1]
        for m in VOTERS:
            fwd[m].append(time_call(fns[m], forward_inputs(slots[m], inputs.tabular, inputs.windows)))
    load_after = load_average()
    rss_end = rss_mib()
    engine.close()
    med = {m: float(np.median(v)) for m, v in fwd.items()}
    voters_sum = sum(med.values())
    out = {
        "symbols": n_symbols,
        "batches": batches,
        "load_before": load_before,
        "load_after": load_after,
        "prime_s": prime_s,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "process_p50_ms": float(np.percentile(wall, 50)),
        "process_p99_ms": float(np.percentile(wall, 99)),
        "forward_ms": med,
        "voters_forward_sum_ms": voters_sum,
        "p50_ratio_to_voters_forward": float(np.percentile(lat, 50)) / voters_sum,
        "sections_p50_ms": {k: float(np.median(v)) for k, v in sections.items()},
        "rss_start_mib": rss_start,
        "rss_primed_mib": rss_primed,
        "rss_end_mib": rss_end,
    }
    return out | store_and_bus(kept, tmp, redis_url)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", default="1,30,100,400,1000", help="symbol counts, comma-separated")
    ap.add_argument("--batches", default="300,300,200,120,60", help="closing times decided per count (one number for all)")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="cache of the small trained models")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="the Redis the bus figure is taken on")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per count; the run with the median p50 "
                                                         "ratio is reported, with the ratios of all (on a shared VM "
                                                         "one run's ratio moved between 1.17 and 1.32)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a single count, in a child process
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    models, _ = ensure_models(args.models)
    if args.one is not None:
        print(json.dumps(run_one(models, args.one, int(args.batches), args.redis_url)))
        return 0
    results = []
    for n, b in symbol_batches(ap, args.symbols, args.batches):
        runs = []
        for _ in range(max(1, args.repeat)):
            child = subprocess.run([sys.executable, __file__, "--one", str(n), "--batches", str(b), "--models",
                                    str(args.models), "--redis-url", args.redis_url], check=True, capture_output=True, text=True)
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        runs.sort(key=lambda r: r["p50_ratio_to_voters_forward"])
        r = runs[len(runs) // 2] | {"p50_ratio_runs": [x["p50_ratio_to_voters_forward"] for x in runs]}
        results.append(r)
        s = r["sections_p50_ms"]
        print(f"{n:>4} symbols: decision latency p50/p99 {r['latency_p50_ms']:.2f}/{r['latency_p99_ms']:.2f} ms; voters' "
              f"bare forwards {r['voters_forward_sum_ms']:.2f} ms (p50 / forwards {r['p50_ratio_to_voters_forward']:.2f}"
              + (f", median of {len(runs)} runs: {', '.join(f'{x:.2f}' for x in r['p50_ratio_runs'])}" if len(runs) > 1 else "")
              + "); "
              f"process() p50/p99 {r['process_p50_ms']:.2f}/{r['process_p99_ms']:.2f} ms")
        print(f"      p50 sections: validation+features {s['features']:.2f}, voters {s['voters']:.2f}, vote+governor "
              f"{s['vote_governor']:.2f} ms; RSS primed/end {r['rss_primed_mib']:.0f}/{r['rss_end_mib']:.0f} MiB; "
              f"store {r['store_decisions_per_s']:.0f} decisions/s ({r['store_prediction_rows_per_s']:.0f} prediction rows/s); "
              f"bus {r.get('bus_rows_per_s', float('nan')):.0f} XADD rows/s; load {r['load_before']} -> {r['load_after']}")
    if len(results) > 1:  # the two largest counts: below ~30 symbols RSS is the libraries' batch-size buffers
        lo, hi = sorted(results, key=lambda r: r["symbols"])[-2:]
        per = (hi["rss_end_mib"] - lo["rss_end_mib"]) / (hi["symbols"] - lo["symbols"])
        print(f"memory per symbol (end RSS slope {lo['symbols']} -> {hi['symbols']} symbols): {per * 1024:.0f} KiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
