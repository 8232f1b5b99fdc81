"""Temperature scaling: one scalar T fitted on validation logits, so confidences mean what they say.

Trees have no logits; their log-probabilities play that role (softmax of log p is p).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ai_engine.exceptions import DataError

__all__ = ["softmax", "fit_temperature", "apply_temperature", "log_probs", "T_BOUNDS"]

T_BOUNDS = (0.05, 20.0)  # a temperature outside this range means the model, not T, is broken


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_probs(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Log of probabilities clipped away from zero; the tree models' stand-in for logits."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0)
    return np.log(p / p.sum(axis=1, keepdims=True))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)``."""
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature))


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """T minimising validation NLL of ``softmax(logits / T)``; 1.0 when there is nothing to fit.

    Args:
        logits: (n, 3) raw scores in CLASS_ORDER.
        y: (n,) class indices 0..2.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise DataError(f"calibration needs (n, 3) logits and (n,) labels, got {logits.shape} and {y.shape}")
    if y.size == 0:
        return 1.0
    if not np.all(np.isfinite(logits)):
        raise DataError("calibration logits contain NaN or inf")
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(lambda s: _nll(logits, y, float(np.exp(s))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))
