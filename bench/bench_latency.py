#!/usr/bin/env python3
"""Decision latency on the streaming path, shadow on vs off, beside the voters' bare forward times.

Small models (xgb, lgbm, nhits, patchtst) are trained once on a synthetic market and cached in
--models. For 1 and 30 symbols two engines run in the same process on the same candles, batch by
batch alternately (so machine load hits both alike): one with PatchTST in shadow, one with it
disabled; the three voters are the same. Between batches the voters' bare forwards (the library
call on a ready input: xgboost ``inplace_predict``, lightgbm ``predict``, the torch net under
``inference_mode``; one thread each) are timed at the same batch size, once each, as the engine runs
them (after other work, caches cold); the same forwards in a tight loop (warm) are printed too. Figures are medians/p99 over
the run; the load average is printed beside them. Asserts nothing. With --pace-ms closing times come that far apart, as
live (each closing time's two engines run inside one interval; an interval that their work overran is counted and
the next one starts at once), instead of back to back.

    python bench/bench_latency.py [--batches 300 | --batches 4000,1500] [--symbols 1,30] [--pace-ms 1600] [--busy 1]
                                  [--json out.json]
                                  [--decision-cpu auto|off|N] [--pace-ms 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_engine.config import load_settings  # noqa: E402
from ai_engine.enums import GovernorMode  # noqa: E402
from ai_engine.governor import FileGovernorBackend, GovernorState  # noqa: E402

MODELS = ("xgb", "lgbm", "nhits", "patchtst")
VOTERS = ("xgb", "lgbm", "nhits")
FILES = {"xgb": "xgb_model.ubj", "lgbm": "lgbm_model.txt", "nhits": "nhits_model.pth", "patchtst": "patchtst_model.pth"}
PREFIX = {"xgb": "XGB", "lgbm": "LGBM", "nhits": "NHITS", "patchtst": "PATCHTST"}
SMALL = {"xgb": {"epochs": 60}, "lgbm": {"epochs": 60}, "nhits": {"epochs": 2}, "patchtst": {"epochs": 2}}
DEFAULT_MODELS_DIR = Path(tempfile.gettempdir()) / "ai-engine-bench" / "models"


def ensure_models(models_dir: Path, bars: int = 1500) -> tuple[dict[str, Path], dict[str, float]]:
    """Small synthetic-market models, trained once and cached; returns paths and training seconds
    (0 for cached ones)."""
    from ai_engine.training import TrainOptions, train_model

    models_dir.mkdir(parents=True, exist_ok=True)
    paths, seconds = {}, {}
    for name in MODELS:
        path = models_dir / FILES[name]
        t0 = time.perf_counter()
        if not path.is_file():
            train_model(name, symbols=("BTCUSDT", "ETHUSDT"), out_path=path, synthetic=True, seed=0, threads=2,
                        force=True, options=TrainOptions(synthetic_bars=bars), **SMALL[name])
        paths[name], seconds[name] = path, time.perf_counter() - t0
    return paths, seconds


def engine_settings(home: Path, models: dict[str, Path], symbols, **env: str):
    environ = {"AI_ENGINE_HOME": str(home), "AI_ENGINE_SYMBOLS": ",".join(symbols), "SHADOW_LOG_INTERVAL_S": "3600"}
    environ |= {f"{PREFIX[m]}_MODEL_PATH": str(p) for m, p in models.items()} | env
    settings = load_settings(None, environ=environ)
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER))
    return settings


def bare_forward(agent, threads: int = 1):
    """A closure running the model's bare library forward on a ready (n, ...) input with
    ``threads`` intra-op threads (the engine's setting: 1 live, every core in replay)."""
    if agent.name == "xgb":
        agent.booster_.set_param({"nthread": threads})
        return lambda X: agent.booster_.inplace_predict(X)
    if agent.name == "lgbm":
        return lambda X: agent.booster_.predict(X, num_threads=threads)
    import torch

    torch.set_num_threads(threads)

    def fwd(X):
        with torch.inference_mode():
            return agent.net_(torch.from_numpy(X))

    return fwd


def forward_inputs(slot, tabular: np.ndarray, windows: np.ndarray | None) -> np.ndarray:
    if slot.agent.input_kind == "tabular":
        return np.ascontiguousarray(tabular[:, slot.input_index])
    return np.ascontiguousarray(windows[:, -slot.agent.seq_len_:, :][:, :, slot.input_index])


def time_call(fn, *args, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - t0) * 1000.0 / repeat


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_symbols(models: dict[str, Path], n_symbols: int, batches: int, decision_cpu: str = "auto",
                pace_ms: float = 0.0) -> dict:
    from ai_engine.data import synthetic_market, time_batches
    from ai_engine.live import CandleProcessor
    from ai_engine.runtime import open_engine, settle_heap

    symbols = [f"S{i:02d}USDT" for i in range(n_symbols)]
    history = 1100
    series = synthetic_market(symbols, interval="1h", n_bars=history + batches, seed=11)
    steps = list(time_batches(series))
    tmp = Path(tempfile.mkdtemp(prefix="ai-engine-latency-"))
    engines = {
        "on": open_engine(engine_settings(tmp / "on", models, symbols, PATCHTST_SHADOW_ONLY="true",
                                          AI_ENGINE_DECISION_CPU=decision_cpu)),
        "off": open_engine(engine_settings(tmp / "off", models, symbols, PATCHTST_ROLE="disabled",
                                           AI_ENGINE_DECISION_CPU=decision_cpu)),
    }
    for e in engines.values():  # a service runs for hours: measure once its shadow's process is up
        for slot in e.state.slots.values():
            wait_started = getattr(slot.agent, "wait_started", None)
            if wait_started is not None:
                wait_started(120)
    for e in engines.values():  # as the service does before each batch: its thread and voter worker on one CPU
        e.pin_decisions()
    procs = {k: CandleProcessor(e, "1h") for k, e in engines.items()}
    seen = []
    decide = engines["on"].decide
    engines["on"].decide = lambda inputs: (seen.append(inputs), decide(inputs))[1]
    for p in procs.values():
        p.prime(c for step in steps[:history] for c in step)
    settle_heap()  # as the service does once primed
    lat = {"on": [], "off": []}
    wall = {"on": [], "off": []}
    late, late_at = 0, []
    fwd = {m: [] for m in MODELS}
    slots = engines["on"].state.slots
    fns = {m: bare_forward(slots[m].agent) for m in MODELS}
    load_before = load_average()
    overran = 0
    next_at = time.perf_counter()
    for i, step in enumerate(steps[history:]):
        if pace_ms:
            wait = next_at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                overran += i > 0
            next_at = max(next_at, time.perf_counter()) + pace_ms / 1000.0
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for k in order:
            t0 = time.perf_counter()
            recs = procs[k].process(step, arrived_at=t0)
            wall[k].append((time.perf_counter() - t0) * 1000.0)
            lat[k].extend(r.decision_latency_ms for r in recs[:1])  # one arrival per batch
            if k == "on":
                late_here = sum(r.decision.results[-1].status.value == "late" for r in recs)
                late += late_here
                if late_here:
                    late_at.append(i)
        inputs = seen[-1]  # the same rows through the bare forwards, side by side with the engine
        for m in MODELS:
            fwd[m].append(time_call(fns[m], forward_inputs(slots[m], inputs.tabular, inputs.windows)))
    # the same forwards in a tight loop (caches warm): what the models cost with nothing between calls
    warm = {m: float(np.median([time_call(fns[m], x) for _ in range(200)]))
            for m, x in ((m, forward_inputs(slots[m], inputs.tabular, inputs.windows)) for m in MODELS)}
    for e in engines.values():
        e.close()
    med = {m: float(np.median(v)) for m, v in fwd.items()}
    voters_sum = sum(med[m] for m in VOTERS)
    out = {
        "symbols": n_symbols,
        "batches": batches,
        "load_before": load_before,
        "load_after": load_average(),
        "forward_ms": med,
        "voters_forward_sum_ms": voters_sum,
        "forward_warm_ms": warm,
        "shadow_late_rows": late,
        "shadow_late_closing_times": late_at,
        "rows": batches * n_symbols,
        "pace_ms": pace_ms,
        "paced_intervals_overrun": overran,
    }
    for k in ("on", "off"):
        out[f"latency_{k}_p50_ms"] = float(np.percentile(lat[k], 50))
        out[f"latency_{k}_p99_ms"] = float(np.percentile(lat[k], 99))
        out[f"publish_{k}_p50_ms"] = float(np.percentile(wall[k], 50))
        out[f"publish_{k}_p99_ms"] = float(np.percentile(wall[k], 99))
    out["p99_ratio_on_off"] = out["latency_on_p99_ms"] / out["latency_off_p99_ms"]
    out["publish_p99_ratio_on_off"] = out["publish_on_p99_ms"] / out["publish_off_p99_ms"]
    out["p50_ratio_to_voters_forward"] = out["latency_off_p50_ms"] / voters_sum
    out["p50_on_ratio_to_voters_forward"] = out["latency_on_p50_ms"] / voters_sum
    return out


def symbol_batches(ap: argparse.ArgumentParser, symbols: str, batches: str) -> list[tuple[int, int]]:
    """``--symbols 30,400 --batches 300`` (one for all, or one per count) as (symbols, batches) pairs."""
    counts = [int(x) for x in symbols.split(",")]
    per = [int(x) for x in batches.split(",")]
    if len(per) == 1:
        per *= len(counts)
    if len(per) != len(counts):
        ap.error(f"--batches has {len(per)} entries for {len(counts)} symbol counts")
    return list(zip(counts, per, strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="300", help="decision batches per symbol count: one number for all, "
                                                     "or one per --symbols entry (a p99 needs thousands)")
    ap.add_argument("--symbols", default="1,30", help="symbol counts, comma-separated")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="cache of the small trained models")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--decision-cpu", default="auto", help="AI_ENGINE_DECISION_CPU of both engines (off: not pinned)")
    ap.add_argument("--pace-ms", type=float, default=0.0, help="closing times this far apart, as live (0: back to back)")
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes running beside the whole run (issue 20: "
                                                        "the figures with another CPU-bound process)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    models, _ = ensure_models(args.models)
    results = []
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        runs = [run_symbols(models, n, b, args.decision_cpu, args.pace_ms)
                for n, b in symbol_batches(ap, args.symbols, args.batches)]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    for r in runs:
        n = r["symbols"]
        r["busy"] = args.busy
        results.append(r)
        print(f"{n:>3} symbol(s): decision latency p50/p99 shadow on {r['latency_on_p50_ms']:.3f}/"
              f"{r['latency_on_p99_ms']:.3f} ms, off {r['latency_off_p50_ms']:.3f}/{r['latency_off_p99_ms']:.3f} ms "
              f"(p99 on/off {r['p99_ratio_on_off']:.3f}); process() incl. shadow hold + store p50/p99 on "
              f"{r['publish_on_p50_ms']:.3f}/{r['publish_on_p99_ms']:.3f}, off {r['publish_off_p50_ms']:.3f}/"
              f"{r['publish_off_p99_ms']:.3f} ms")
        print(f"     bare forwards (ms) {', '.join(f'{m} {v:.3f}' for m, v in r['forward_ms'].items())}; "
              f"voters' sum {r['voters_forward_sum_ms']:.3f} ms; p50 latency / sum = {r['p50_ratio_to_voters_forward']:.3f}"
              f"; load {r['load_before']} -> {r['load_after']}")
        at = r["shadow_late_closing_times"]
        print(f"     shadow entries late: {r['shadow_late_rows']} of {r['rows']} rows"
              + (f" (closing time{'s' if len(at) > 1 else ''} {', '.join(map(str, at[:10]))}"
                 f"{' ...' if len(at) > 10 else ''}, counted from 0)" if at else "")
              + (f"; paced {args.pace_ms:g} ms, {r['paced_intervals_overrun']} interval(s) overrun" if args.pace_ms else "")
              + (f"; beside {args.busy} busy-loop process(es)" if args.busy else ""))
        print(f"     same forwards in a tight loop (warm caches, ms) "
              f"{', '.join(f'{m} {v:.3f}' for m, v in r['forward_warm_ms'].items())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
