#!/usr/bin/env python3
"""Run every benchmark of the project and write BENCHMARKS.md (machine, targets, raw output).

Each benchmark runs as its own process with the flags listed in the report (modest sizes where a
full run is long; the report says which). A benchmark that fails or times out is reported as
such with the tail of its output; the others still run. Ratios are each measured within one run.

    python bench/run_all.py [--quick] [--skip-10m] [--skip-walkforward] [--only latency,replay] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    ram = "unknown"
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        ram = f"{kb / 1024 ** 2:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import numpy
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "ram": ram, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "os": platform.platform()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(name: str, args: list[str], timeout: int, note: str) -> dict:
    cmd = [sys.executable, *args]
    print(f"== {name}: {' '.join(args)}", flush=True)
    before, t0 = load(), time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, rc = (p.stdout + ("\n" + p.stderr if p.returncode else "")).strip(), p.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = f"timed out after {timeout} s\n{(exc.stdout or b'')[-4000:]!r}", -1
    wall = time.perf_counter() - t0
    print(out[-3000:], flush=True)
    return {"name": name, "cmd": "python " + " ".join(args), "rc": rc, "wall_s": wall, "output": out[-12000:],
            "load_before": before, "load_after": load(), "note": note}


def _ok(value: float, target: float, higher_is_better: bool = False) -> str:
    good = value >= target if higher_is_better else value <= target
    return "✅" if good else "❌"


def summary(lat: list[dict] | None, rep: dict | None) -> list[str]:
    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    for r in lat or []:
        n = r["symbols"]
        lines.append(f"| decision latency p50 / p99, {n} symbol(s), shadow **off** | "
                     f"{r['latency_off_p50_ms']:.3f} / {r['latency_off_p99_ms']:.3f} ms | | |")
        lines.append(f"| decision latency p50 / p99, {n} symbol(s), shadow **on** | "
                     f"{r['latency_on_p50_ms']:.3f} / {r['latency_on_p99_ms']:.3f} ms | | |")
        lines.append(f"| p99 shadow on / off, {n} symbol(s) | {r['p99_ratio_on_off']:.3f} | ≤ 1.05 | "
                     f"{_ok(r['p99_ratio_on_off'], 1.05)} |")
        lines.append(f"| voters' bare forwards (xgb+lgbm+nhits), batch {n} | {r['voters_forward_sum_ms']:.3f} ms | | |")
        target = f"≤ 1.25 | {_ok(r['p50_ratio_to_voters_forward'], 1.25)}" if n == 1 else "(target set for 1 symbol) |"
        lines.append(f"| p50 latency (shadow off) / voters' forwards, {n} symbol(s) | "
                     f"{r['p50_ratio_to_voters_forward']:.2f} | {target} |")
        lines.append(f"| process() incl. shadow hold + SQLite + sinks p50/p99, {n} symbol(s), on / off | "
                     f"{r['publish_on_p50_ms']:.3f}/{r['publish_on_p99_ms']:.3f} / "
                     f"{r['publish_off_p50_ms']:.3f}/{r['publish_off_p99_ms']:.3f} ms | | |")
    if rep:
        lines.append(f"| replay 2022, 5 symbols, 1h ({rep['decisions']} decisions), end to end | "
                     f"{rep['end_to_end_s']:.1f} s | ≤ 60 s | {_ok(rep['end_to_end_s'], 60)} |")
        lines.append(f"| replay throughput / batched-forward limit (4 models, {rep['chunk']} rows) | "
                     f"{rep['throughput_rows_s']:.0f} / {rep['forward_limit_rows_s']:.0f} rows/s = "
                     f"{rep['ratio_to_limit']:.2f} | ≥ 0.8 | {_ok(rep['ratio_to_limit'], 0.8, True)} |")
    return lines


def walkforward_rows(wf: dict | None) -> list[str]:
    """Issue 16, item 6: one model's walk-forward over 5 symbols × the shared 1h span, 5 folds."""
    if not wf or wf.get("quick"):
        return []
    return [f"| walk-forward (issue 16) {r['model']}, {len(r['symbols'])} symbols × shared 1h span, {r['folds']} folds | "
            f"{r['wall_s'] / 60:.1f} min | ≤ {wf['target_s'] // 60} min | {_ok(r['wall_s'], wf['target_s'])} |"
            for r in wf["rows"] if r["model"] != "ensemble"]


def gate_sim_rows(gs: list[dict] | None) -> list[str]:
    """Issue 15, item 4: gate 4's false PASS rate for a no-skill model with persistence 0.95."""
    return [f"| gate 4 false PASS, no-skill model, AR(1) φ {r['phi']}, {r['hours']} h × {r['symbols']} symbols, "
            f"{r['windows']} windows (previous iid interval: {r['old']['PASS'] / r['windows']:.1%}) | "
            f"{r['new']['PASS'] / r['windows']:.1%} | ≤ 3% | {_ok(r['new']['PASS'] / r['windows'], 0.03)} |"
            for r in gs or []]


