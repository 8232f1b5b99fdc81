"""Contract shared by the four nets: shapes, seeded determinism, artifact round trip, bad input."""

from __future__ import annotations

import io

import pytest
import torch

import ai_engine.nets as nets
from ai_engine.exceptions import DataError, ModelLoadError
from ai_engine.nets import (
    NHiTSClassifier,
    NHiTSForecaster,
    PatchTSTClassifier,
    PatchTSTForecaster,
    build_net,
)

SEQ_LEN, N_CHANNELS, HORIZON, BATCH = 48, 3, 12, 4

SMALL = {
    "PatchTSTForecaster": dict(horizon=HORIZON, d_model=8, n_heads=2, n_layers=2, d_ff=16),
    "PatchTSTClassifier": dict(d_model=8, n_heads=2, n_layers=2, d_ff=16),
    "NHiTSForecaster": dict(horizon=HORIZON, pool_kernels=[4, 2, 1], downsample=[6, 3, 1], hidden_size=16),
    "NHiTSClassifier": dict(latent_horizon=8, hidden_size=16),
}
NAMES = sorted(SMALL)


def make(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_net(name, {"n_channels": N_CHANNELS, "seq_len": SEQ_LEN, **SMALL[name]})


def window(seed: int = 1, batch: int = BATCH) -> torch.Tensor:
    return torch.randn(batch, SEQ_LEN, N_CHANNELS, generator=torch.Generator().manual_seed(seed)) * 5 + 100


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name: str) -> None:
    out = make(name).eval()(window())
    expected = (BATCH, HORIZON, N_CHANNELS) if name.endswith("Forecaster") else (BATCH, 3)
    assert out.shape == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    net = make(name).train()
    net(window()).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_and_outputs(name: str) -> None:
    a, b, c = make(name, seed=7).eval(), make(name, seed=7).eval(), make(name, seed=8).eval()
    x = window()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


@pytest.mark.parametrize("name", NAMES)
def test_artifact_round_trip_gives_same_outputs(name: str) -> None:
    net = make(name)
    net.train()
    for _ in range(2):  # move BatchNorm running stats and weights away from their initial values
        net(window(seed=3, batch=8)).square().mean().backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.01 * p.grad
    net.eval()
    buffer = io.BytesIO()
    torch.save({"class": type(net).__name__, "params": net.config(), "state_dict": net.state_dict()}, buffer)
    buffer.seek(0)
    artifact = torch.load(buffer, weights_only=True)
    rebuilt = build_net(artifact["class"], artifact["params"])
    rebuilt.load_state_dict(artifact["state_dict"], strict=True)
    rebuilt.eval()
    assert rebuilt.config() == net.config()
    assert torch.equal(rebuilt(window()), net(window()))


@pytest.mark.parametrize("name", NAMES)
def test_config_holds_exactly_the_constructor_params_as_plain_types(name: str) -> None:
    import inspect

    net = make(name)
    params = net.config()
    assert set(params) == set(inspect.signature(type(net)).parameters)

    def plain(v: object) -> bool:
        return isinstance(v, int | float | str | bool) or (isinstance(v, list) and all(map(plain, v)))

    assert all(plain(v) for v in params.values()), params


@pytest.mark.parametrize("name", NAMES)
def test_wrong_window_shape_is_a_data_error_naming_the_shape(name: str) -> None:
    net = make(name)
    with pytest.raises(DataError, match=rf"\(batch, {SEQ_LEN}, {N_CHANNELS}\).*\(4, {SEQ_LEN}, 2\)"):
        net(torch.zeros(4, SEQ_LEN, 2))


def test_build_net_rejects_unknown_class() -> None:
    with pytest.raises(ModelLoadError, match="'Transformer'.*expected one of"):
        build_net("Transformer", {})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("PatchTSTForecaster", {"n_channels": 3, "seq_len": 48}, "horizon"),
        ("PatchTSTForecaster", {"n_channels": 3, "seq_len": 48, "horizon": 4, "n_heads": 3}, "n_heads"),
        ("PatchTSTClassifier", {"n_channels": 3, "seq_len": 8}, "patch_len"),
        ("PatchTSTClassifier", {"n_channels": 3, "seq_len": 48, "dropout": 1.5}, "dropout"),
        ("NHiTSForecaster", {"n_channels": 3, "seq_len": 48, "horizon": 4, "pool_kernels": [2, 1], "downsample": [1]}, "downsample"),
        ("NHiTSClassifier", {"n_channels": "3", "seq_len": 48}, "n_channels"),
        ("NHiTSClassifier", {"n_channels": 3, "seq_len": 48, "colour": "red"}, "colour"),
    ],
)
def test_build_net_rejects_bad_params_naming_the_key(name: str, params: dict, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        build_net(name, params)


def test_all_lists_the_public_names() -> None:
    import inspect

    defined_here = {
        n for n, obj in vars(nets).items()
        if not n.startswith("_") and not inspect.ismodule(obj)
        and getattr(obj, "__module__", "ai_engine.nets").startswith("ai_engine.nets")
    }
    assert set(nets.__all__) == defined_here
    assert all(hasattr(nets, n) for n in nets.__all__)


def test_classifiers_are_small_enough_for_cpu_artifacts() -> None:
    for cls in (PatchTSTClassifier, NHiTSClassifier):
        net = cls(n_channels=32, seq_len=128)
        size = sum(p.numel() * p.element_size() for p in net.state_dict().values())
        assert size < 3_000_000, f"{cls.__name__} default state_dict is {size} bytes"


def test_forecasters_do_not_share_weights_between_instances() -> None:
    # The heads own their backbone: two nets built alike are independent objects.
    a, b = make("PatchTSTForecaster"), make("PatchTSTForecaster")
    assert a.backbone is not b.backbone
    assert isinstance(a, PatchTSTForecaster) and isinstance(make("NHiTSForecaster"), NHiTSForecaster)
