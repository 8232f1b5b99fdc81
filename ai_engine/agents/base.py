"""The agent contract the engine relies on, and the parts every agent shares.

BaseAgent owns parameter validation, input/feature-schema checks, calibration (temperature and class bias),
the fitted check and the artifact sidecar. ``tree_base`` and ``torch_base`` add the training
loop and the model file; each concrete agent only builds its model.
"""

from __future__ import annotations

import abc
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from ai_engine.agents.artifacts import (
    FORMAT_VERSION,
    ArtifactInfo,
    atomic_write_bytes,
    read_meta,
    sha256_file,
    write_meta,
)
from ai_engine.enums import CLASS_ORDER
from ai_engine.exceptions import (
    ConfigError,
    DataError,
    FeatureMismatchError,
    ModelLoadError,
    NotFittedError,
)
from ai_engine.training.calibration import fit_calibration, softmax
from ai_engine.types import LazyRows, Prediction

__all__ = ["BaseAgent", "Param", "PredictionBatch", "BALANCE_MODES", "balance_weights", "check_feature_names",
           "predictions_from_logits", "version_for"]

log = logging.getLogger(__name__)

BALANCE_MODES = ("weights", "sampler", "none")


@dataclass(frozen=True, slots=True)
class Param:
    """One row of an agent's hyperparameter table: accepted types and a range/choice check."""

    types: tuple[type, ...]
    check: Callable[[Any], bool]
    allowed: str
    optional: bool = False


def balance_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights inversely proportional to class frequency, mean 1 (failure mode 9)."""
    counts = np.bincount(y, minlength=3).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(3)
    per_class[present] = len(y) / (present.sum() * counts[present])
    return per_class[y]


class PredictionBatch(LazyRows):
    """A model's predictions over a batch, as arrays: what ``BaseAgent.predict`` returns.

    The engine votes on the arrays (``action``, ``confidence``, ``valid``); a row becomes a
    ``Prediction`` only when read (for the record, after the decision is ready), built exactly as
    ``Prediction.from_probs`` builds it. At 400 rows and three voters, building and checking the
    1,200 objects first cost more than the forwards.
    """

    __slots__ = ("probs", "logits", "action", "confidence")

    def __init__(self, probs: np.ndarray, logits: np.ndarray | None = None) -> None:
        self.probs = np.asarray(probs, dtype=np.float64).reshape(-1, 3)
        super().__init__(len(self.probs))
        self.logits = logits  # the model's own (n, 3) logits, or None: the log-odds of the class
        self.action = self.probs.argmax(axis=1)  # CLASS_ORDER index, the first of equal maxima
        self.confidence = self.probs[np.arange(len(self.probs)), self.action]

    def _build(self, i: int) -> Prediction:
        logits = None if self.logits is None else self.logits[i].tolist()
        return Prediction.from_probs(self.probs[i].tolist(), logits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def valid(self) -> np.ndarray:
        """(n,) bool: rows that pass ``model_calls._invalid``'s rules, checked on the arrays (a row
        that does not is read and checked on its own, for its reason)."""
        p = self.probs
        lo, hi = -1e-9, 1.0 + 1e-9
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(p).all(axis=1) & (p >= lo).all(axis=1) & (p <= hi).all(axis=1)
            ok &= np.abs(p[:, 0] + p[:, 1] + p[:, 2] - 1.0) <= 1e-4
            ok &= (self.confidence >= 0.0) & (self.confidence <= 1.0)
        return ok


def predictions_from_logits(logits: np.ndarray, passes_logits: bool) -> PredictionBatch:
    """Predictions from calibrated logits (n, 3); ``Prediction.logit`` is the model's own logit
    when ``passes_logits``, else the log-odds of the chosen class."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1, 3)
    return PredictionBatch(softmax(logits), logits if passes_logits else None)


def version_for(model: str, when: datetime) -> str:
    """``<model>_v<YYYYmmdd_HHMMSS>`` from the training time (UTC)."""
    return f"{model}_v{when.strftime('%Y%m%d_%H%M%S')}"


def check_feature_names(expected: Sequence[str], got: Sequence[str], *, owner: str) -> None:
    """Raise FeatureMismatchError listing missing, unexpected or reordered names."""
    expected, got = tuple(expected), tuple(got)
    if expected == got:
        return
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if unexpected:
        parts.append(f"unexpected {unexpected}")
    if not parts:
        first = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
        parts.append(f"reordered (first difference at column {first}: expected {expected[first]!r}, got {got[first]!r})")
    raise FeatureMismatchError(f"{owner}: feature schema differs from the model's {len(expected)} features: "
                               + "; ".join(parts))


