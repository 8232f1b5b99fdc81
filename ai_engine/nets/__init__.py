"""Network architectures for the neural agents: PatchTST and NHiTS, each with a forecasting
and a classification head over one shared backbone, and `build_net` to rebuild one from an
artifact's class name and constructor params."""

from __future__ import annotations

from typing import Any

from torch import nn

from ai_engine.exceptions import ModelLoadError
from ai_engine.nets.nhits import NHiTSBackbone, NHiTSClassifier, NHiTSForecaster
from ai_engine.nets.patchtst import PatchTSTBackbone, PatchTSTClassifier, PatchTSTForecaster
from ai_engine.nets.revin import RevIN

__all__ = [
    "NET_CLASSES",
    "NHiTSBackbone",
    "NHiTSClassifier",
    "NHiTSForecaster",
    "PatchTSTBackbone",
    "PatchTSTClassifier",
    "PatchTSTForecaster",
    "RevIN",
    "build_net",
]

# The classes an artifact may name; the name stored is the class's __name__.
NET_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (PatchTSTForecaster, PatchTSTClassifier, NHiTSForecaster, NHiTSClassifier)
}


def build_net(class_name: str, params: dict[str, Any]) -> nn.Module:
    """Rebuild a net as `cls(**params)`; an unknown class or bad params raise ModelLoadError."""
    cls = NET_CLASSES.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ModelLoadError(
            f"unknown network class {class_name!r}; expected one of {sorted(NET_CLASSES)}"
        )
    if not isinstance(params, dict):
        raise ModelLoadError(f"params for {class_name} must be a dict, got {type(params).__name__}")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"cannot build {class_name} from params {params!r}: {exc}") from None
