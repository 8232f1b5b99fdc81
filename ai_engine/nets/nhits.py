"""NHiTS (Challu et al., AAAI 2023): stacks of MLP blocks with multi-rate pooling and
hierarchical interpolation, applied channel-independently to a (B, L, C) window.

One backbone (the doubly residual stacks) and two heads that share it: the forecaster
denormalises the stacks' forecast, the classifier reads the stacks' forecast of a short
latent horizon as features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ai_engine.nets._validate import (
    check_bool,
    check_fraction,
    check_int,
    check_int_list,
    check_window,
)
from ai_engine.nets.revin import RevIN
from ai_engine.nets.scaling import ChannelScale

__all__ = ["NHiTSBackbone", "NHiTSForecaster", "NHiTSClassifier"]


def _interpolate(theta: Tensor, size: int) -> Tensor:
    """Linear interpolation of (S, n_theta) knots spread evenly over `size` points → (S, size)."""
    return F.interpolate(theta.unsqueeze(1), size=size, mode="linear", align_corners=True).squeeze(1)


class _Block(nn.Module):
    """One NHiTS block: MaxPool the input, an MLP emits coarse backcast and forecast knots,
    which are interpolated to full resolution (L and H)."""

    def __init__(
        self, seq_len: int, horizon: int, pool_kernel: int, downsample: int,
        hidden_size: int, n_hidden_layers: int, dropout: float,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.horizon = horizon
        self.n_theta_backcast = math.ceil(seq_len / downsample)
        self.n_theta_forecast = math.ceil(horizon / downsample)
        self.pool = nn.MaxPool1d(pool_kernel, stride=pool_kernel, ceil_mode=True)
        layers: list[nn.Module] = []
        width = math.ceil(seq_len / pool_kernel)
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_size
        layers.append(nn.Linear(width, self.n_theta_backcast + self.n_theta_forecast))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (S, L)
        pooled = self.pool(x.unsqueeze(1)).squeeze(1)  # (S, ceil(L / k))
        theta = self.mlp(pooled)  # (S, n_theta_b + n_theta_f)
        backcast = _interpolate(theta[:, : self.n_theta_backcast], self.seq_len)  # (S, L)
        forecast = _interpolate(theta[:, self.n_theta_backcast :], self.horizon)  # (S, H)
        return backcast, forecast


class NHiTSBackbone(nn.Module):
    """Shared NHiTS body: (B, L, C) window → (B, H, C) forecast in RevIN-normalised units.

    Args:
        n_channels: channels C; each is a univariate series through the same stacks.
        seq_len: look-back L.
        horizon: forecast length H.
        pool_kernels: MaxPool kernel per stack, coarse to fine (paper: e.g. [16, 8, 1]).
        downsample: expressiveness ratio r per stack; a block emits ceil(H / r) forecast knots
            and ceil(L / r) backcast knots, interpolated linearly (paper: e.g. [24, 12, 1]).
        n_blocks: blocks per stack (paper: 1).
        hidden_size: width of each MLP hidden layer (paper: 512).
        n_hidden_layers: hidden layers per block MLP (paper: 2).
        dropout: dropout after each hidden layer.
        revin: normalise each window by its own statistics (RevIN, learnable affine).

    Stacking is doubly residual: each block sees the input minus all earlier backcasts, and
    the forecast is the sum of every block's forecast.

    References:
        Challu, Olivares, Oreshkin, Garza, Mergenthaler-Canseco, Dubrawski, "NHITS: Neural
        Hierarchical Interpolation for Time Series Forecasting", AAAI 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        horizon: int,
        pool_kernels: Sequence[int] = (16, 8, 1),
        downsample: Sequence[int] = (24, 12, 1),
        n_blocks: int = 1,
        hidden_size: int = 512,
        n_hidden_layers: int = 2,
        dropout: float = 0.0,
        revin: bool = True,
    ) -> None:
        super().__init__()
        self.n_channels = check_int("n_channels", n_channels)
        self.seq_len = check_int("seq_len", seq_len)
        self.horizon = check_int("horizon", horizon)
        self.pool_kernels = check_int_list("pool_kernels", pool_kernels)
        self.downsample = check_int_list("downsample", downsample, length=len(self.pool_kernels))
        self.n_blocks = check_int("n_blocks", n_blocks)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.n_hidden_layers = check_int("n_hidden_layers", n_hidden_layers)
        self.dropout = check_fraction("dropout", dropout)
        self.revin = check_bool("revin", revin)
        self.norm = RevIN(n_channels) if revin else None
        self.blocks = nn.ModuleList(
            _Block(seq_len, horizon, kernel, ratio, hidden_size, n_hidden_layers, dropout)
            for kernel, ratio in zip(self.pool_kernels, self.downsample, strict=True)
            for _ in range(n_blocks)
        )

    def config(self) -> dict[str, Any]:
        return {
            "n_channels": self.n_channels, "seq_len": self.seq_len, "horizon": self.horizon,
            "pool_kernels": list(self.pool_kernels), "downsample": list(self.downsample),
            "n_blocks": self.n_blocks, "hidden_size": self.hidden_size,
            "n_hidden_layers": self.n_hidden_layers, "dropout": self.dropout, "revin": self.revin,
        }

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(B, L, C) → forecast (B, H, C) and the RevIN mean/std (B, 1, C), or None without RevIN."""
        mean = std = None
        if self.norm is not None:
            x, mean, std = self.norm.normalize(x)
        batch = x.shape[0]
        residual = x.transpose(1, 2).reshape(batch * self.n_channels, self.seq_len)  # (B*C, L)
        forecast = residual.new_zeros(batch * self.n_channels, self.horizon)  # (B*C, H)
        for block in self.blocks:
            backcast, block_forecast = block(residual)
            residual = residual - backcast
            forecast = forecast + block_forecast
        forecast = forecast.reshape(batch, self.n_channels, self.horizon).transpose(1, 2)  # (B, H, C)
        return forecast, mean, std


class NHiTSForecaster(nn.Module):
    """NHiTS for forecasting: (B, L, C) → (B, H, C) in the input's units.

    Args:
        n_channels, seq_len, horizon, pool_kernels, downsample, n_blocks, hidden_size,
            n_hidden_layers, dropout, revin: as in :class:`NHiTSBackbone`.

    References:
        Challu et al., "NHITS: Neural Hierarchical Interpolation for Time Series
        Forecasting", AAAI 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        horizon: int,
        pool_kernels: Sequence[int] = (16, 8, 1),
        downsample: Sequence[int] = (24, 12, 1),
        n_blocks: int = 1,
        hidden_size: int = 512,
        n_hidden_layers: int = 2,
        dropout: float = 0.0,
        revin: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = NHiTSBackbone(
            n_channels=n_channels, seq_len=seq_len, horizon=horizon, pool_kernels=pool_kernels,
            downsample=downsample, n_blocks=n_blocks, hidden_size=hidden_size,
            n_hidden_layers=n_hidden_layers, dropout=dropout, revin=revin,
        )

    def config(self) -> dict[str, Any]:
        return self.backbone.config()

    def forward(self, x: Tensor) -> Tensor:
        check_window(x, self.backbone.seq_len, self.backbone.n_channels, type(self).__name__)
        y, mean, std = self.backbone(x)  # (B, H, C)
        if self.backbone.norm is not None:
            y = self.backbone.norm.denormalize(y, mean, std)
        return y  # (B, H, C)


