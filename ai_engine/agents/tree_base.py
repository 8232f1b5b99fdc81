"""Shared base of the gradient-boosted tree agents: balancing, early stopping, calibration on
log-probabilities and the native model file. XGBoost and LightGBM only implement the fit step."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ai_engine.agents.base import BALANCE_MODES, BaseAgent, Param, balance_weights
from ai_engine.exceptions import DataError, FeatureMismatchError, ModelLoadError
from ai_engine.training.calibration import log_probs

__all__ = ["TreeAgent"]


def _pos(v: Any) -> bool:
    return v > 0


class TreeAgent(BaseAgent):
    """Gradient-boosted trees over tabular feature rows (n, F); NaN means "missing" to the trees.

    Args:
        n_estimators: int, maximum boosting rounds (early stopping on validation picks fewer).
        learning_rate: float, shrinkage per round.
        max_depth: int, maximum tree depth.
        subsample: float in (0, 1], row fraction per round.
        colsample: float in (0, 1], feature fraction per tree.
        min_child_weight: float, minimum hessian (XGBoost) / child weight (LightGBM) in a leaf.
        reg_lambda: float, L2 penalty on leaf values.
        early_stopping_rounds: int, rounds without validation improvement before stopping.
        balance: "weights" (inverse class-frequency sample weights), "sampler" (class-balanced
            resampling of the training rows) or "none".
        seed: int, random seed.
        n_jobs: int, threads.

    Attributes:
        booster_: the fitted library booster (trimmed to the best iteration).
        best_iteration_: int, number of rounds kept.
    """

    input_kind: ClassVar[str] = "tabular"
    _param_table: ClassVar[dict[str, Param]] = {
        "n_estimators": Param((int,), lambda v: 1 <= v <= 100_000, "int in [1, 100000]"),
        "learning_rate": Param((int, float), lambda v: 0 < v <= 1, "float in (0, 1]"),
        "max_depth": Param((int,), lambda v: 1 <= v <= 32, "int in [1, 32]"),
        "subsample": Param((int, float), lambda v: 0 < v <= 1, "float in (0, 1]"),
        "colsample": Param((int, float), lambda v: 0 < v <= 1, "float in (0, 1]"),
        "min_child_weight": Param((int, float), lambda v: v >= 0, "float >= 0"),
        "reg_lambda": Param((int, float), lambda v: v >= 0, "float >= 0"),
        "early_stopping_rounds": Param((int,), _pos, "int >= 1"),
        "balance": Param((str,), lambda v: v in BALANCE_MODES, f"one of {BALANCE_MODES}"),
        "seed": Param((int,), lambda v: v >= 0, "int >= 0"),
        "n_jobs": Param((int,), _pos, "int >= 1"),
    }

    def __init__(
        self,
        *,
        n_estimators: int = 600,
        learning_rate: float = 0.03,
        max_depth: int = 4,
        subsample: float = 0.8,
        colsample: float = 0.8,
        min_child_weight: float = 5.0,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 40,
        balance: str = "weights",
        seed: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample = colsample
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.balance = balance
        self.seed = seed
        self.n_jobs = n_jobs

    def _as_input(self, X: Any, what: str, width: int | None = None) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{self.name}: {what} must be a numeric (n, F) array") from None
        if X.ndim != 2:
            raise DataError(f"{self.name}: {what} must be 2-D (n, F) feature rows, got shape {X.shape}")
        if width is not None and X.shape[1] != width:
            names = getattr(self, "feature_names_in_", ())
            raise FeatureMismatchError(
                f"{self.name}: {what} has {X.shape[1]} columns but the model expects {width}"
                + (f" ({', '.join(names)})" if names else "")
            )
        if np.isinf(X).any():
            raise DataError(f"{self.name}: {what} contains inf values")
        return X

    def _fit_model(self, X, y, X_val, y_val, sample_weight) -> None:
        w = np.ones(len(y)) if sample_weight is None else sample_weight.copy()
        if self.balance == "weights":
            w *= balance_weights(y)
        elif self.balance == "sampler":
            rng = np.random.default_rng(self.seed)
            classes = np.unique(y)
            per = len(y) // len(classes)
            idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == k), per, replace=True) for k in classes]))
            X, y, w = X[idx], y[idx], w[idx]
        w_val = balance_weights(y_val) if (y_val is not None and self.balance != "none") else None
        self.booster_, self.best_iteration_ = self._fit_booster(X, y, w, X_val, y_val, w_val)
        self.metadata_["best_iteration"] = int(self.best_iteration_)

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        return log_probs(self._booster_proba(X))

    @property
    def inference_threads(self) -> int:
        """Threads used by predict; ``n_jobs`` unless the engine pinned it (docs/performance.md)."""
        return getattr(self, "inference_threads_", self.n_jobs)

    def set_inference_threads(self, n: int) -> None:
        """Threads for prediction only; training threads (``n_jobs``) and the artifact are unchanged."""
        self.inference_threads_ = int(n)

    def _extra_meta(self) -> dict[str, Any]:
        return {"best_iteration": int(self.best_iteration_)}

    @classmethod
    def _restore(cls, path: Path, data: bytes, meta: dict | None) -> BaseAgent:
        if meta is None:  # read_meta(required=True) already refuses this; keep the type narrow
            raise ModelLoadError(f"{path}: sidecar missing")
        agent = cls._from_params(meta.get("params"), path)
        agent._restore_common(path, meta)
        agent.booster_ = agent._booster_from_bytes(data, path)
        agent.best_iteration_ = int(meta.get("best_iteration") or 0)
        n_feat = agent._booster_n_features()
        if n_feat != len(agent.feature_names_in_):
            raise ModelLoadError(
                f"{path}: architecture mismatch: booster has {n_feat} features, metadata lists "
                f"{len(agent.feature_names_in_)}"
            )
        probe = agent._booster_proba(np.zeros((1, n_feat)))
        if probe.shape != (1, 3) or not np.all(np.isfinite(probe)):
            raise ModelLoadError(f"{path}: booster produces non-finite or non-3-class output {probe!r}")
        return agent

    @abc.abstractmethod
    def _fit_booster(self, X, y, w, X_val, y_val, w_val) -> tuple[Any, int]:
        """Train and return (booster trimmed to the best iteration, rounds kept)."""

    @abc.abstractmethod
    def _booster_proba(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated class probabilities (n, 3) in CLASS_ORDER."""

    @abc.abstractmethod
    def _booster_from_bytes(self, data: bytes, path: Path) -> Any:
        """Parse the native model file; corrupt content raises ModelLoadError."""

    @abc.abstractmethod
    def _booster_n_features(self) -> int:
        """Number of input features the booster was trained on."""
