"""Walk-forward evaluation of the models and of the ensemble (``ai-engine evaluate``)."""

from __future__ import annotations

from ai_engine.evaluation.folds import FoldPlan, FoldRows, Window, fold_rows, plan_folds
from ai_engine.evaluation.walkforward import (
    ENSEMBLE,
    EVALUABLE,
    Decisions,
    FoldResult,
    ModelFit,
    Outcome,
    Scores,
    WalkForwardConfig,
    WalkForwardResult,
    load_series,
    run_walkforward,
    score_probs,
)

__all__ = [
    "ENSEMBLE",
    "EVALUABLE",
    "Decisions",
    "FoldPlan",
    "FoldResult",
    "FoldRows",
    "ModelFit",
    "Outcome",
    "Scores",
    "WalkForwardConfig",
    "WalkForwardResult",
    "Window",
    "fold_rows",
    "load_series",
    "plan_folds",
    "run_walkforward",
    "score_probs",
]
