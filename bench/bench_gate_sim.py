#!/usr/bin/env python3
"""Gate 4's error rates for a model with no skill, by seeded simulation (issue 15, item 4).

Each window is built in memory and judged by the project's own ``analyze_model`` (its bucket
edges, thresholds and outcome scoring). The market: per symbol 1h log returns of 1%/bar that share
a common factor (correlation 0.6 between symbols), scored over 4 bars against a fixed ±0.4% band.
The model never sees the market: its action is the arg-max of three AR(1) scores and its
confidence an AR(1) mapped into [0.34, 0.98], both with persistence ``phi`` and half of each a
component common to all symbols. Accuracy therefore does not depend on confidence, and every
PASS or FAIL of gate 4 is a false one. Reported beside the gate as it now is: the previous
interval (the Cochran–Armitage variance p(1-p)/Sxx, every prediction independent) on the same
buckets.

Usage: python bench/bench_gate_sim.py [--windows 500] [--phi 0.95] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_engine.analysis.gates import Thresholds  # noqa: E402
from ai_engine.analysis.labels import LabelSpec  # noqa: E402
from ai_engine.analysis.metrics import analyze_model  # noqa: E402
from ai_engine.analysis.reader import ModelRows, Series, Window  # noqa: E402
from ai_engine.analysis.stats import Z95  # noqa: E402

HOUR = 3_600_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR
HORIZON = 4
BAND = 0.004
SIZES = ((168, 2), (720, 5))  # (hours, symbols): the spec's 7 days on 1h candles, and 30 days of 5
BURN = 300


def _ar1(rng: np.random.Generator, phi: float, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance AR(1) along the last axis, started in its stationary regime."""
    e = rng.normal(size=(*shape[:-1], shape[-1] + BURN)) * math.sqrt(1 - phi * phi)
    return lfilter([1.0], [1.0, -phi], e, axis=-1)[..., BURN:]


def _shared(rng: np.random.Generator, phi: float, k: int, n: int, share: float = 0.5) -> np.ndarray:
    """(k, n) AR(1) series, ``share`` of the variance common to all k."""
    return math.sqrt(share) * _ar1(rng, phi, (1, n)) + math.sqrt(1 - share) * _ar1(rng, phi, (k, n))


def window(seed: int, hours: int, symbols: int, phi: float) -> tuple[ModelRows, tuple[Series, ...], Window]:
    """One window of a no-skill model: rows, candle series and the window, as the reader makes them."""
    rng = np.random.default_rng(seed)
    n_c = hours + HORIZON + 1
    ret = 0.01 * (math.sqrt(0.6) * rng.normal(size=(1, n_c)) + math.sqrt(0.4) * rng.normal(size=(symbols, n_c)))
    close = 30_000.0 * np.exp(np.cumsum(ret, axis=1))
    scores = np.stack([_shared(rng, phi, symbols, hours) for _ in range(3)])  # (3, symbols, hours)
    action = scores.argmax(axis=0).astype(np.int8)
    conf = 0.34 + 0.64 * ndtr(_shared(rng, phi, symbols, hours))
    probs = np.repeat(((1 - conf) / 2)[..., None], 3, axis=-1)
    np.put_along_axis(probs, action[..., None].astype(np.int64), conf[..., None], axis=-1)
    t = np.broadcast_to(T0 + HOUR * np.arange(hours), (symbols, hours))
    sym = np.broadcast_to(np.arange(symbols)[:, None], (symbols, hours))
    order = np.argsort(t.ravel(), kind="stable")  # the reader's order: by time, symbols together
    n = symbols * hours
    rows = ModelRows(
        model="patchtst", t=t.ravel()[order].astype(np.int64), series=sym.ravel()[order].astype(np.int16),
        status=np.zeros(n, np.int8), action=action.ravel()[order], confidence=conf.ravel()[order],
        probs=probs.reshape(n, 3)[order].astype(np.float32), ensemble=np.ones(n, np.int8),
        joined_late=np.zeros(n, bool), label=np.zeros(n, np.int16),
        labels=(LabelSpec(horizon=HORIZON, mode="fixed", fixed_band=BAND, source="simulation"),),
        unknown_actions=(), versions=(),
    )
    series = tuple(Series(f"SYM{s}USDT", "1h", HOUR, T0, close[s], T0 + HOUR * (n_c - 1)) for s in range(symbols))
    win = Window(T0 - HOUR, T0 + HOUR * (hours - 1), float(hours), True, n, T0, T0 + HOUR * (hours - 1))
    return rows, series, win


def iid_status(buckets) -> str:
    """Gate 4 as it was before issue 15: Cochran–Armitage variance p(1-p)/Sxx, rows independent."""
    q = [b for b in buckets if b.qualifies]
    if len(q) < 2:
        return "INCONCLUSIVE"
    n = np.array([b.accuracy.n for b in q], float)
    c = np.array([b.accuracy.count for b in q], float)
    s = np.array([b.mean_confidence for b in q])
    x = s - (n * s).sum() / n.sum()
    sxx, p = (n * x * x).sum(), c.sum() / n.sum()
    if sxx <= 0 or not 0 < p < 1:
        return "INCONCLUSIVE"
    slope, half = (c * x).sum() / sxx, Z95 * math.sqrt(p * (1 - p) / sxx)
    return "PASS" if slope - half > 0 else "FAIL" if slope + half < 0 else "INCONCLUSIVE"


def simulate(windows: int, hours: int, symbols: int, phi: float, seed: int) -> dict:
    th = Thresholds()
    new = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0}
    old = dict(new)
    t0 = time.perf_counter()
    for w in range(windows):
        rows, series, win = window(seed * 1_000_003 + w, hours, symbols, phi)
        m = analyze_model(rows, series, win, th)
        new[m.gates[3].status] += 1
        old[iid_status(m.buckets)] += 1
    return {"hours": hours, "symbols": symbols, "phi": phi, "windows": windows, "new": new, "old": old,
            "seconds": time.perf_counter() - t0}


def _rate(k: int, n: int) -> str:
    return f"{k / n:.1%} ({k}/{n})"


def table(results: list[dict]) -> list[str]:
    lines = ["| window | φ | windows | method | false PASS | false PASS+FAIL |", "|---|---|---|---|---|---|"]
    for r in results:
        for name, key in (("iid (previous)", "old"), ("by time (now)", "new")):
            c = r[key]
            lines.append(f"| {r['hours']} h × {r['symbols']} symbols | {r['phi']} | {r['windows']} | {name} | "
                         f"{_rate(c['PASS'], r['windows'])} | {_rate(c['PASS'] + c['FAIL'], r['windows'])} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=500, help="windows per size (default 500)")
    ap.add_argument("--phi", type=float, default=0.95, help="AR(1) persistence of signal and confidence")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args(argv)
    results = [simulate(args.windows, h, s, args.phi, args.seed) for h, s in SIZES]
    print("Gate 4 (calibration trend) on a no-skill model: every PASS or FAIL is false; nominal PASS 2.5%, "
          "PASS+FAIL 5%.\n")
    print("\n".join(table(results)))
    print(f"\n{sum(r['seconds'] for r in results):.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
