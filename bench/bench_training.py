#!/usr/bin/env python3
"""Training time per model with the project's trainer (features, labels, fit, calibration, guard, save).

Each model is trained into a temporary directory on either a synthetic market or real candles;
the figure is wall seconds for ``train_model`` and, from its report, the fit alone. Asserts nothing.

    python bench/bench_training.py [--bars 4000] [--symbols BTCUSDT,ETHUSDT] [--data DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("xgb", "lgbm", "nhits", "patchtst")
EPOCHS = {"xgb": 300, "lgbm": 300, "nhits": 10, "patchtst": 10}  # rounds / epochs (early stopping may stop sooner)
QUICK = {"xgb": 60, "lgbm": 60, "nhits": 2, "patchtst": 2}


def main(argv: list[str] | None = None) -> int:
    from ai_engine.training import TrainOptions, train_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=4000, help="synthetic bars per symbol (without --data)")
    ap.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    ap.add_argument("--data", type=Path, default=None, help="train on <DIR>/<SYMBOL>-1h.csv instead of synthetic")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="1500 bars, few rounds/epochs (the test-sized models)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    epochs = QUICK if args.quick else EPOCHS
    bars = 1500 if args.quick else args.bars
    out = Path(tempfile.mkdtemp(prefix="ai-engine-train-"))
    rows = []
    for name in MODELS:
        t0 = time.perf_counter()
        _, report = train_model(
            name, symbols=args.symbols.split(","), out_path=out, data_dir=args.data, synthetic=args.data is None,
            epochs=epochs[name], seed=0, threads=args.threads, force=True, options=TrainOptions(synthetic_bars=bars),
        )
        wall = time.perf_counter() - t0
        rep = report.to_dict()
        row = {"model": name, "wall_s": wall, "fit_s": rep.get("train_seconds"), "max_epochs": epochs[name],
               "train_rows": rep.get("n_train"), "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}
        rows.append(row)
        fit = f"{row['fit_s']:.1f} s fit" if isinstance(row["fit_s"], int | float) else "fit n/a"
        print(f"{name:9s} {wall:7.1f} s wall ({fit}; ≤{epochs[name]} rounds/epochs, {row['train_rows']} train rows, "
              f"{'real' if args.data else 'synthetic'}, {args.threads} threads); load {row['load']}")
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "bars": bars, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
