"""Feature speed and streaming/batch agreement on real candles. Prints figures; asserts nothing.

python bench/bench_features.py [--data ../shared/data/candles] [--symbol BTCUSDT] [--full]
    [--symbols 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from ai_engine.data import CandleSeries, load_csv
from ai_engine.features import BUFFER_BARS, StreamingFeatures, compute_features, update_many


def closing_together(data: Path, count: int, bars: int) -> list[CandleSeries]:
    """``count`` series of ``bars`` 1h candles, renamed SYMBOL.k: the real files in turn, each
    from a different offset when there are fewer files than symbols."""
    files = sorted(data.glob("*-1h.csv"))
    series = []
    for k in range(count):
        s = load_csv(files[k % len(files)])
        offset = (k // len(files)) * bars
        series.append(dataclasses.replace(s.slice(offset, offset + bars), symbol=f"{s.symbol}.{k}"))
    return series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/candles"
    )
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument(
        "--full", action="store_true", help="stream the whole file (slow) instead of 5000 bars"
    )
    ap.add_argument("--symbols", type=int, default=30, help="symbols closing a bar together")
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

    # Symbols closing a bar together: one update each vs update_many, from the same full buffers.
    measured = 300
    market = closing_together(args.data, args.symbols, BUFFER_BARS + measured)
    steps = [[s.candle(i) for s in market] for i in range(BUFFER_BARS + measured)]
    each, many = ([StreamingFeatures(s.symbol, s.interval) for s in market] for _ in "12")
    for step in steps[:BUFFER_BARS]:
        update_many(each, step)
        update_many(many, step)
    lat_each, lat_many, worst = np.empty(measured), np.empty(measured), 0.0
    for i, step in enumerate(steps[BUFFER_BARS:]):
        t = time.perf_counter()
        got_each = [f.update(c) for f, c in zip(each, step, strict=True)]
        t1 = time.perf_counter()
        got_many = update_many(many, step)
        lat_each[i], lat_many[i] = t1 - t, time.perf_counter() - t1
        for a, b in zip(got_each, got_many, strict=True):
            worst = max(worst, float(np.abs(a.tabular - b.tabular).max()))
    print(
        f"{args.symbols} symbols per closing time ({measured} times, buffers full): "
        f"{args.symbols} x update median {1e3 * np.median(lat_each):.2f} ms, "
        f"update_many median {1e3 * np.median(lat_many):.2f} ms (max abs diff {worst:.3g})"
    )


if __name__ == "__main__":
    main()
