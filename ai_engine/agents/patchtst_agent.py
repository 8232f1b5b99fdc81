"""PatchTST agent: a patch-based transformer classifier over windows of the sequence channels."""

from __future__ import annotations

from typing import ClassVar

from ai_engine.agents.torch_base import TorchAgent

__all__ = ["PatchTSTAgent"]


class PatchTSTAgent(TorchAgent):
    """PatchTST over (n, seq_len, C) windows. Hyperparameters: see :class:`TorchAgent`;
    ``net_params`` may override :class:`ai_engine.nets.PatchTSTClassifier` params
    (patch_len, stride, d_model, n_heads, n_layers, d_ff, dropout, head_dropout, revin).

    References:
        Nie et al., "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers", ICLR 2023.
    """

    name: ClassVar[str] = "patchtst"
    net_class: ClassVar[str] = "PatchTSTClassifier"
    default_artifact_name: ClassVar[str] = "patchtst_model.pth"
