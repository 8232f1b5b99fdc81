from __future__ import annotations

import torch

from ai_engine.nets import RevIN


def test_normalize_then_denormalize_is_identity_with_a_learned_affine() -> None:
    torch.manual_seed(0)
    norm = RevIN(4)
    with torch.no_grad():  # a trained affine map, not the identity it starts as
        norm.weight.copy_(torch.tensor([0.5, 2.0, -1.5, 1.0]))
        norm.bias.copy_(torch.tensor([0.3, -0.2, 1.0, 0.0]))
    x = torch.randn(5, 64, 4) * torch.tensor([1.0, 100.0, 0.01, 5.0]) + torch.tensor([0.0, 3e4, -2.0, 7.0])
    xn, mean, std = norm.normalize(x)
    assert torch.allclose(norm.denormalize(xn, mean, std), x, rtol=1e-5, atol=1e-3)


def test_normalized_window_has_zero_mean_unit_std_per_channel() -> None:
    x = torch.randn(3, 100, 2) * 50 + 1000
    xn, _, _ = RevIN(2, affine=False).normalize(x)
    assert torch.allclose(xn.mean(dim=1), torch.zeros(3, 2), atol=1e-4)
    assert torch.allclose(xn.std(dim=1, unbiased=False), torch.ones(3, 2), atol=1e-3)


def test_constant_window_stays_finite() -> None:
    xn, mean, std = RevIN(1).normalize(torch.full((2, 10, 1), 42.0))
    assert torch.isfinite(xn).all() and torch.isfinite(std).all()
