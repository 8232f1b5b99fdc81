from __future__ import annotations

import pytest
import torch

from ai_engine.nets import NHiTSBackbone, NHiTSForecaster
from ai_engine.nets.nhits import _Block, _interpolate


@pytest.mark.parametrize(("horizon", "ratio"), [(96, 24), (192, 24), (7, 3), (5, 8), (12, 1)])
def test_block_emits_ceil_h_over_r_knots_interpolated_to_h(horizon: int, ratio: int) -> None:
    block = _Block(seq_len=40, horizon=horizon, pool_kernel=4, downsample=ratio, hidden_size=8, n_hidden_layers=1, dropout=0.0)
    assert block.n_theta_forecast == -(-horizon // ratio)
    backcast, forecast = block(torch.randn(6, 40))
    assert backcast.shape == (6, 40)
    assert forecast.shape == (6, horizon)


def test_interpolation_passes_through_its_knots() -> None:
    knots = torch.tensor([[0.0, 10.0, 4.0]])
    out = _interpolate(knots, 5)
    assert torch.allclose(out, torch.tensor([[0.0, 5.0, 10.0, 7.0, 4.0]]))


def test_forecast_is_the_sum_of_block_forecasts_on_residual_inputs() -> None:
    torch.manual_seed(0)
    backbone = NHiTSBackbone(n_channels=1, seq_len=24, horizon=6, pool_kernels=[4, 2, 1], downsample=[3, 2, 1], hidden_size=8, revin=False).eval()
    x = torch.randn(2, 24, 1)
    residual, total = x[:, :, 0], torch.zeros(2, 6)
    for block in backbone.blocks:
        back, fore = block(residual)
        residual, total = residual - back, total + fore
    forecast, _, _ = backbone(x)
    assert torch.allclose(forecast[:, :, 0], total, atol=1e-6)


def test_channel_independence_of_the_forecast() -> None:
    torch.manual_seed(0)
    net = NHiTSForecaster(n_channels=3, seq_len=32, horizon=8, pool_kernels=[4, 1], downsample=[4, 1], hidden_size=16).eval()
    x = torch.randn(2, 32, 3)
    changed = x.clone()
    changed[:, :, 0] += torch.randn(2, 32) * 3
    before, after = net(x), net(changed)
    assert torch.allclose(before[:, :, 1:], after[:, :, 1:], atol=1e-6)
    assert not torch.allclose(before[:, :, 0], after[:, :, 0])
