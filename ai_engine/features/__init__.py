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
    PRIME_BARS,
    DeferredArray,
    FeatureBank,
    FeatureRow,
    FeatureStep,
    StreamingFeatures,
)

__all__ = [
    "CANDLE_FEATURES",
    "INDICATOR_FEATURES",
    "FEATURE_NAMES",
    "SEQUENCE_CHANNELS",
    "WARMUP_BARS",
    "PRIME_BARS",
    "DeferredArray",
    "FeatureBank",
    "FeatureFrame",
    "FeatureRow",
    "FeatureStep",
    "StreamingFeatures",
    "compute_features",
    "sequence_windows",
]
