"""Degeneracy guard: a one-action or flat-lined model is refused before it is saved (failure modes 7, 9)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai_engine.enums import CLASS_ORDER
from ai_engine.exceptions import ConfigError, DegenerateModelError

__all__ = ["GuardConfig", "GuardResult", "check_degeneracy", "enforce_guard"]


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Thresholds: refuse when one action takes more than ``max_action_share`` of predictions,
    or the std of the confidence (top probability) is below ``min_conf_std``."""

    max_action_share: float = 0.95
    min_conf_std: float = 0.02

    def validate(self) -> GuardConfig:
        if not 0 < self.max_action_share <= 1:
            raise ConfigError(f"max_action_share must be in (0, 1], got {self.max_action_share!r}")
        if not 0 <= self.min_conf_std < 1:
            raise ConfigError(f"min_conf_std must be in [0, 1), got {self.min_conf_std!r}")
        return self


@dataclass(frozen=True, slots=True)
class GuardResult:
    """Figures the guard looked at, and the reasons it objects (empty when the model passes)."""

    n: int
    action_share: tuple[float, float, float]
    confidence_std: float
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.reasons


def check_degeneracy(probs: np.ndarray, cfg: GuardConfig | None = None) -> GuardResult:
    """Inspect validation probabilities (n, 3) in CLASS_ORDER."""
    cfg = (cfg or GuardConfig()).validate()
    probs = np.asarray(probs, dtype=np.float64)
    n = int(probs.shape[0])
    if n == 0:
        return GuardResult(0, (0.0, 0.0, 0.0), 0.0, ("no validation rows to judge the model on",))
    pred = probs.argmax(axis=1)
    share = np.bincount(pred, minlength=3) / n
    conf_std = float(probs.max(axis=1).std())
    reasons = []
    k = int(share.argmax())
    if share[k] > cfg.max_action_share:
        reasons.append(
            f"{share[k]:.1%} of validation predictions are {CLASS_ORDER[k].value} "
            f"(limit {cfg.max_action_share:.0%})"
        )
    if conf_std < cfg.min_conf_std:
        reasons.append(f"confidence std {conf_std:.4f} is below {cfg.min_conf_std:g} (flat-lined output)")
    return GuardResult(n, tuple(float(s) for s in share), conf_std, tuple(reasons))  # type: ignore[arg-type]


def enforce_guard(probs: np.ndarray, cfg: GuardConfig | None = None, *, force: bool = False,
                  model: str = "model") -> GuardResult:
    """Raise DegenerateModelError with the figures unless the model passes or ``force`` is set."""
    result = check_degeneracy(probs, cfg)
    if not result.ok and not force:
        shares = ", ".join(f"{a.value} {s:.1%}" for a, s in zip(CLASS_ORDER, result.action_share, strict=True))
        raise DegenerateModelError(
            f"{model}: degenerate model refused ({'; '.join(result.reasons)}); "
            f"validation n={result.n}, action shares {shares}, confidence std {result.confidence_std:.4f}. "
            "Fix the labels/balancing, or pass --force to save it anyway."
        )
    return result
