"""Interval estimates used by the gates: a figure without its uncertainty is not evidence.

Predictions are not independent: a model's output persists from bar to bar, 4-bar outcomes
overlap, and symbols pooled at one timestamp move together. Every interval here therefore treats
the timestamp as the unit: a statistic's per-row influence is summed per timestamp (all symbols of
a candle time together, a cluster), and the variance of the sum of that time series is estimated
so that it holds under autocorrelation (``sum_half_width``). Shares keep Wilson's form at the
effective sample size this implies; the ECE/Brier bootstrap resamples blocks of timestamps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.fft import dct

from ai_engine.analysis.inference import block_lengths, long_run_variance

__all__ = [
    "Z95", "Share", "TimeIndex", "wilson", "wilson_by_time", "sum_half_width", "trend_interval",
    "std_interval", "bootstrap_ece_brier",
]

Z95 = 1.959963984540054
MIN_BATCHES = 12  # batch-means estimate of sum_half_width: max(12, sqrt(T)) batches


@dataclass(frozen=True, slots=True)
class TimeIndex:
    """Each row's timestamp as a position 0..size-1 in time order (rows of one time share it)."""

    tid: np.ndarray
    size: int

    @classmethod
    def of(cls, t: np.ndarray) -> TimeIndex:
        times, tid = np.unique(np.asarray(t), return_inverse=True)
        return cls(tid.astype(np.int64).ravel(), int(times.size))

    def sub(self, mask: np.ndarray) -> TimeIndex:
        """The rows of ``mask``, renumbered over the timestamps they occupy."""
        tid = self.tid[mask]
        present = np.bincount(tid, minlength=self.size) > 0
        return TimeIndex((np.cumsum(present) - 1)[tid], int(present.sum()))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-timestamp sums of a per-row value, in time order."""
        return np.bincount(self.tid, weights=values, minlength=self.size)


@dataclass(frozen=True, slots=True)
class Share:
    """``count`` of ``n`` with its 95% Wilson interval (at the effective sample size when made by
    ``wilson_by_time``); ``p`` is NaN when ``n`` is 0."""

    count: int
    n: int
    p: float
    lo: float
    hi: float

    def to_json(self) -> dict:
        return {"count": self.count, "n": self.n, "p": _num(self.p), "lo": _num(self.lo), "hi": _num(self.hi)}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def _wilson_bounds(p: float, n: float, z: float) -> tuple[float, float]:
    if not n > 0:  # no effective sample (fewer than 3 timestamps): no information
        return 0.0, 1.0
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def wilson(count: int, n: int, z: float = Z95) -> Share:
    """Wilson score interval: honest near 0 and 1, where the normal interval says 100% ± 0.
    Rows taken as independent (the bucket table); the gates use ``wilson_by_time``."""
    count, n = int(count), int(n)
    if n <= 0:
        return Share(count, n, math.nan, 0.0, 1.0)
    p = count / n
    return Share(count, n, p, *_wilson_bounds(p, n, z))


def sum_half_width(u: np.ndarray) -> float:
    """95% half-width for the total of ``u``, a per-timestamp series in time order (the sums of a
    statistic's per-row influence), under autocorrelation of unknown form.

    The widest of three long-run variance estimates, each with its own critical value, so a PASS
    needs all three to agree: (1) equal-weighted cosine, nu = 0.4 T^(2/3) cosines and Student t
    with nu df (Lazarus, Lewis, Stock & Watson 2018, "HAR inference: recommendations for
    practice"); (2) batch means over B = max(12, floor(sqrt T)) consecutive batches (the batch
    size sqrt(T) of consistent batch means, Jones et al. 2006), t with B - 1 df; (3) the flat-top kernel
    with data-driven lag of ``inference.long_run_variance``, normal quantile. (3) alone missed
    long, weak dependence in 168-hour windows; (1) and (2) alone still let a no-skill model with
    persistent confidence pass gate 4 ~3.3% of the time against 2.5% nominal (bench/bench_gate_sim.py).
    Infinite with fewer than 3 timestamps.
    """
    u = np.asarray(u, dtype=np.float64)
    t = u.size
    if t < 3:
        return math.inf
    e = u - u.mean()
    nu = int(min(max(2, math.floor(0.4 * t ** (2 / 3))), t - 1))
    cos = dct(e, type=2, norm="ortho")[1 : nu + 1]
    ewc = float(sps.t.ppf(0.975, nu)) * math.sqrt(t * float((cos * cos).mean()))
    b = min(max(MIN_BATCHES, math.isqrt(t)), t)
    parts = np.array_split(e, b)
    lrv_bm = sum(float(x.sum()) ** 2 / x.size for x in parts) / (b - 1)
    bm = float(sps.t.ppf(0.975, b - 1)) * math.sqrt(t * lrv_bm)
    flat = Z95 * math.sqrt(t * long_run_variance(e)[0])
    return max(ewc, bm, flat)


def wilson_by_time(hit: np.ndarray, ti: TimeIndex) -> Share:
    """Share of rows where ``hit`` is true, Wilson's interval at the effective sample size.

    n_eff = n / deff, the design effect deff = (time-robust half-width / iid half-width)^2 of the
    share (per-timestamp sums of hit - p, ``sum_half_width``), never below 1. With no variation
    (p = 0 or 1) there is nothing to estimate it from and n is used.
    """
    hit = np.asarray(hit, dtype=bool)
    n = int(hit.size)
    count = int(hit.sum())
    if n == 0:
        return Share(count, n, math.nan, 0.0, 1.0)
    p = count / n
    n_eff = float(n)
    if 0 < p < 1:
        iid = Z95 * math.sqrt(n * p * (1 - p))
        n_eff = n / max(1.0, (sum_half_width(ti.sums(hit - p)) / iid) ** 2)
    return Share(count, n, p, *_wilson_bounds(p, n_eff, Z95))


def trend_interval(correct: np.ndarray, score: np.ndarray, ti: TimeIndex) -> tuple[float, float, float]:
    """Slope of accuracy on ``score`` (each scored row's bucket mean confidence) with its 95%
    interval: the Cochran–Armitage trend test as an estimate. One test over all buckets, so seven
    buckets do not give seven-choose-two chances of a spurious difference. Its variance is not
    p(1-p)/Sxx (independent rows) but that of the per-timestamp sums of the score contributions
    (correct - p)(score - mean score), under the null of no trend (``sum_half_width``)."""
    c = np.asarray(correct, dtype=np.float64)
    x = np.asarray(score, dtype=np.float64)
    if c.size == 0:
        return math.nan, math.nan, math.nan
    x = x - x.mean()
    sxx = float((x * x).sum())
    p = float(c.mean())
    if sxx <= 0 or not 0 < p < 1:
        return math.nan, math.nan, math.nan
    slope = float((c * x).sum() / sxx)
    half = sum_half_width(ti.sums((c - p) * x)) / sxx
    return slope, slope - half, slope + half


def std_interval(x: np.ndarray, ti: TimeIndex) -> tuple[float, float, float]:
    """Sample std (ddof=1) with a 95% delta-method interval: influence ((x - mu)^2 - m2) / (2 s)
    per row, summed per timestamp (``sum_half_width``)."""
    n = x.size
    if n < 2:
        return math.nan, 0.0, math.inf
    mu = float(x.mean())
    d2 = (x - mu) ** 2
    m2 = float(d2.mean())
    s = math.sqrt(m2 * n / (n - 1))
    if s == 0.0:
        return 0.0, 0.0, 0.0
    half = sum_half_width(ti.sums((d2 - m2) / (2 * s))) / n
    return s, max(0.0, s - half), s + half


def bootstrap_ece_brier(
    conf: np.ndarray,
    pred: np.ndarray,
    real: np.ndarray,
    brier: np.ndarray,
    edges: tuple[float, ...],
    ti: TimeIndex,
    *,
    samples: int,
    seed: int,
) -> dict[str, tuple[float, float, float]]:
    """ECE and mean Brier score with 95% percentile intervals from a circular block bootstrap by
    time (Politis & Romano 1992), seeded.

    Each timestamp is one unit: its bucket counts, correct counts and confidence sums, and its
    Brier sum (all symbols together). A resample joins ceil(T / L) blocks of L consecutive
    timestamps at random starts (wrapping round the end), L the Politis–White circular block
    length of the per-timestamp Brier and |correct - confidence| sums (the longer). A resample
    is then a count of block starts times the matrix of block sums, so 10M rows cost one pass to
    aggregate plus samples x T numbers.
    """
    n = conf.size
    if n == 0:
        nan = (math.nan, math.nan, math.nan)
        return {"ece": nan, "brier": nan}
    k = len(edges) - 1
    bucket = np.clip(np.searchsorted(np.asarray(edges), conf, side="right") - 1, 0, k - 1)
    key = ti.tid * k + bucket
    cols = [np.bincount(key, weights=w, minlength=ti.size * k).reshape(ti.size, k)
            for w in (None, (pred == real).astype(np.float64), conf)]
    per_t = np.concatenate([*cols, ti.sums(brier)[:, None]], axis=1)  # (T, 3k + 1)

    def stats(tot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = tot[:, :k].sum(axis=1)
        ece = np.abs(tot[:, k : 2 * k] - tot[:, 2 * k : 3 * k]).sum(axis=1) / np.maximum(rows, 1)
        return ece, tot[:, -1] / np.maximum(rows, 1)

    point_ece, point_brier = stats(per_t.sum(axis=0, keepdims=True))
    t = ti.size
    gap = per_t[:, k : 2 * k].sum(axis=1) - per_t[:, 2 * k : 3 * k].sum(axis=1)
    length = int(round(max(block_lengths(per_t[:, -1])[1], block_lengths(gap)[1])))
    csum = np.concatenate((np.zeros((1, per_t.shape[1])), np.cumsum(np.concatenate((per_t, per_t)), axis=0)))
    blocks = csum[length : length + t] - csum[:t]  # block starting at each timestamp, circular
    n_blocks = math.ceil(t / length)
    rng = np.random.default_rng(seed)
    ece_b, brier_b = np.empty(samples), np.empty(samples)
    per = max(1, 2_000_000 // t)
    for s0 in range(0, samples, per):
        m = min(per, samples - s0)
        starts = rng.integers(0, t, (m, n_blocks)) + (np.arange(m) * t)[:, None]
        counts = np.bincount(starts.ravel(), minlength=m * t).reshape(m, t).astype(np.float64)
        ece_b[s0 : s0 + m], brier_b[s0 : s0 + m] = stats(counts @ blocks)
    return {
        "ece": (float(point_ece[0]), *map(float, np.percentile(ece_b, [2.5, 97.5]))),
        "brier": (float(point_brier[0]), *map(float, np.percentile(brier_b, [2.5, 97.5]))),
    }
