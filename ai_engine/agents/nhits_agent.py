"""NHiTS agent: a multi-rate MLP stack classifier over windows of the sequence channels."""

from __future__ import annotations

from typing import ClassVar

from ai_engine.agents.torch_base import TorchAgent

__all__ = ["NHiTSAgent"]


class NHiTSAgent(TorchAgent):
    """NHiTS over (n, seq_len, C) windows. Hyperparameters: see :class:`TorchAgent`;
    ``net_params`` may override :class:`ai_engine.nets.NHiTSClassifier` params
    (latent_horizon, pool_kernels, downsample, n_blocks, hidden_size, n_hidden_layers, dropout, revin).

    References:
        Challu et al., "NHITS: Neural Hierarchical Interpolation for Time Series Forecasting", AAAI 2023.
    """

    name: ClassVar[str] = "nhits"
    net_class: ClassVar[str] = "NHiTSClassifier"
    default_artifact_name: ClassVar[str] = "nhits_model.pth"
