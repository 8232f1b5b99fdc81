#!/usr/bin/env python3
"""Walk-forward evaluation time (issue 16, item 6): one model over 5 symbols × the shared 1h span with
5 folds in ≤ 20 minutes on 2 cores; the ensemble (four models per fold) measured beside it.

Each model runs ``ai_engine.evaluation.run_walkforward`` exactly as ``ai-engine evaluate`` does
(features, labels, per fold: fit, calibrate, predict, score, money view), in this process, one
after another; the figure is wall seconds, with the load average before and after (a busy machine
slows it down). Prints a markdown section; asserts nothing.

    python bench/bench_walkforward.py [--data DIR] [--symbols …] [--folds 5] [--models patchtst,ensemble]
                                      [--threads 2] [--quick] [--json FILE] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIVE = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT"
TARGET_S = 20 * 60  # one model, 5 symbols, the whole shared 1h span, 5 folds, 2 cores


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    from ai_engine.evaluation import EVALUABLE, WalkForwardConfig, load_series, run_walkforward

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "candles")
    ap.add_argument("--symbols", default=FIVE)
    ap.add_argument("--interval", default="1h")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--window", default="rolling", choices=("rolling", "expanding"))
    ap.add_argument("--models", default="patchtst", help=f"comma-separated, from {', '.join(EVALUABLE)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 symbols from 2023-01-01, 2 folds, xgb")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None, help="also write the markdown section here")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    models = ["xgb"] if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in EVALUABLE]
    if unknown:
        print(f"unknown model(s) {unknown}; choose from {', '.join(EVALUABLE)}", file=sys.stderr)
        return 2
    symbols = tuple(("BTCUSDT,ETHUSDT" if args.quick else args.symbols).split(","))
    folds = 2 if args.quick else args.folds
    series = load_series(args.data, symbols, args.interval, start="2023-01-01" if args.quick else None)
    span = (min(int(s.open_time[0]) for s in series.values()), max(int(s.open_time[-1]) for s in series.values()))
    rows = []
    for name in models:
        before, t0 = _load(), time.perf_counter()
        result = run_walkforward(series, WalkForwardConfig(model=name, folds=folds, window=args.window,
                                                           threads=args.threads),
                                 progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
        wall = time.perf_counter() - t0
        fits = [x for f in result.folds for x in f.fits]
        summary = result.summary(name)
        row = {"model": name, "wall_s": round(wall, 1), "fit_s": round(sum(x.seconds for x in fits), 1),
               "train_rows_per_fold": round(sum(x.n_train for x in fits) / len(result.folds)),
               "folds": folds, "symbols": list(symbols), "load_before": before, "load_after": _load(),
               "log_loss_skill_mean": summary["log_loss_skill"]["mean"],
               "net_return_mean": summary["money_net_return"]["mean"]}
        rows.append(row)
        print(f"{name:9s} {wall:7.1f} s wall ({row['fit_s']:.1f} s fitting), {folds} folds, {len(symbols)} symbols; "
              f"load {before} -> {row['load_after']}", flush=True)
    span_txt = " .. ".join(datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d") for t in span)
    md = [
        "## Walk-forward evaluation time (issue 16, item 6)",
        "",
        f"`python bench/bench_walkforward.py{' --quick' if args.quick else ''} --models {','.join(models)} "
        f"--threads {args.threads}` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {os.cpu_count()} cores: "
        f"{','.join(symbols)} {args.interval} {span_txt}, {folds} {args.window} folds, default training options. "
        f"Target: one model ≤ {TARGET_S // 60} min on 2 cores.",
        "",
        "| model | wall | fitting | train rows / fold | target | load before → after |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "" if r["model"] == "ensemble" or args.quick else ("✅" if r["wall_s"] <= TARGET_S else "❌")
        md.append(f"| {r['model']} | {r['wall_s'] / 60:.1f} min | {r['fit_s'] / 60:.1f} min | "
                  f"{r['train_rows_per_fold']} | {'—' if not ok else f'≤ {TARGET_S // 60} min {ok}'} | "
                  f"{r['load_before']} → {r['load_after']} |")
    text = "\n".join(md) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "target_s": TARGET_S, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
