"""A seeded synthetic market for tests, demos and smoke training without real data.

Returns follow a hidden three-state Markov regime (bear / range / bull), each with its own drift
and volatility, plus volatility clustering and mean reversion towards a slow moving average.
Regimes persist for dozens of bars, so recent returns and trend indicators carry real but noisy
information about the next bars: a model can beat the majority class, but not by much.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from ai_engine.data.candles import CandleSeries
from ai_engine.exceptions import ConfigError
from ai_engine.types import INTERVAL_MS

__all__ = ["synthetic_market", "DEFAULT_START_MS"]

DEFAULT_START_MS = 1_640_995_200_000  # 2022-01-01T00:00:00Z

# Regimes: 0 bear, 1 range, 2 bull. Per-bar log drift and volatility at the 1h scale.
_DRIFT = np.array([-0.002, 0.0, 0.002])
_VOL = np.array([0.008, 0.004, 0.007])
_STAY = 0.99  # probability of keeping the regime for another bar (mean run 100 bars)
_REVERSION = np.array([0.005, 0.08, 0.005])  # pull towards the slow average, strongest in a range
_SLOW_ALPHA = 2 / 49  # EMA(48) of log price: the "fair value" the range regime reverts to


def _symbol_seed(symbol: str) -> int:
    return zlib.crc32(symbol.encode())  # stable across processes, unlike hash()


def _one(symbol: str, interval: str, n_bars: int, seed: int, start_ms: int) -> CandleSeries:
    rng = np.random.default_rng([seed, _symbol_seed(symbol)])
    scale = np.sqrt(INTERVAL_MS[interval] / 3_600_000)  # drift and vol quoted per hour
    drift, vol = _DRIFT * scale**2, _VOL * scale
    leave = (1 - _STAY) / 2
    regime = np.empty(n_bars, dtype=np.int64)
    regime[0] = rng.integers(3)
    u = rng.random(n_bars)
    for t in range(1, n_bars):
        r = regime[t - 1]
        regime[t] = r if u[t] < _STAY else (r + (1 if u[t] < _STAY + leave else 2)) % 3
    # Volatility clustering: log-vol multiplier follows an AR(1).
    h = np.empty(n_bars)
    h[0] = 0.0
    shocks = rng.normal(0.0, 0.12, n_bars)
    for t in range(1, n_bars):
        h[t] = 0.96 * h[t - 1] + shocks[t]
    sigma = vol[regime] * np.exp(h)
    eps = rng.standard_normal(n_bars)
    log_close = np.empty(n_bars)
    x = np.log(10 ** rng.uniform(-1.5, 4.5))  # start price between ~0.03 and ~30,000
    slow = x
    for t in range(n_bars):
        r = regime[t]
        x = x + drift[r] - _REVERSION[r] * (x - slow) + sigma[t] * eps[t]
        slow += _SLOW_ALPHA * (x - slow)
        log_close[t] = x
    close = np.exp(log_close)
    open_ = np.empty(n_bars)
    open_[0] = close[0] * np.exp(-sigma[0] * rng.standard_normal())
    open_[1:] = close[:-1]
    wick = sigma * 0.6
    high = np.maximum(open_, close) * np.exp(wick * np.abs(rng.standard_normal(n_bars)))
    low = np.minimum(open_, close) * np.exp(-wick * np.abs(rng.standard_normal(n_bars)))
    base_volume = 10 ** rng.uniform(2, 6)
    volume = base_volume * np.exp(
        0.8 * h + 0.4 * np.abs(eps) + 0.2 * (regime != 1) + 0.3 * rng.standard_normal(n_bars)
    )
    open_time = start_ms + INTERVAL_MS[interval] * np.arange(n_bars, dtype=np.int64)
    return CandleSeries(
        symbol, interval, open_time, open_, high, low, close, volume, synthetic=True
    )


def synthetic_market(
    symbols: Sequence[str],
    interval: str = "1h",
    n_bars: int = 5000,
    seed: int = 0,
    start_ms: int = DEFAULT_START_MS,
) -> dict[str, CandleSeries]:
    """Valid, deterministic OHLCV series per symbol (``synthetic=True``), on one shared timeline.

    The same ``seed`` gives the same market; each symbol gets its own path and price level.

    Raises:
        ConfigError: unknown interval, empty or repeated symbols, n_bars < 1, misaligned start.
    """
    if interval not in INTERVAL_MS:
        raise ConfigError(
            f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MS)}"
        )
    if isinstance(symbols, str) or not symbols or len(set(symbols)) != len(symbols):
        raise ConfigError(f"symbols must be a non-empty list of distinct names, got {symbols!r}")
    if n_bars < 1:
        raise ConfigError(f"n_bars must be >= 1, got {n_bars}")
    if start_ms % INTERVAL_MS[interval]:
        raise ConfigError(f"start_ms {start_ms} is not a multiple of the {interval} interval")
    return {s: _one(s, interval, n_bars, seed, start_ms) for s in symbols}