class NHiTSClassifier(nn.Module):
    """NHiTS for classification: (B, L, C) → (B, n_classes) logits.

    Args:
        n_channels, seq_len, pool_kernels, downsample, n_blocks, hidden_size, n_hidden_layers,
            dropout, revin: as in :class:`NHiTSBackbone` (smaller default width for a small
            artifact on CPU).
        n_classes: number of classes; logits follow ``ai_engine.enums.CLASS_ORDER`` when 3.
        latent_horizon: length of the latent "forecast" each channel's stacks produce.
        global_scale: standardise each channel by statistics fitted on the training windows
            (:class:`ai_engine.nets.scaling.ChannelScale`, set by the agent before training),
            which keeps the volatility level RevIN removes.
        head_dropout: dropout on the latent forecast before the linear layer.

    Why this head: the stacks are reused unchanged, so the classifier keeps NHiTS's
    multi-rate pooling, interpolation and doubly residual decomposition. Trained end to end
    on the class loss, each channel's stacks forecast a short latent future (in RevIN
    units, never denormalised); the C * latent_horizon values feed one linear layer. This
    keeps NHiTS an extrapolator of the window, which is what makes it differ from the tree
    models in the ensemble.

    References:
        Challu et al., "NHITS: Neural Hierarchical Interpolation for Time Series
        Forecasting", AAAI 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        n_classes: int = 3,
        latent_horizon: int = 16,
        pool_kernels: Sequence[int] = (8, 4, 1),
        downsample: Sequence[int] = (8, 4, 1),
        n_blocks: int = 1,
        hidden_size: int = 128,
        n_hidden_layers: int = 2,
        dropout: float = 0.1,
        head_dropout: float = 0.0,
        revin: bool = True,
        global_scale: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = NHiTSBackbone(
            n_channels=n_channels, seq_len=seq_len, horizon=latent_horizon,
            pool_kernels=pool_kernels, downsample=downsample, n_blocks=n_blocks,
            hidden_size=hidden_size, n_hidden_layers=n_hidden_layers, dropout=dropout,
            revin=revin,
        )
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.global_scale = check_bool("global_scale", global_scale)
        self.scale = ChannelScale(n_channels) if global_scale else None
        self.head_dropout = check_fraction("head_dropout", head_dropout)
        self.head = nn.Sequential(
            nn.Flatten(start_dim=1),
            nn.Dropout(head_dropout),
            nn.Linear(latent_horizon * n_channels, n_classes),
        )

    def config(self) -> dict[str, Any]:
        params = self.backbone.config()
        params["latent_horizon"] = params.pop("horizon")
        return {**params, "n_classes": self.n_classes, "head_dropout": self.head_dropout,
                "global_scale": self.global_scale}

    def forward(self, x: Tensor) -> Tensor:
        check_window(x, self.backbone.seq_len, self.backbone.n_channels, type(self).__name__)
        if self.scale is not None:
            x = self.scale(x)
        latent, _, _ = self.backbone(x)  # (B, latent_horizon, C)
        return self.head(latent)  # (B, latent_horizon * C) → (B, n_classes)
