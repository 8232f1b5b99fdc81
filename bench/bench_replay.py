#!/usr/bin/env python3
"""Replay throughput on real candles beside the batched-forward limit of the four models.

One year (2022) of 1h candles for BTC/ETH/SOL/BNB/XRP (December 2021 only warms the features up)
is replayed end to end through the small cached models (bench_latency.py trains them; training is
not timed): batch features, every decision through the engine with PatchTST in shadow, every
decision and candle written to a fresh SQLite store. The limit is the four models' bare forwards
(library calls, one intra-op thread each as in the engine) on a replay chunk of the same size, run back to back: rows/s a
replay doing nothing but those forwards would reach. The forwards are timed before and after the replay (medians of
both together), so a machine that speeds up or slows down during the run moves the limit with it. Asserts nothing.

    python bench/bench_replay.py [--data ../shared/data/candles] [--chunk 512] [--json out.json]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_latency import (  # noqa: E402
    DEFAULT_MODELS_DIR,
    MODELS,
    bare_forward,
    engine_settings,
    ensure_models,
    forward_inputs,
    load_average,
    time_call,
)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
WARM_FROM = 1638316800000  # 2021-12-01
YEAR_FROM = 1640995200000  # 2022-01-01
YEAR_TO = 1672531200000  # 2023-01-01


def _last_rows(series, seq_len: int, n: int):
    """The last ``n`` rows of one symbol as engine inputs (for timing the forwards before the replay)."""
    from ai_engine.engine import DecisionInputs
    from ai_engine.features import compute_features, sequence_windows

    frame = compute_features(series)
    rows = np.arange(len(frame.tabular) - n, len(frame.tabular))
    windows = sequence_windows(frame.sequence, rows, seq_len).astype(np.float32)
    return DecisionInputs(candles=[None] * n, tabular=np.asarray(frame.tabular[rows]), windows=windows)


def run(data: Path, models: dict[str, Path], chunk: int) -> dict:
    from ai_engine.data import load_dir
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine

    load0 = load_average()
    t0 = time.perf_counter()
    series = load_dir(data, list(SYMBOLS), "1h", start_ms=WARM_FROM, end_ms=YEAR_TO)
    t_load = time.perf_counter() - t0
    home = Path(tempfile.mkdtemp(prefix="ai-engine-replay-"))
    engine = open_engine(engine_settings(home, models, SYMBOLS, PATCHTST_SHADOW_ONLY="true"), wait_for_shadow=True)
    seen = []  # the first full chunk, for the forward limit on the same rows
    stream = engine.decide_stream

    def spy(batches):
        for b in batches:
            if not seen:
                seen.append(b)
            yield b

    engine.decide_stream = lambda batches: stream(spy(batches))
    slots = engine.state.slots
    threads = int(os.environ.get("BENCH_THREADS", "1"))  # the engine's setting (pin_inference_threads)
    fns = {m: bare_forward(slots[m].agent, threads) for m in MODELS}

    def time_forwards(inputs, calls: int) -> dict[str, list[float]]:
        xs = {m: forward_inputs(slots[m], inputs.tabular, inputs.windows) for m in MODELS}
        return {m: [time_call(fns[m], xs[m]) for _ in range(calls)] for m in MODELS}

    before = time_forwards(_last_rows(series["BTCUSDT"], engine.state.seq_len, chunk), 8)
    t1 = time.perf_counter()
    summary = replay_series(engine, series, start_ms=YEAR_FROM, chunk=chunk)
    t_replay = time.perf_counter() - t1
    engine.close()
    stored = engine.store.count("decisions")
    inputs = seen[0]
    after = time_forwards(inputs, 8)
    fwd = {m: float(np.median(before[m] + after[m])) for m in MODELS}
    rows = len(inputs.candles)
    limit = rows / (sum(fwd.values()) / 1000.0)
    throughput = summary.decisions / t_replay
    return {
        "symbols": list(SYMBOLS),
        "decisions": summary.decisions,
        "stored_decisions": stored,
        "chunk": rows,
        "threads": threads,
        "load_s": t_load,
        "replay_s": t_replay,
        "end_to_end_s": t_load + t_replay,
        "throughput_rows_s": throughput,
        "forward_ms_per_chunk": fwd,
        "forward_limit_rows_s": limit,
        "ratio_to_limit": throughput / limit,
        "load_before": load0,
        "load_after": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/candles")
    ap.add_argument("--chunk", type=int, default=512, help="rows per engine batch")
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="cache of the small trained models")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    models, _ = ensure_models(args.models)
    r = run(args.data, models, args.chunk)
    print(f"replayed {r['decisions']} decisions (5 symbols, 2022, 1h) end to end in {r['end_to_end_s']:.1f} s "
          f"(load {r['load_s']:.1f} s + replay {r['replay_s']:.1f} s); throughput {r['throughput_rows_s']:.0f} rows/s")
    print(f"batched-forward limit at {r['chunk']} rows: {r['forward_limit_rows_s']:.0f} rows/s "
          f"({', '.join(f'{m} {v:.1f} ms' for m, v in r['forward_ms_per_chunk'].items())}); "
          f"ratio {r['ratio_to_limit']:.2f}; load {r['load_before']} -> {r['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