def demo_rows(demo: dict | None) -> list[str]:
    """Issue 17, item 5: the demo beside one CPU-bound process."""
    return [f"| `ai-engine demo` beside {r['busy']} busy-loop process(es), {r['threads']} thread(s) chosen "
            f"(CPU {r['cpu_s']:.0f} s; load {r['load_before']}) | {r['wall_s']:.0f} s | ≤ {demo['target_s']} s | "
            f"{_ok(r['wall_s'], demo['target_s'])} |" for r in (demo or {}).get("rows", [])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes everywhere (smoke run)")
    ap.add_argument("--skip-10m", action="store_true", help="analysis at 10k and 1M prediction rows only")
    ap.add_argument("--skip-walkforward", action="store_true", help="leave out the walk-forward timing (about "
                                                                    "20 min on 2 cores)")
    ap.add_argument("--only", default=None, help="comma-separated subset: latency,replay,scale,training,"
                                                 "features,analysis,bus,reload,etth1,walkforward,demo,gatesim,dashboard")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ai-engine-runall-"))
    q = args.quick
    sizes = "10k" if q else ("10k,1M" if args.skip_10m else "10k,1M,10M")
    plan = {
        "latency": (["bench/bench_latency.py", "--batches", "60" if q else "4000,1500", "--json", str(tmp / "lat.json")],
                    1800, "1 and 30 symbols, shadow on/off alternating in one process; a p99 of 1500 decisions "
                    "moved ±0.08 between runs, of 4000 less"),
        "replay": (["bench/bench_replay.py", "--json", str(tmp / "rep.json")], 1800, "full year, 5 symbols"),
        "scale": (["bench/bench_scale.py", *(["--symbols", "1,30", "--batches", "20"] if q else [])], 3600,
                  "issue 20: 1 to 1000 symbols closing together, voters only, a fresh process per count; store and "
                  "bus (the local Redis, a key prefix of its own, removed afterwards)"),
        "training": (["bench/bench_training.py", *(["--quick"] if q else ["--bars", "3000"]),
                      "--json", str(tmp / "train.json")], 3600,
                     "synthetic market, 2 symbols; reduced sizes" if not q else "test-sized models"),
        "features": (["bench/bench_features.py"], 1200, "5000 streamed bars (not --full)"),
        "analysis": (["bench/bench_analysis.py", "--sizes", sizes], 5400,
                     "10M skipped (--skip-10m)" if args.skip_10m and not q else "stores cached in /tmp/ai-engine-bench"),
        "bus": (["bench/bench_bus.py", "--outage-seconds", "10" if q else "30"], 1200,
                "outage shortened from the default 60 s; needs redis-server"),
        "reload": (["bench/bench_reload.py", "--switches", "3" if q else "6"], 1200, ""),
        "etth1": (["bench/etth1.py", "--quick"], 1800, "--quick: 1 epoch, a smoke check of the pipeline, not the "
                  "published-figure comparison (a full run takes hours on 2 cores)"),
        "walkforward": (["bench/bench_walkforward.py", *(["--quick"] if q else ["--models", "patchtst"]),
                         "--threads", "2", "--json", str(tmp / "wf.json")], 3600,
                        "xgb, 2 symbols, 2 folds (smoke run)" if q else "PatchTST, the slowest of the four; real "
                        "candles in ../shared/data/candles"),
        "demo": (["bench/bench_demo.py", "--busy", "1", "--json", str(tmp / "demo.json")], 1800,
                 "ai-engine demo beside one busy-loop process (issue 17: ≤ 60 s on 2 cores)"),
        "gatesim": (["bench/bench_gate_sim.py", "--windows", "100" if q else "500", "--json", str(tmp / "gate.json")],
                    1200, "seeded simulation; every PASS or FAIL of gate 4 is false"),
        "dashboard": (["bench/bench_dashboard.py", "--size", "10k" if q else ("1M" if args.skip_10m else "10M"),
                       "--requests", "20" if q else "200", "--batches", "40" if q else "400"], 1800,
                      "issue 19: endpoints over bench_analysis's store, decision latency with 10 clients polling"),
    }
    chosen = args.only.split(",") if args.only else [p for p in plan if not (p == "walkforward" and args.skip_walkforward)]
    unknown = [c for c in chosen if c not in plan]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(plan)}", file=sys.stderr)
        return 2
    mach = machine()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = [run(name, *plan[name]) for name in chosen]
    lat = json.loads((tmp / "lat.json").read_text()) if (tmp / "lat.json").is_file() else None
    rep = json.loads((tmp / "rep.json").read_text()) if (tmp / "rep.json").is_file() else None
    wf = json.loads((tmp / "wf.json").read_text()) if (tmp / "wf.json").is_file() else None
    gs = json.loads((tmp / "gate.json").read_text()) if (tmp / "gate.json").is_file() else None
    demo = json.loads((tmp / "demo.json").read_text()) if (tmp / "demo.json").is_file() else None
    md = [
        "# Benchmarks",
        "",
        f"Generated by `python bench/run_all.py{' --quick' if q else ''}{' --skip-10m' if args.skip_10m else ''}"
        f"{' --skip-walkforward' if args.skip_walkforward else ''}` "
        f"on {started}. Figures depend on the machine and on its load: the load average (1/5/15 min) is "
        "given beside every benchmark. How the figures are measured and what was tuned: docs/performance.md.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in mach.items()),
        "",
        "## Targets (issue 7)",
        "",
        *summary(lat, rep),
        *walkforward_rows(wf),
        *gate_sim_rows(gs),
        *demo_rows(demo),
        "",
        "Decision latency runs from the candle's arrival (before its features) to the voters' decision and "
        "the governor verdict. The shadow hold (≤ SHADOW_DEADLINE_MS), the SQLite commit and the hand-off to "
        "the sinks come after it and are in the `process()` row. The engines run as the service runs them: the "
        "deciding thread and its voter worker on one CPU (`AI_ENGINE_DECISION_CPU=auto`).",
        "",
    ]
    for r in results:
        status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        md += [f"## {r['name']} — {status}", "",
               f"`{r['cmd']}` — {r['wall_s']:.0f} s, load {r['load_before']} → {r['load_after']}"
               + (f". {r['note']}." if r["note"] else ""), "", "```", r["output"], "```", ""]
    args.out.write_text("\n".join(md))
    print(f"wrote {args.out}")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
