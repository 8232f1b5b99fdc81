#!/usr/bin/env python3
"""Speed and memory of the whole shadow analysis on stores of 10k / 1M / 10M prediction rows:
the spec's gates and the edge (every decision re-voted for options A and B, the money table,
the paired comparisons and their bootstrap and confidence sequences), as `analyze` runs it.

A store of N prediction rows holds N/4 decisions (4 models each: three voters at 25/25/30 and
the shadow ``patchtst`` at 20) spread over 25 symbols of 1h candles, with 200 candles of history
per symbol; each decision is what the engine's rule decides from the voters' predictions, so the
re-vote reproduces the record. Rows are the size the engine writes: UUID event ids, 64-hex
sha256 on every prediction, and each decision's JSON payload with its model_breakdown of four
models (about 1.6 kB, as ``TelemetryStore.record_decisions`` writes it), which the analysis does not
read but must step over. Stores are generated with executemany in one transaction and cached in
--dir. Each analysis runs in a fresh child process so its peak RSS is its own.

Usage: python bench/bench_analysis.py [--sizes 10k,1M,10M] [--dir /tmp/ai-engine-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_engine.telemetry import TelemetryStore  # noqa: E402

SYMBOLS = 25
HISTORY = 200
HOUR = 3_600_000
T0 = 1_600_000_000_000 - 1_600_000_000_000 % HOUR
MODELS = (("xgb", "voter"), ("lgbm", "voter"), ("nhits", "voter"), ("patchtst", "shadow"))
SHA = {m: hashlib.sha256(m.encode()).hexdigest() for m, _ in MODELS}
WEIGHTS = {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}
ACTIONS = np.array(["SELL", "HOLD", "BUY"])


def _size(text: str) -> int:
    mult = {"k": 1_000, "m": 1_000_000}
    t = text.strip().lower()
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(t)


def _payload(event_id: str, sym: str, t: int, preds: dict, r: int) -> str:
    """A decision's JSON payload of the size the engine writes (the analysis never parses it)."""
    breakdown = {m: {"model": m, "role": role, "shadow": role == "shadow", "status": "ok",
                     "action": str(ACTIONS[preds[m][0][r]]), "confidence": round(float(preds[m][1][r]), 6),
                     "probs": dict(zip(ACTIONS.tolist(), np.round(preds[m][2][r], 6).tolist(), strict=True)),
                     "weight": WEIGHTS[m], "version": "v1", "sha256": SHA[m], "latency_ms": 1.0, "reason": None}
                 for m, role in MODELS}
    return json.dumps({"event_id": event_id, "symbol": sym, "interval": "1h", "candle_open_time": t,
                       "config_id": "bench", "model_breakdown": breakdown}, separators=(",", ":"))


