"""Reversible instance normalisation (Kim et al., ICLR 2022), used by PatchTST and NHiTS.

Each input window is normalised by its own per-channel mean and std, so a model sees the same
shapes whatever the price level; a forecast is mapped back with the same statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RevIN"]


class RevIN(nn.Module):
    """Per-window, per-channel normalisation with a learnable affine map.

    Args:
        n_channels: number of channels C of the (B, L, C) input.
        eps: added to the variance, and guards the inverse of the affine weight.
        affine: learn a per-channel weight and bias applied after normalising.

    The statistics are returned, not stored on the module, so one module can serve
    concurrent calls. They are detached, as in the paper: gradients flow through the
    normalised values only.

    References:
        Kim et al., "Reversible Instance Normalization for Accurate Time-Series
        Forecasting against Distribution Shift", ICLR 2022.
    """

    def __init__(self, n_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(n_channels))
            self.bias = nn.Parameter(torch.zeros(n_channels))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, C) → normalised (B, L, C), mean (B, 1, C), std (B, 1, C)."""
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, mean, std

    def denormalize(self, y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """(B, H, C) in normalised units → original units, with the input window's statistics."""
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean
