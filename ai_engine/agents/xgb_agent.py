"""XGBoost agent: multi-class softprob booster saved in XGBoost's native UBJ format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ai_engine.agents.tree_base import TreeAgent
from ai_engine.exceptions import ModelLoadError

__all__ = ["XGBAgent"]


class XGBAgent(TreeAgent):
    """XGBoost over tabular feature rows. Hyperparameters: see :class:`TreeAgent`.

    References:
        Chen & Guestrin, "XGBoost: A Scalable Tree Boosting System", KDD 2016.
    """

    name: ClassVar[str] = "xgb"
    artifact_format: ClassVar[str] = "xgboost-ubj"
    default_artifact_name: ClassVar[str] = "xgb_model.ubj"

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "multi:softprob",
            "num_class": 3,
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "tree_method": "hist",
            "eval_metric": "mlogloss",
            "seed": self.seed,
            "nthread": self.n_jobs,
        }

    def _fit_booster(self, X, y, w, X_val, y_val, w_val):
        import xgboost as xgb

        dtrain = xgb.DMatrix(X, label=y, weight=w, nthread=self.n_jobs)
        if X_val is None:
            booster = xgb.train(self._params(), dtrain, num_boost_round=self.n_estimators)
            return booster, self.n_estimators
        dval = xgb.DMatrix(X_val, label=y_val, weight=w_val, nthread=self.n_jobs)
        booster = xgb.train(
            self._params(), dtrain, num_boost_round=self.n_estimators, evals=[(dval, "val")],
            early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False,
        )
        best = int(booster.best_iteration) + 1
        return booster[:best], best

    def _booster_proba(self, X: np.ndarray) -> np.ndarray:
        # inplace_predict skips building a DMatrix: the same trees and output, far less per-call work
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64).reshape(-1, 3)

    def set_inference_threads(self, n: int) -> None:
        super().set_inference_threads(n)
        self.booster_.set_param({"nthread": int(n)})

    def _model_bytes(self) -> bytes:
        return bytes(self.booster_.save_raw(raw_format="ubj"))

    def _booster_from_bytes(self, data: bytes, path: Path) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(f"{path}: corrupt XGBoost model: {str(exc).splitlines()[0]}") from None
        booster.set_param({"nthread": self.n_jobs})
        return booster

    def _booster_n_features(self) -> int:
        return int(self.booster_.num_features())
