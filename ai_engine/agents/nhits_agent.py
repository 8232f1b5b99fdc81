"""NHiTS agent: a multi-rate MLP stack classifier over windows of the sequence channels."""

from __future__ import annotations

from typing import Any, ClassVar

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
    # Measured on BTC+ETH 1h (docs/models.md): with RevIN, lr 1e-3 and dropout 0.1 the best
    # validation epoch was the first; a fixed per-channel scale keeps the volatility level the
    # labels depend on, and a smaller, more regularised MLP trained slower stops later and better.
    net_defaults: ClassVar[dict[str, Any]] = {"revin": False, "global_scale": True, "dropout": 0.3, "hidden_size": 64}
    default_lr: ClassVar[float] = 3e-4
    default_weight_decay: ClassVar[float] = 1e-2
