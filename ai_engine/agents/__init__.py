"""The four agents (XGBoost, LightGBM, NHiTS, PatchTST) behind one contract, and ``load_agent``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ai_engine.agents.artifacts import ArtifactInfo, safe_torch_load, sha256_file
from ai_engine.agents.base import BaseAgent, check_feature_names
from ai_engine.agents.lgbm_agent import LGBMAgent
from ai_engine.agents.nhits_agent import NHiTSAgent
from ai_engine.agents.patchtst_agent import PatchTSTAgent
from ai_engine.agents.torch_base import TorchAgent
from ai_engine.agents.tree_base import TreeAgent
from ai_engine.agents.xgb_agent import XGBAgent
from ai_engine.exceptions import FeatureMismatchError, ModelLoadError

__all__ = [
    "AGENT_CLASSES",
    "DEFAULT_ARTIFACT_NAME",
    "ArtifactInfo",
    "BaseAgent",
    "LGBMAgent",
    "NHiTSAgent",
    "PatchTSTAgent",
    "TorchAgent",
    "TreeAgent",
    "XGBAgent",
    "check_feature_names",
    "check_engine_features",
    "load_agent",
    "safe_torch_load",
    "sha256_file",
]

AGENT_CLASSES: dict[str, type[BaseAgent]] = {
    cls.name: cls for cls in (XGBAgent, LGBMAgent, NHiTSAgent, PatchTSTAgent)
}

DEFAULT_ARTIFACT_NAME: dict[str, str] = {name: cls.default_artifact_name for name, cls in AGENT_CLASSES.items()}


def check_engine_features(agent: BaseAgent, available: Sequence[str] | None = None) -> None:
    """Raise FeatureMismatchError unless the engine can feed ``agent`` exactly what it was trained on.

    Tabular agents may use any subset of the engine's FEATURE_NAMES (the engine selects their
    columns with ``FeatureFrame.columns(agent.feature_names_in_)``); sequence agents must
    match SEQUENCE_CHANNELS exactly, in order, because windows carry every channel.
    """
    from ai_engine.features import FEATURE_NAMES, SEQUENCE_CHANNELS

    tabular = agent.input_kind == "tabular"
    engine = tuple(available) if available is not None else (FEATURE_NAMES if tabular else SEQUENCE_CHANNELS)
    owner = f"{agent.name} {agent.version}"
    if not tabular:
        check_feature_names(agent.feature_names_in_, engine, owner=owner)
        return
    unknown = [n for n in agent.feature_names_in_ if n not in engine]
    if unknown:
        unused = [n for n in engine if n not in agent.feature_names_in_]
        raise FeatureMismatchError(
            f"{owner}: artifact expects {len(agent.feature_names_in_)} features; {len(unknown)} are not provided "
            f"by the engine: missing {unknown}; engine features the artifact lacks: {unused}"
        )


def load_agent(
    model_name: str,
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    available_features: Sequence[str] | None = None,
) -> BaseAgent:
    """Load a verified agent of kind ``model_name`` ("xgb", "lgbm", "nhits", "patchtst") from ``path``.

    Raises:
        ModelLoadError: unknown model name, file missing, truncated/corrupt, checksum mismatch,
            wrong model kind, architecture/metadata mismatch or NaN weights.
        FeatureMismatchError: the artifact's features are not what the engine provides.
    """
    cls = AGENT_CLASSES.get(model_name)
    if cls is None:
        raise ModelLoadError(f"unknown model {model_name!r}; expected one of {sorted(AGENT_CLASSES)}")
    agent = cls.load(path, expected_sha256=expected_sha256)
    check_engine_features(agent, available_features)
    return agent
