"""Interval estimates used by the gates: a figure without its uncertainty is not evidence.

Wilson intervals for shares and bucket accuracies, a delta-method interval for the standard
deviation, and a seeded bootstrap for ECE and Brier score that resamples counts of
(confidence to 0.001, predicted class, realised class) cells, so 10M rows cost the same as 10k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Z95", "Share", "wilson", "trend_interval", "std_interval", "bootstrap_ece_brier"]

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Share:
    """``count`` of ``n`` with its 95% Wilson interval; ``p`` is NaN when ``n`` is 0."""

    count: int
    n: int
    p: float
    lo: float
    hi: float

    def to_json(self) -> dict:
        return {"count": self.count, "n": self.n, "p": _num(self.p), "lo": _num(self.lo), "hi": _num(self.hi)}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def wilson(count: int, n: int, z: float = Z95) -> Share:
    """Wilson score interval: honest near 0 and 1, where the normal interval says 100% ± 0."""
    count, n = int(count), int(n)
    if n <= 0:
        return Share(count, n, math.nan, 0.0, 1.0)
    p = count / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return Share(count, n, p, max(0.0, c - h), min(1.0, c + h))


def trend_interval(correct: np.ndarray, n: np.ndarray, score: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """Slope of accuracy on ``score`` across groups (``correct`` of ``n`` at each ``score``), with its
    95% interval: the Cochran–Armitage trend test as an estimate. One test over all groups, so
    seven confidence buckets do not give seven-choose-two chances of a spurious difference."""
    n = np.asarray(n, dtype=float)
    total = n.sum()
    centred = np.asarray(score, dtype=float) - (n * score).sum() / total
    sxx = (n * centred * centred).sum()
    p = np.asarray(correct, dtype=float).sum() / total
    if sxx <= 0 or not 0 < p < 1:
        return math.nan, math.nan, math.nan
    slope = float((np.asarray(correct, dtype=float) * centred).sum() / sxx)
    half = z * math.sqrt(p * (1 - p) / sxx)
    return slope, slope - half, slope + half


def std_interval(x: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """Sample std (ddof=1) with a 95% delta-method interval from the fourth central moment."""
    n = x.size
    if n < 2:
        return math.nan, 0.0, math.inf
    mu = float(x.mean())
    d2 = (x - mu) ** 2
    m2 = float(d2.mean())
    m4 = float((d2 * d2).mean())
    s = math.sqrt(m2 * n / (n - 1))
    if s == 0.0:
        return 0.0, 0.0, 0.0
    se = math.sqrt(max(m4 - m2 * m2, 0.0) / n) / (2 * s)
    return s, max(0.0, s - z * se), s + z * se


def _ece(n: np.ndarray, correct: np.ndarray, conf_sum: np.ndarray) -> np.ndarray:
    """ECE per row of (resampled) bucket sums: sum_b |correct_b - conf_b| / N."""
    total = n.sum(axis=-1)
    return np.abs(correct - conf_sum).sum(axis=-1) / np.maximum(total, 1)


def bootstrap_ece_brier(
    conf: np.ndarray,
    pred: np.ndarray,
    real: np.ndarray,
    brier: np.ndarray,
    edges: tuple[float, ...],
    *,
    samples: int,
    seed: int,
) -> dict[str, tuple[float, float, float]]:
    """ECE and mean Brier score with 95% percentile bootstrap intervals (seeded).

    Rows are grouped into cells (confidence rounded to 0.001, predicted and realised class);
    a bootstrap resample is a multinomial draw of cell counts, which is the row bootstrap up
    to the rounding of confidence inside a cell.
    """
    n = conf.size
    if n == 0:
        nan = (math.nan, math.nan, math.nan)
        return {"ece": nan, "brier": nan}
    key = np.rint(conf * 1000).astype(np.int64) * 9 + pred.astype(np.int64) * 3 + real.astype(np.int64)
    cells, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    c_conf = np.bincount(inv, weights=conf) / counts
    c_brier = np.bincount(inv, weights=brier) / counts
    c_correct = ((cells % 9) // 3 == cells % 3).astype(np.float64)
    k = len(edges) - 1
    c_bucket = np.clip(np.searchsorted(np.asarray(edges), c_conf, side="right") - 1, 0, k - 1)
    onehot = np.zeros((cells.size, k))
    onehot[np.arange(cells.size), c_bucket] = 1.0

    def stats(cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nb = cnt @ onehot
        ece = _ece(nb, (cnt * c_correct) @ onehot, (cnt * c_conf) @ onehot)
        return ece, (cnt * c_brier).sum(axis=-1) / n

    point_ece, point_brier = stats(counts.astype(np.float64)[None, :])
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=samples).astype(np.float64)
    ece_b, brier_b = stats(draws)
    return {
        "ece": (float(point_ece[0]), *map(float, np.percentile(ece_b, [2.5, 97.5]))),
        "brier": (float(point_brier[0]), *map(float, np.percentile(brier_b, [2.5, 97.5]))),
    }
