from __future__ import annotations

import pytest
import torch

from ai_engine.nets import PatchTSTBackbone, PatchTSTForecaster


@pytest.mark.parametrize(("seq_len", "patch_len", "stride"), [(336, 16, 8), (512, 16, 8), (64, 16, 8), (50, 12, 5), (16, 16, 8)])
def test_patch_count_with_end_padding(seq_len: int, patch_len: int, stride: int) -> None:
    backbone = PatchTSTBackbone(n_channels=2, seq_len=seq_len, patch_len=patch_len, stride=stride, d_model=8, n_heads=2)
    z, _, _ = backbone.eval()(torch.randn(3, seq_len, 2))
    expected = (seq_len - patch_len) // stride + 2
    assert backbone.n_patches == expected
    assert z.shape == (3, 2, expected, 8)


def test_last_patch_is_padded_by_repeating_the_last_value() -> None:
    # With revin off and an identity patch embedding, the last token is the padded patch.
    backbone = PatchTSTBackbone(n_channels=1, seq_len=32, patch_len=16, stride=8, d_model=16, n_heads=1, n_layers=1, revin=False)
    captured = {}
    backbone.embed.register_forward_hook(lambda _m, inputs, _o: captured.setdefault("patches", inputs[0]))
    x = torch.arange(32, dtype=torch.float32).reshape(1, 32, 1)
    backbone(x)
    patches = captured["patches"]  # (B*C, N, P)
    assert patches.shape == (1, 4, 16)
    assert torch.equal(patches[0, 0], torch.arange(16, dtype=torch.float32))
    assert torch.equal(patches[0, -1], torch.tensor([24.0, 25, 26, 27, 28, 29, 30, 31] + [31.0] * 8))


def test_channel_independence_of_the_forecast() -> None:
    torch.manual_seed(0)
    net = PatchTSTForecaster(n_channels=4, seq_len=64, horizon=8, d_model=8, n_heads=2, n_layers=2, d_ff=16).eval()
    x = torch.randn(2, 64, 4)
    changed = x.clone()
    changed[:, :, 2] = torch.randn(2, 64) * 10 + 5
    before, after = net(x), net(changed)
    others = [0, 1, 3]
    assert torch.allclose(before[:, :, others], after[:, :, others], atol=1e-6)
    assert not torch.allclose(before[:, :, 2], after[:, :, 2])


def test_forecast_follows_the_input_level_through_revin() -> None:
    # Shifting a window by a constant shifts the forecast by the same constant (RevIN denorm).
    torch.manual_seed(0)
    net = PatchTSTForecaster(n_channels=2, seq_len=32, horizon=4, d_model=8, n_heads=2, n_layers=1, d_ff=16).eval()
    x = torch.randn(3, 32, 2)
    assert torch.allclose(net(x + 1000.0), net(x) + 1000.0, atol=1e-2)