class BaseAgent(abc.ABC):
    """A 3-class model over one input kind; probabilities follow CLASS_ORDER (SELL, HOLD, BUY).

    Attributes (learned, set by ``fit`` or ``load``):
        feature_names_in_: tuple[str, ...], column (tabular) or channel (sequence) names.
        temperature_: float, calibration temperature fitted on validation data (1.0 without).
        calibration_bias_: tuple of 3 floats, per-class logit bias fitted with it (zeros without);
            it undoes the prior shift of class balancing (``training.calibration``).
        metadata_: dict with ``version``, ``created_at`` and whatever the trainer adds
            (``label_config``, ``report``); stored in the artifact.
        sha256_: str, checksum of the artifact last saved or loaded ("" before that).
    """

    name: ClassVar[str]
    input_kind: ClassVar[str]  # "tabular" | "sequence"
    artifact_format: ClassVar[str]
    default_artifact_name: ClassVar[str]
    passes_logits: ClassVar[bool] = False  # Prediction.logit from the model's own logits
    _param_table: ClassVar[dict[str, Param]]

    # ---- params -----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """Constructor params as stored (plain types), enough to rebuild the agent."""
        return {n: getattr(self, n) for n in self._param_names()}

    def validate_params(self) -> None:
        """Check every hyperparameter against ``_param_table``; ConfigError names the bad one."""
        for pname, spec in self._param_table.items():
            value = getattr(self, pname)
            if value is None and spec.optional:
                continue
            ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
            if not ok or not spec.check(value):
                raise ConfigError(f"{type(self).__name__}: {pname}={value!r} is invalid; allowed: {spec.allowed}")

    # ---- fitting ----------------------------------------------------------------------
    def _default_feature_names(self, width: int) -> tuple[str, ...]:
        from ai_engine import features

        names = tuple(features.FEATURE_NAMES if self.input_kind == "tabular" else features.SEQUENCE_CHANNELS)
        if len(names) != width:
            raise FeatureMismatchError(
                f"{self.name}: X has {width} {'columns' if self.input_kind == 'tabular' else 'channels'} but the "
                f"engine's default schema has {len(names)}; pass feature_names explicitly"
            )
        return names

    @staticmethod
    def _check_labels(y: Any, n: int, what: str) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise DataError(f"{what}: expected {n} labels in a 1-D array, got shape {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 2):
            raise DataError(f"{what}: labels must be integers 0 (SELL), 1 (HOLD), 2 (BUY); got {np.unique(y)[:10]}")
        return y.astype(np.int64)

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight: Any = None,
        feature_names: Sequence[str] | None = None,
    ) -> Self:
        """Train on (X, y); early-stop and calibrate on (X_val, y_val) when given.

        Args:
            X: (n, F) tabular rows or (n, seq_len, C) float32 windows.
            y: (n,) class indices in CLASS_ORDER (0 SELL, 1 HOLD, 2 BUY).
            X_val, y_val: validation part (same layout); used for early stopping and calibration.
            sample_weight: (n,) optional per-row weights, multiplied with class-balance weights.
            feature_names: column/channel names; default: the engine's FEATURE_NAMES or SEQUENCE_CHANNELS.
        """
        self.validate_params()
        self.__dict__.pop("feature_names_in_", None)  # the fitted marker; set last so a failed fit stays unfitted
        X = self._as_input(X, "X")
        y = self._check_labels(y, X.shape[0], "y")
        if X.shape[0] < 3:
            raise DataError(f"{self.name}: need at least 3 training rows, got {X.shape[0]}")
        if np.unique(y).size < 2:
            log.warning("%s: training labels hold one class only (%s); the model can only predict it",
                        self.name, np.unique(y).tolist())
        width = X.shape[-1]
        names = tuple(feature_names) if feature_names is not None else self._default_feature_names(width)
        if len(names) != width or len(set(names)) != len(names):
            raise FeatureMismatchError(f"{self.name}: {len(names)} feature names (unique: {len(set(names))}) "
                                       f"for {width} input columns")
        has_val = X_val is not None and y_val is not None
        if has_val:
            X_val = self._as_input(X_val, "X_val", width=width)
            y_val = self._check_labels(y_val, X_val.shape[0], "y_val")
            has_val = X_val.shape[0] > 0
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (X.shape[0],) or not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
                raise DataError(f"{self.name}: sample_weight must be ({X.shape[0]},) finite and >= 0")
        self.temperature_ = 1.0
        self.calibration_bias_ = (0.0, 0.0, 0.0)
        self.sha256_ = ""
        created = datetime.now(UTC)
        self.metadata_ = {"version": version_for(self.name, created), "created_at": created.isoformat()}
        self._fit_model(X, y, X_val if has_val else None, y_val if has_val else None, sample_weight)
        if has_val:
            prior = np.bincount(y, minlength=3)[:3] / len(y) if getattr(self, "balance", "none") != "none" else None
            cal = fit_calibration(self._raw_logits(X_val), y_val, prior)
            self.temperature_, self.calibration_bias_ = cal.temperature, cal.bias
        self.feature_names_in_ = names
        return self

    # ---- prediction -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_in_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load an artifact first")

    def predict_logits(self, X: Any) -> np.ndarray:
        """Calibrated logits (n, 3) in CLASS_ORDER: raw scores divided by the temperature, plus the class bias."""
        self._check_fitted()
        X = self._as_input(X, "X", width=len(self.feature_names_in_))
        if X.shape[0] == 0:
            return np.zeros((0, 3))
        return self._raw_logits(X) / self.temperature_ + np.asarray(self.calibration_bias_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities (n, 3) float64 in CLASS_ORDER; rows sum to 1."""
        return softmax(self.predict_logits(X))

    def predict(self, X: Any) -> PredictionBatch:
        """One Prediction per row (a ``PredictionBatch``); the action is the arg-max class."""
        return predictions_from_logits(self.predict_logits(X), self.passes_logits)

    def check_features(self, names: Sequence[str]) -> None:
        """Raise FeatureMismatchError unless ``names`` equal ``feature_names_in_`` (same order)."""
        self._check_fitted()
        check_feature_names(self.feature_names_in_, names, owner=f"{self.name} {self.version}")

    # ---- identity ---------------------------------------------------------------------
    @property
    def version(self) -> str:
        """e.g. ``patchtst_v20260109_233444``; fixed at training time and stored in the artifact."""
        self._check_fitted()
        return str(self.metadata_["version"])

    @property
    def sha256(self) -> str:
        """sha256 of the artifact last saved or loaded; "" for a model never saved."""
        self._check_fitted()
        return self.sha256_

    # ---- persistence ------------------------------------------------------------------
    def _meta(self, sha: str, size: int) -> dict[str, Any]:
        md = self.metadata_
        return {
            "model": self.name,
            "agent_class": type(self).__name__,
            "version": self.version,
            "format": self.artifact_format,
            "format_version": FORMAT_VERSION,
            "sha256": sha,
            "size": size,
            "params": self.get_params(),
            "feature_names": list(self.feature_names_in_),
            "input_kind": self.input_kind,
            "seq_len": getattr(self, "seq_len_", None),
            "class_order": [a.value for a in CLASS_ORDER],
            "label_config": md.get("label_config"),
            "calibration": {"method": "temperature+bias", "temperature": self.temperature_,
                            "bias": list(self.calibration_bias_)},
            "report": md.get("report"),
            "created_at": md.get("created_at"),
            **self._extra_meta(),
        }

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | os.PathLike) -> ArtifactInfo:
        """Write the model file and ``<path>.meta.json``; returns the checksum and size."""
        self._check_fitted()
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path} is a directory; give the artifact file name (e.g. {self.default_artifact_name})")
        atomic_write_bytes(path, self._model_bytes())
        sha, size = sha256_file(path), path.stat().st_size
        meta_path = write_meta(path, self._meta(sha, size))
        self.sha256_ = sha
        log.info("saved %s %s to %s (sha256 %s)", self.name, self.version, path, sha)
        return ArtifactInfo(self.name, self.version, path, meta_path, sha, size)

    @classmethod
    def load(cls, path: str | os.PathLike, *, expected_sha256: str | None = None) -> BaseAgent:
        """Load and verify an artifact: file present, checksum, model kind, architecture, finite weights."""
        path = Path(path)
        if path.is_dir():
            raise ModelLoadError(f"{cls.name}: {path} is a directory, not a model file")
        if not path.is_file():
            raise ModelLoadError(f"{cls.name}: model file missing: {path}")
        data = path.read_bytes()
        if not data:
            raise ModelLoadError(f"{cls.name}: model file {path} is empty (0 bytes); an interrupted copy?")
        meta = read_meta(path, required=not cls._embeds_metadata())
        if meta is not None and meta.get("model") != cls.name:
            raise ModelLoadError(f"{path}: wrong model kind: artifact is {meta.get('model')!r}, expected {cls.name!r}")
        import hashlib

        actual = hashlib.sha256(data).hexdigest()
        if meta is not None and actual != str(meta.get("sha256", "")).lower():
            raise ModelLoadError(f"{path}: checksum mismatch: expected {meta.get('sha256')} (sidecar), got {actual}")
        if expected_sha256 is not None and actual != expected_sha256.lower():
            raise ModelLoadError(f"{path}: checksum mismatch: expected {expected_sha256} (registry), got {actual}")
        if meta is None:
            log.warning("%s: no sidecar %s.meta.json; using embedded metadata, sha256 %s not verified",
                        path, path.name, actual)
        agent = cls._restore(path, data, meta)
        agent.sha256_ = actual
        return agent

    @classmethod
    def _from_params(cls, params: Any, path: Path) -> Self:
        if not isinstance(params, dict):
            raise ModelLoadError(f"{path}: stored params must be a dict, got {type(params).__name__}")
        unknown = sorted(set(params) - set(cls._param_names()))
        if unknown:
            raise ModelLoadError(f"{path}: stored params {unknown} are not {cls.__name__} parameters")
        agent = cls(**params)
        try:
            agent.validate_params()
        except ConfigError as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
        return agent

    def _restore_common(self, path: Path, meta: dict) -> None:
        """Set feature names, calibration and metadata from a sidecar or embedded dict (an artifact
        from before the class bias has none: zeros, i.e. temperature only)."""
        names = meta.get("feature_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ModelLoadError(f"{path}: feature_names missing or malformed in metadata")
        cal = meta.get("calibration") or {} if "calibration" in meta else {
            "temperature": meta.get("temperature", 1.0), "bias": meta.get("calibration_bias", [0.0, 0.0, 0.0])}
        temp, bias = cal.get("temperature", 1.0), cal.get("bias", [0.0, 0.0, 0.0])
        if not isinstance(temp, int | float) or not np.isfinite(temp) or temp <= 0:
            raise ModelLoadError(f"{path}: calibration temperature {temp!r} is not a positive finite number")
        if not isinstance(bias, list) or len(bias) != 3 or not all(
                isinstance(b, int | float) and not isinstance(b, bool) and np.isfinite(b) for b in bias):
            raise ModelLoadError(f"{path}: calibration bias {bias!r} is not 3 finite numbers")
        version = meta.get("version")
        if not isinstance(version, str) or not version.startswith(f"{self.name}_v"):
            raise ModelLoadError(f"{path}: version {version!r} is not a {self.name} version")
        self.feature_names_in_ = tuple(names)
        self.temperature_ = float(temp)
        self.calibration_bias_ = tuple(float(b) for b in bias)
        self.metadata_ = {
            "version": version,
            "created_at": meta.get("created_at"),
            "label_config": meta.get("label_config"),
            "report": meta.get("report"),
        }

    # ---- hooks for tree_base / torch_base ---------------------------------------------
    @classmethod
    def _embeds_metadata(cls) -> bool:
        """True when the model file carries its own metadata (so the sidecar is optional)."""
        return False

    @abc.abstractmethod
    def _as_input(self, X: Any, what: str, width: int | None = None) -> np.ndarray:
        """Validate and convert the input layout; wrong width raises FeatureMismatchError."""

    @abc.abstractmethod
    def _fit_model(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None,
                   sample_weight: np.ndarray | None) -> None:
        """Train the underlying model; may set ``metadata_`` entries (epochs, best epoch)."""

    @abc.abstractmethod
    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated scores (n, 3) in CLASS_ORDER."""

    @abc.abstractmethod
    def _model_bytes(self) -> bytes:
        """The model file's content."""

    @classmethod
    @abc.abstractmethod
    def _restore(cls, path: Path, data: bytes, meta: dict | None) -> BaseAgent:
        """Rebuild a fitted agent from verified file bytes and its sidecar (None if absent)."""
