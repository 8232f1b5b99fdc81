"""Global per-channel standardisation with statistics fitted once on the training windows.

RevIN normalises every window by its own statistics, which is what a forecaster wants but
erases what a trading classifier needs most: how volatile the market is now compared with
usual. The labels' no-trade band is a fixed fee floor or a multiple of the 168-bar volatility,
so the level of the returns in the window carries the signal. A fixed scale keeps that level
while bringing channels of very different magnitudes (log returns ~1e-2, RSI ~1) to unit size.
The statistics are buffers, so they travel in the state dict (weights_only-safe).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ChannelScale"]


class ChannelScale(nn.Module):
    """``(x - loc) / scale`` per channel of a (B, L, C) input; identity until :meth:`fit`."""

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(n_channels))
        self.register_buffer("scale", torch.ones(n_channels))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Set loc/scale to the mean/std of each channel over all rows of ``x`` (..., C)."""
        flat = x.reshape(-1, x.shape[-1]).double()
        self.loc.copy_(flat.mean(dim=0).to(self.loc.dtype))
        self.scale.copy_(flat.std(dim=0).clamp_min(1e-8).to(self.scale.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.loc) / self.scale
