"""Training: labels, purged time split, calibration, report, degeneracy guard and ``train_model``."""

from __future__ import annotations

from ai_engine.training.calibration import (
    Calibration,
    apply_temperature,
    fit_calibration,
    fit_temperature,
    log_probs,
    softmax,
)
from ai_engine.training.dataset import Dataset, Part, build_dataset
from ai_engine.training.guard import GuardConfig, GuardResult, check_degeneracy, enforce_guard
from ai_engine.training.labels import UNLABELLED, LabelConfig, make_labels, volatility_band
from ai_engine.training.report import (
    BaselineMetrics,
    ClassMetrics,
    SplitMetrics,
    TrainingReport,
    evaluate,
    expected_calibration_error,
    render,
)
from ai_engine.training.split import SplitIndices, check_time_order, time_split
from ai_engine.training.trainer import DEFAULT_SEQ_LEN, TrainOptions, parse_date, train_model

__all__ = [
    "BaselineMetrics",
    "Calibration",
    "ClassMetrics",
    "DEFAULT_SEQ_LEN",
    "Dataset",
    "GuardConfig",
    "GuardResult",
    "LabelConfig",
    "Part",
    "SplitIndices",
    "SplitMetrics",
    "TrainOptions",
    "TrainingReport",
    "UNLABELLED",
    "apply_temperature",
    "build_dataset",
    "check_degeneracy",
    "check_time_order",
    "enforce_guard",
    "evaluate",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "log_probs",
    "make_labels",
    "parse_date",
    "render",
    "softmax",
    "time_split",
    "train_model",
    "volatility_band",
]
