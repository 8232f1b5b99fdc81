"""Calibration fitted on validation logits, so probabilities mean what they say.

Class balancing makes a model answer as if every class were equally likely: its logits carry
``-log(class weight)``, a prior shift no temperature can undo. ``fit_calibration`` therefore fits
a temperature *and* a per-class bias, ``softmax(z / T + b)``, by validation log loss; the bias
starts at the shift balancing introduced (``log`` of the training class shares). The fit is
convex in ``(1/T, b)``, so the start only saves iterations. Plain temperature scaling
(``fit_temperature``) stays for callers that want one scalar.

Trees have no logits; their log-probabilities play that role (softmax of log p is p).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ai_engine.exceptions import DataError

__all__ = ["Calibration", "softmax", "fit_calibration", "fit_temperature", "apply_temperature", "log_probs",
           "T_BOUNDS", "BIAS_BOUND"]

T_BOUNDS = (0.05, 20.0)  # a temperature outside this range means the model, not T, is broken
BIAS_BOUND = 10.0  # |bias| in logits; beyond it a class would be all but ruled out whatever the model says


@dataclass(frozen=True, slots=True)
class Calibration:
    """Calibrated logits ``z / temperature + bias`` (bias in CLASS_ORDER; zeros = temperature only)."""

    temperature: float = 1.0
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, dtype=np.float64) / self.temperature + np.asarray(self.bias)

    def to_dict(self) -> dict:
        return {"method": "temperature+bias", "temperature": self.temperature, "bias": list(self.bias)}


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


def _check(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise DataError(f"calibration needs (n, 3) logits and (n,) labels, got {logits.shape} and {y.shape}")
    if y.size and not np.all(np.isfinite(logits)):
        raise DataError("calibration logits contain NaN or inf")
    return logits, y


def fit_calibration(logits: np.ndarray, y: np.ndarray, prior: np.ndarray | None = None) -> Calibration:
    """Temperature and per-class bias minimising the validation log loss of ``softmax(z / T + b)``.

    Args:
        logits: (n, 3) raw scores in CLASS_ORDER.
        y: (n,) class indices 0..2.
        prior: training class shares the model was balanced against; the bias starts at
            ``log(prior)`` (undoing the balancing's shift). None starts at zero.

    A class absent from ``y`` keeps bias 0 rather than being driven to the bound.
    """
    logits, y = _check(logits, y)
    if y.size == 0:
        return Calibration()
    present = np.bincount(y, minlength=3)[:3] > 0
    b0 = np.zeros(3) if prior is None else np.log(np.clip(np.asarray(prior, dtype=np.float64), 1e-6, 1.0))
    b0 = np.where(present, b0 - b0[present].mean(), 0.0)
    rows = np.arange(y.size)
    onehot = np.eye(3)[y]

    def nll_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        inv_t, b = theta[0], np.where(present, theta[1:], 0.0)
        z = logits * inv_t + b
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1)
        d = e / s[:, None] - onehot  # d NLL / d z, per row
        loss = float(np.mean(np.log(s) - z[rows, y]))
        grad = np.concatenate([[np.mean(np.sum(d * logits, axis=1))], np.where(present, d.mean(axis=0), 0.0)])
        return loss, grad

    bounds = [(1 / T_BOUNDS[1], 1 / T_BOUNDS[0])] + [(-BIAS_BOUND, BIAS_BOUND)] * 3
    res = minimize(nll_grad, np.concatenate([[1.0], b0]), jac=True, method="L-BFGS-B", bounds=bounds)
    b = np.where(present, res.x[1:], 0.0)
    b = np.where(present, b - b[present].mean(), 0.0)
    return Calibration(float(1 / res.x[0]), tuple(float(v) for v in b))  # type: ignore[arg-type]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """T minimising validation NLL of ``softmax(logits / T)``; 1.0 when there is nothing to fit.

    Args:
        logits: (n, 3) raw scores in CLASS_ORDER.
        y: (n,) class indices 0..2.
    """
    logits, y = _check(logits, y)
    if y.size == 0:
        return 1.0
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(lambda s: _nll(logits, y, float(np.exp(s))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))
