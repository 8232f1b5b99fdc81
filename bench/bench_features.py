"""Feature speed and streaming/batch agreement on real candles. Prints figures; asserts nothing.

python bench/bench_features.py [--data ../shared/data/candles] [--symbol BTCUSDT] [--full]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ai_engine.data import load_csv
from ai_engine.features import StreamingFeatures, compute_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/candles"
    )
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument(
        "--full", action="store_true", help="stream the whole file (slow) instead of 5000 bars"
    )
    args = ap.parse_args()

    t = time.perf_counter()
    series = load_csv(args.data / f"{args.symbol}-1h.csv")
    print(f"load_csv {args.symbol}-1h ({len(series)} rows): {time.perf_counter() - t:.3f} s")

    year = series.slice(0, 8760)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        compute_features(year)
        runs.append(time.perf_counter() - t)
    print(f"compute_features, 8760 bars (one year of 1h): median {1e3 * np.median(runs):.1f} ms")

    n = len(series) if args.full else min(5000, len(series))
    part = series.slice(0, n)
    candles = [part.candle(i) for i in range(n)]
    sf = StreamingFeatures(part.symbol, part.interval)
    lat = np.empty(n)
    rows = []
    for i, c in enumerate(candles):
        t = time.perf_counter()
        rows.append(sf.update(c))
        lat[i] = time.perf_counter() - t
    steady = lat[sf.buffer_bars :] * 1e3
    print(
        f"StreamingFeatures.update over {n} candles (buffer full): "
        f"median {np.median(steady):.3f} ms, p99 {np.percentile(steady, 99):.3f} ms"
    )
    batch = compute_features(part)
    idx = np.flatnonzero(batch.valid)
    tab = np.stack([rows[i].tabular for i in idx])
    diff = np.abs(tab - batch.tabular[idx])
    rel = diff / np.maximum(np.abs(batch.tabular[idx]), 1e-300)
    print(
        f"stream vs batch on {len(idx)} rows: max abs diff {diff.max():.3g}, max rel diff {rel.max():.3g}"
    )


if __name__ == "__main__":
    main()
