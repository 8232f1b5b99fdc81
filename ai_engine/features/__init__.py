"""Scale-free features: one computation for training (batch) and serving (streaming)."""

from ai_engine.features.frame import FeatureFrame, compute_features, sequence_windows
from ai_engine.features.indicators import (
    CANDLE_FEATURES,
    FEATURE_NAMES,
    INDICATOR_FEATURES,
    SEQUENCE_CHANNELS,
    WARMUP_BARS,
)
from ai_engine.features.streaming import (
    BUFFER_BARS,
    MIN_BUFFER_BARS,
    FeatureRow,
    StreamingFeatures,
    update_many,
)

__all__ = [
    "CANDLE_FEATURES",
    "INDICATOR_FEATURES",
    "FEATURE_NAMES",
    "SEQUENCE_CHANNELS",
    "WARMUP_BARS",
    "BUFFER_BARS",
    "MIN_BUFFER_BARS",
    "FeatureFrame",
    "FeatureRow",
    "StreamingFeatures",
    "compute_features",
    "sequence_windows",
    "update_many",
]
