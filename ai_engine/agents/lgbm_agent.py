"""LightGBM agent: multi-class booster saved in LightGBM's native text format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ai_engine.agents.tree_base import TreeAgent
from ai_engine.exceptions import ModelLoadError

__all__ = ["LGBMAgent"]


class LGBMAgent(TreeAgent):
    """LightGBM over tabular feature rows. Hyperparameters: see :class:`TreeAgent`
    (``max_depth`` also caps leaves at ``2**max_depth - 1``).

    References:
        Ke et al., "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS 2017.
    """

    name: ClassVar[str] = "lgbm"
    artifact_format: ClassVar[str] = "lightgbm-text"
    default_artifact_name: ClassVar[str] = "lgbm_model.txt"

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "multiclass",
            "num_class": 3,
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "num_leaves": max(2, min(2**self.max_depth - 1, 131072)),
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "feature_fraction": self.colsample,
            "min_sum_hessian_in_leaf": self.min_child_weight,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "verbosity": -1,
        }

    def _fit_booster(self, X, y, w, X_val, y_val, w_val):
        import lightgbm as lgb

        dtrain = lgb.Dataset(X, label=y, weight=w, free_raw_data=True)
        if X_val is None:
            booster = lgb.train(self._params(), dtrain, num_boost_round=self.n_estimators)
            return booster, self.n_estimators
        dval = lgb.Dataset(X_val, label=y_val, weight=w_val, reference=dtrain)
        booster = lgb.train(
            self._params(), dtrain, num_boost_round=self.n_estimators, valid_sets=[dval],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration) or booster.current_iteration()
        # Re-parse the trimmed text so the in-memory model is exactly what gets saved.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best

    def _booster_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster_.predict(X, num_threads=self.inference_threads), dtype=np.float64).reshape(-1, 3)

    def _model_bytes(self) -> bytes:
        return self.booster_.model_to_string().encode()

    def _booster_from_bytes(self, data: bytes, path: Path) -> Any:
        import lightgbm as lgb

        try:
            return lgb.Booster(model_str=data.decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: corrupt LightGBM model: {str(exc).splitlines()[0]}") from None

    def _booster_n_features(self) -> int:
        return int(self.booster_.num_feature())
