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
from ai_engine.features import PRIME_BARS, FeatureBank, StreamingFeatures, compute_features


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
    steady = lat[PRIME_BARS:] * 1e3
    print(
        f"StreamingFeatures.update over {n} candles (after the first {PRIME_BARS}): "
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

    # Symbols closing a bar together: one stream each vs one FeatureBank, primed alike.
    measured = 300
    market = closing_together(args.data, args.symbols, PRIME_BARS + measured)
    steps = [[s.candle(i) for s in market] for i in range(PRIME_BARS + measured)]
    each = [StreamingFeatures(s.symbol, s.interval) for s in market]
    bank = FeatureBank(market[0].interval)
    for f, s in zip(each, market, strict=True):
        f._bank.extend(s.candle(i) for i in range(PRIME_BARS))
    bank.extend(c for step in steps[:PRIME_BARS] for c in step)
    lat_each, lat_bank, worst = np.empty(measured), np.empty(measured), 0.0
    for i, step in enumerate(steps[PRIME_BARS:]):
        t = time.perf_counter()
        got_each = [f.update(c) for f, c in zip(each, step, strict=True)]
        t1 = time.perf_counter()
        got = bank.update(step)
        lat_each[i], lat_bank[i] = t1 - t, time.perf_counter() - t1
        for a, b in zip(got_each, got.tabular, strict=True):
            worst = max(worst, float(np.abs(a.tabular - b).max()))
    print(
        f"{args.symbols} symbols per closing time ({measured} times, primed with {PRIME_BARS} bars): "
        f"{args.symbols} x StreamingFeatures.update median {1e3 * np.median(lat_each):.2f} ms, "
        f"FeatureBank.update median {1e3 * np.median(lat_bank):.2f} ms (max abs diff {worst:.3g})"
    )


if __name__ == "__main__":
    main()
