#!/usr/bin/env python3
"""The most that overlapping voters across processes could give at one symbol (docs/performance.md,
"What is left"): an experiment, not the engine's design.

Per closing time, alternately: (a) "in turn": features, then xgboost, lightgbm and NHiTS on the
calling thread; (b) "overlap": NHiTS's request written to a child process of its own at the
candle's arrival (with the previous window, so the child need not wait for the features — an
optimistic bound), then features, xgboost and lightgbm on the calling thread, then the reply read.
No worker hand-off, ensemble, governor or timeout in either. The voters' bare forwards are timed
after each step, as in bench_latency. Prints p50/p99 and the ratios to the bare-forward sum.

    python bench/bench_overlap.py [--decisions 1500]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_latency import (  # noqa: E402
    DEFAULT_MODELS_DIR,
    bare_forward,
    engine_settings,
    ensure_models,
    forward_inputs,
    time_call,
)

from ai_engine.agents.isolated import IsolatedAgent, _from_npy, _npy, _recv, _send  # noqa: E402
from ai_engine.data import synthetic_market, time_batches  # noqa: E402
from ai_engine.live import CandleProcessor  # noqa: E402
from ai_engine.runtime import open_engine  # noqa: E402

HISTORY = 1100


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=1500, help="closing times (alternating the two ways)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    models, _ = ensure_models(DEFAULT_MODELS_DIR)
    series = synthetic_market(["S00USDT"], interval="1h", n_bars=HISTORY + args.decisions, seed=11)
    steps = list(time_batches(series))
    engine = open_engine(engine_settings(Path(tempfile.mkdtemp()), models, ["S00USDT"], PATCHTST_ROLE="disabled"))
    slots = engine.state.slots
    proc = CandleProcessor(engine, "1h")
    proc.prime(c for step in steps[:HISTORY] for c in step)
    bank = proc.features
    xgb, lgbm, nhits = slots["xgb"], slots["lgbm"], slots["nhits"]
    child = IsolatedAgent(nhits.agent, nhits.path)
    child.wait_started(120)
    child._proc.outbox.put(None)  # this bench writes to the child's pipe itself: no pump thread
    fns = {m: bare_forward(slots[m].agent) for m in ("xgb", "lgbm", "nhits")}
    wall: dict[str, list[float]] = {"in turn": [], "overlap": []}
    bare: list[float] = []
    previous = None
    for i, step in enumerate(steps[HISTORY:]):
        way = ("in turn", "overlap")[i % 2]
        t0 = time.perf_counter()
        sent = way == "overlap" and previous is not None
        if sent:
            _send(child._proc.stdin, b"X", _npy(np.ascontiguousarray(previous[None, :, nhits.input_index])))
        got = bank.update([step[0]])
        tab, win = got.tabular, bank.windows(got.slots, nhits.agent.seq_len_)
        xgb.agent.predict(tab[:, xgb.input_index])
        lgbm.agent.predict(tab[:, lgbm.input_index])
        if sent:
            _from_npy(_recv(child._proc.stdout)[1])
        else:
            nhits.agent.predict(win[:, :, nhits.input_index])
        wall[way].append((time.perf_counter() - t0) * 1000.0)
        previous = win[0]
        bare.append(sum(time_call(fns[m], forward_inputs(slots[m], tab, win)) for m in fns))
    child.close()
    engine.close()
    b = float(np.median(bare))
    print(f"voters' bare forwards p50 {b:.3f} ms")
    for way, v in wall.items():
        print(f"{way:>8}: p50 {np.median(v):.3f} ms, p99 {np.percentile(v, 99):.3f} ms, p50 / bare {np.median(v) / b:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
