"""Exception tree. The CLI maps each branch to a log line and an exit code.

AIEngineError
├── ConfigError            a human must fix configuration (exit 2)
├── DataError              candles or telemetry are bad or missing (exit 2)
├── ModelLoadError         a model artifact cannot be used (missing, corrupt, wrong checksum)
│   └── FeatureMismatchError  artifact's features differ from what the engine provides
├── NotFittedError         predict before fit (also ValueError and AttributeError)
├── DegenerateModelError   training produced a model the guard refuses
└── TransientError         Redis or network trouble; retry later
"""

from __future__ import annotations

__all__ = [
    "AIEngineError",
    "ConfigError",
    "DataError",
    "ModelLoadError",
    "FeatureMismatchError",
    "NotFittedError",
    "DegenerateModelError",
    "TransientError",
]


class AIEngineError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(AIEngineError):
    """Configuration is invalid; the message names the key, the value and what is allowed."""


class DataError(AIEngineError):
    """Input data (candles, telemetry rows) is malformed or missing."""


class ModelLoadError(AIEngineError):
    """A model artifact cannot be loaded or trusted."""


class FeatureMismatchError(ModelLoadError):
    """The artifact expects features the engine does not provide (or in another order)."""


class NotFittedError(AIEngineError, ValueError, AttributeError):
    """A model was asked to predict before it was fitted."""


class DegenerateModelError(AIEngineError):
    """Training produced a flat-lined or one-action model and refused to save it."""


class TransientError(AIEngineError):
    """A dependency (Redis, network) is temporarily unavailable."""