def generate(path: Path, n_pred: int, seed: int = 0) -> None:
    from ai_engine.analysis.revote import Rule, revote

    rng = np.random.default_rng(seed)
    per_sym = max(n_pred // 4 // SYMBOLS, 1)
    store = TelemetryStore(path)
    db = store.connection
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    cfg = {"models": {m: {"role": r, "weight": WEIGHTS[m], "status": "active", "version": "v1", "sha256": SHA[m],
                          "label_config": {"horizon": 4, "mode": "vol", "fee_band": 0.002, "k": 0.5, "vol_window": 168}}
                      for m, r in MODELS},
           "min_consensus": 3, "confidence_boost": 1.1, "confidence_cap": 0.95}
    db.execute("INSERT INTO configs VALUES ('bench', 0, 'bench', ?)", (json.dumps(cfg),))
    for s in range(SYMBOLS):
        sym = f"SYM{s:02d}USDT"
        n_c = HISTORY + per_sym
        times = (T0 + HOUR * np.arange(n_c)).tolist()
        close = (100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_c)))).tolist()
        db.executemany("INSERT INTO candles VALUES (?,'1h',?,?,?,?,?,1.0,0)",
                       ((sym, t, c, c, c, c) for t, c in zip(times, close, strict=True)))
        dt = times[HISTORY:]
        ids = [str(uuid.UUID(int=(s << 64) + k)) for k in range(len(dt))]
        preds = {}
        for m, _ in MODELS:
            k = rng.integers(0, 3, per_sym)
            conf = rng.uniform(0.34, 0.98, per_sym)
            rest = (1 - conf) / 2
            preds[m] = (k, conf, np.where(np.arange(3)[None, :] == k[:, None], conf[:, None], rest[:, None]))
        voters = [m for m, r in MODELS if r == "voter"]
        vote = revote(np.stack([preds[m][0] for m in voters], axis=1), np.stack([preds[m][1] for m in voters], axis=1),
                      np.ones((per_sym, len(voters)), dtype=bool), np.array([WEIGHTS[m] for m in voters]),
                      Rule(3, 1.1, 0.95, len(MODELS)))
        db.executemany(
            "INSERT INTO decisions VALUES (?,?,'1h',?,?,?,?,?,?,?,?,0,NULL,1.0,'bench',1.0,0,?)",
            ((i, sym, t, t + HOUR, ACTIONS[a], c, int(k), int(n), int(x), int(b), _payload(i, sym, t, preds, r))
             for r, (i, t, a, c, k, n, x, b) in enumerate(zip(ids, dt, vote.action, vote.confidence.tolist(),
                                                              vote.consensus, vote.total, vote.actionable,
                                                              vote.boosted, strict=True))),
        )
        for m, role in MODELS:
            k, conf, p = preds[m]
            db.executemany(
                f"INSERT INTO predictions VALUES (?,'{m}',?,?,'{role}','ok',?,?,?,0.0,?,?,?,{WEIGHTS[m]},'v1','{SHA[m]}',1.0,NULL)",
                zip(ids, [sym] * per_sym, dt, ACTIONS[k].tolist(), conf.tolist(), conf.tolist(),
                    p[:, 0].tolist(), p[:, 1].tolist(), p[:, 2].tolist(), strict=True),
            )
    db.execute("COMMIT")
    store.close()


def run_one(path: str) -> None:
    """Child process: one analysis; prints seconds and peak RSS as JSON."""
    from ai_engine.analysis import analyze, render_text

    t = time.perf_counter()
    result = analyze(path, hours=24 * 365 * 100)
    render_text(result)
    dt = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": dt, "peak_rss_mb": rss_mb, "n_shadow": result.primary.n_valid,
                      "n_scored": result.primary.n_scored, "edge": result.edge.verdict if result.edge else None,
                      "revote_mismatches": result.edge.revote_mismatches if result.edge else None}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,1M,10M", help="prediction rows per store, e.g. 10k,1M,10M")
    ap.add_argument("--dir", default="/tmp/ai-engine-bench", help="where stores are generated and cached")
    ap.add_argument("--run-one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        run_one(args.run_one)
        return
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'rows':>12} {'decisions':>10} {'generate s':>11} {'analyse s':>10} {'peak RSS MB':>12}  shadow rows")
    for text in args.sizes.split(","):
        n = _size(text)
        path = out / f"store_v4_{n}.sqlite"  # v4: rows the size the engine writes, store schema 3
        gen = 0.0
        if not path.exists():
            t = time.perf_counter()
            tmp = path.with_suffix(".partial")
            for stale in out.glob(tmp.name + "*"):
                stale.unlink()
            generate(tmp, n)  # renamed only when complete, so an interrupted run is not reused
            tmp.rename(path)
            gen = time.perf_counter() - t
        proc = subprocess.run([sys.executable, __file__, "--run-one", str(path)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{n:>12,} {n // 4:>10,} {gen:>11.1f} {r['seconds']:>10.2f} {r['peak_rss_mb']:>12.0f}  {r['n_shadow']:,}"
              f"  edge {r['edge']}, re-vote mismatches {r['revote_mismatches']}")


if __name__ == "__main__":
    main()
