"""PatchTST (Nie et al., ICLR 2023): a channel-independent Transformer over patches of a window.

One backbone (RevIN → patching → patch embedding + learnable positions → Transformer encoder
with BatchNorm) and two heads that share it: a flatten head for forecasting and a pooled
linear head for classification.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ai_engine.nets._validate import check_bool, check_fraction, check_int, check_window
from ai_engine.nets.revin import RevIN
from ai_engine.nets.scaling import ChannelScale

__all__ = ["PatchTSTBackbone", "PatchTSTForecaster", "PatchTSTClassifier"]


class _BatchNormTokens(nn.Module):
    """BatchNorm1d over d_model for token tensors (S, N, D); the paper prefers it to LayerNorm."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (S, N, D)


class _EncoderLayer(nn.Module):
    """Vanilla post-norm Transformer encoder layer: attention and a GELU feed-forward, each residual."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.drop_attn = nn.Dropout(dropout)
        self.norm_attn = _BatchNormTokens(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.drop_ff = nn.Dropout(dropout)
        self.norm_ff = _BatchNormTokens(d_model)

    def forward(self, x: Tensor) -> Tensor:  # (S, N, D)
        attended, _ = self.attn(x, x, x, need_weights=False)
        x = self.norm_attn(x + self.drop_attn(attended))
        return self.norm_ff(x + self.drop_ff(self.ff(x)))  # (S, N, D)


class PatchTSTBackbone(nn.Module):
    """Shared PatchTST body: (B, L, C) window → (B, C, N, d_model) patch embeddings per channel.

    Args:
        n_channels: channels C of the input; each goes through the same weights (channel
            independence), only RevIN's affine map is per channel.
        seq_len: look-back L.
        patch_len: points per patch P (paper: 16).
        stride: step S between patch starts (paper: 8). The series is padded at the end by
            repeating its last value S times, giving N = (L - P) // S + 2 patches.
        d_model: embedding width D (paper: 128, or 16 for small data such as ETTh1).
        n_heads: attention heads; must divide d_model (paper: 16, or 4 for small data).
        n_layers: encoder layers (paper: 3).
        d_ff: feed-forward width (paper: 256, or 128 for small data).
        dropout: dropout after the positional encoding, attention and feed-forward (paper: 0.2).
        revin: normalise each window by its own statistics (RevIN, learnable affine).

    References:
        Nie, Nguyen, Sinthong, Kalagnanam, "A Time Series is Worth 64 Words: Long-term
        Forecasting with Transformers", ICLR 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 16,
        n_heads: int = 4,
        n_layers: int = 3,
        d_ff: int = 128,
        dropout: float = 0.2,
        revin: bool = True,
    ) -> None:
        super().__init__()
        self.n_channels = check_int("n_channels", n_channels)
        self.seq_len = check_int("seq_len", seq_len)
        self.patch_len = check_int("patch_len", patch_len)
        self.stride = check_int("stride", stride)
        self.d_model = check_int("d_model", d_model)
        self.n_heads = check_int("n_heads", n_heads)
        self.n_layers = check_int("n_layers", n_layers)
        self.d_ff = check_int("d_ff", d_ff)
        self.dropout = check_fraction("dropout", dropout)
        self.revin = check_bool("revin", revin)
        if patch_len > seq_len:
            raise ValueError(f"patch_len ({patch_len}) must not exceed seq_len ({seq_len})")
        if d_model % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        self.n_patches = (seq_len - patch_len) // stride + 2
        self.norm = RevIN(n_channels) if revin else None
        self.pad = nn.ReplicationPad1d((0, stride))
        self.embed = nn.Linear(patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            _EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)
        )

    def config(self) -> dict[str, Any]:
        return {
            "n_channels": self.n_channels, "seq_len": self.seq_len, "patch_len": self.patch_len,
            "stride": self.stride, "d_model": self.d_model, "n_heads": self.n_heads,
            "n_layers": self.n_layers, "d_ff": self.d_ff, "dropout": self.dropout,
            "revin": self.revin,
        }

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(B, L, C) → embeddings (B, C, N, D) and the RevIN mean/std (B, 1, C), or None without RevIN."""
        mean = std = None
        if self.norm is not None:
            x, mean, std = self.norm.normalize(x)
        batch = x.shape[0]
        x = self.pad(x.transpose(1, 2))  # (B, C, L + S)
        x = x.unfold(-1, self.patch_len, self.stride)  # (B, C, N, P)
        x = x.reshape(batch * self.n_channels, self.n_patches, self.patch_len)  # (B*C, N, P)
        z = self.drop(self.embed(x) + self.position)  # (B*C, N, D)
        for layer in self.layers:
            z = layer(z)  # (B*C, N, D)
        z = z.reshape(batch, self.n_channels, self.n_patches, self.d_model)  # (B, C, N, D)
        return z, mean, std


class PatchTSTForecaster(nn.Module):
    """PatchTST for forecasting: (B, L, C) → (B, H, C) in the input's units.

    Args:
        n_channels, seq_len, patch_len, stride, d_model, n_heads, n_layers, d_ff, dropout,
            revin: as in :class:`PatchTSTBackbone`.
        horizon: forecast length H.
        head_dropout: dropout on the flattened patch embeddings before the linear head
            (paper's ETTh1 setting: 0).

    The flatten head maps each channel's N * D embeddings to H values with one linear layer
    shared across channels; RevIN denormalises the result with the input window's statistics.

    References:
        Nie et al., "A Time Series is Worth 64 Words", ICLR 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        horizon: int,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 16,
        n_heads: int = 4,
        n_layers: int = 3,
        d_ff: int = 128,
        dropout: float = 0.2,
        head_dropout: float = 0.0,
        revin: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = PatchTSTBackbone(
            n_channels=n_channels, seq_len=seq_len, patch_len=patch_len, stride=stride,
            d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff, dropout=dropout,
            revin=revin,
        )
        self.horizon = check_int("horizon", horizon)
        self.head_dropout = check_fraction("head_dropout", head_dropout)
        self.head = nn.Sequential(
            nn.Flatten(start_dim=-2),
            nn.Dropout(head_dropout),
            nn.Linear(self.backbone.n_patches * d_model, horizon),
        )

    def config(self) -> dict[str, Any]:
        return {**self.backbone.config(), "horizon": self.horizon, "head_dropout": self.head_dropout}

    def forward(self, x: Tensor) -> Tensor:
        check_window(x, self.backbone.seq_len, self.backbone.n_channels, type(self).__name__)
        z, mean, std = self.backbone(x)  # (B, C, N, D)
        y = self.head(z).transpose(1, 2)  # (B, C, H) → (B, H, C)
        if self.backbone.norm is not None:
            y = self.backbone.norm.denormalize(y, mean, std)
        return y  # (B, H, C)


class PatchTSTClassifier(nn.Module):
    """PatchTST for classification: (B, L, C) → (B, n_classes) logits.

    Args:
        n_channels, seq_len, patch_len, stride, d_model, n_heads, n_layers, d_ff, dropout,
            revin: as in :class:`PatchTSTBackbone`.
        n_classes: number of classes; logits follow ``ai_engine.enums.CLASS_ORDER`` when 3.
        global_scale: standardise each channel by statistics fitted on the training windows
            (:class:`ai_engine.nets.scaling.ChannelScale`, set by the agent before training),
            which keeps the volatility level RevIN removes.
        head_dropout: dropout on the pooled features before the linear layer.

    The head averages each channel's patch embeddings over the N patches (positions are already
    mixed into every token by attention) and flattens channels into one C * D vector for a
    linear layer, so the head stays small whatever the look-back. RevIN normalises the input
    window; nothing is denormalised.

    References:
        Nie et al., "A Time Series is Worth 64 Words", ICLR 2023.
    """

    def __init__(
        self,
        *,
        n_channels: int,
        seq_len: int,
        n_classes: int = 3,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 16,
        n_heads: int = 4,
        n_layers: int = 3,
        d_ff: int = 128,
        dropout: float = 0.2,
        head_dropout: float = 0.0,
        revin: bool = True,
        global_scale: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = PatchTSTBackbone(
            n_channels=n_channels, seq_len=seq_len, patch_len=patch_len, stride=stride,
            d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff, dropout=dropout,
            revin=revin,
        )
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        self.global_scale = check_bool("global_scale", global_scale)
        self.scale = ChannelScale(n_channels) if global_scale else None
        self.head_dropout = check_fraction("head_dropout", head_dropout)
        self.head = nn.Sequential(
            nn.Flatten(start_dim=1),
            nn.Dropout(head_dropout),
            nn.Linear(n_channels * d_model, n_classes),
        )

    def config(self) -> dict[str, Any]:
        return {**self.backbone.config(), "n_classes": self.n_classes, "head_dropout": self.head_dropout,
                "global_scale": self.global_scale}

    def forward(self, x: Tensor) -> Tensor:
        check_window(x, self.backbone.seq_len, self.backbone.n_channels, type(self).__name__)
        if self.scale is not None:
            x = self.scale(x)
        z, _, _ = self.backbone(x)  # (B, C, N, D)
        return self.head(z.mean(dim=2))  # (B, C, D) → (B, n_classes)
