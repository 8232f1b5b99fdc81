from __future__ import annotations

import json

import numpy as np
import pytest

from ai_engine.agents import load_agent
from ai_engine.agents.artifacts import meta_path_for
from ai_engine.data import synthetic_market
from ai_engine.exceptions import ConfigError, DataError, DegenerateModelError
from ai_engine.training import GuardConfig, LabelConfig, TrainOptions, build_dataset, train_model

SMALL_NETS = {
    "patchtst": {"seq_len": 16, "batch_size": 128,
                 "net_params": {"patch_len": 4, "stride": 4, "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 16}},
    "nhits": {"seq_len": 16, "batch_size": 128,
              "net_params": {"hidden_size": 16, "latent_horizon": 4, "pool_kernels": [4, 2, 1], "downsample": [4, 2, 1]}},
}


def _train(model, out, **kw):
    args = dict(symbols=["AAAUSDT", "BBBUSDT"], synthetic=True, out_path=out, threads=1,
                options=TrainOptions(synthetic_bars=1200), epochs=40 if model in ("xgb", "lgbm") else 2,
                agent_params=SMALL_NETS.get(model),
                guard=GuardConfig(max_action_share=1.0, min_conf_std=0.001))  # synthetic: honest probs sit at the shares
    args.update(kw)
    return train_model(model, **args)


@pytest.mark.parametrize("model", ["lgbm", "patchtst"])
def test_train_saves_a_verified_artifact_with_its_report(model, tmp_path):
    out = tmp_path / ("m.txt" if model == "lgbm" else "m.pth")
    agent, report = _train(model, out)
    assert out.is_file() and meta_path_for(out).is_file()
    meta = json.loads(meta_path_for(out).read_text())
    assert meta["report"] == json.loads(json.dumps(report.to_dict()))
    assert meta["label_config"] == LabelConfig().to_dict()
    assert report.version == agent.version and report.symbols == ("AAAUSDT", "BBBUSDT") and report.synthetic
    assert report.n_train > report.n_val > 0 and report.n_test > 0
    assert report.val.n == report.n_val and report.test.n == report.n_test
    assert sum(report.train_label_share) == pytest.approx(1.0) and min(report.train_label_share) > 0.1
    assert report.temperature == agent.temperature_
    # the saved artifact predicts exactly what the trained agent does, on the held-out rows
    ds = build_dataset(
        synthetic_market(["AAAUSDT", "BBBUSDT"], n_bars=1200, seed=0),
        input_kind=agent.input_kind, label_config=LabelConfig(), seq_len=getattr(agent, "seq_len_", None),
    )
    loaded = load_agent(model, out, expected_sha256=agent.sha256)
    np.testing.assert_array_equal(loaded.predict_proba(ds.test.X), agent.predict_proba(ds.test.X))
    assert loaded.metadata_["report"]["test"]["n"] == len(ds.test)


def test_same_seed_same_model(tmp_path):
    a, ra = _train("xgb", tmp_path / "a.ubj", seed=7)
    b, rb = _train("xgb", tmp_path / "b.ubj", seed=7)
    assert ra.val == rb.val and ra.test == rb.test
    assert (tmp_path / "a.ubj").read_bytes() == (tmp_path / "b.ubj").read_bytes()


def test_out_directory_gets_a_versioned_file(tmp_path):
    agent, _ = _train("xgb", tmp_path)
    assert (tmp_path / f"{agent.version}.ubj").is_file()


def test_all_one_class_training_set_is_refused_unless_forced(tmp_path):
    wide = LabelConfig(horizon=4, fee_band=0.9, mode="fixed")  # no move is ever this large: all HOLD
    with pytest.raises(DegenerateModelError, match="training labels are all HOLD .*--force"):
        _train("lgbm", tmp_path / "m.txt", label_config=wide)
    assert not (tmp_path / "m.txt").exists()
    agent, report = _train("lgbm", tmp_path / "m.txt", label_config=wide, force=True)
    assert (tmp_path / "m.txt").is_file() and report.val.action_share[1] == 1.0


def test_guard_refusal_saves_nothing_and_carries_the_report(tmp_path):
    with pytest.raises(DegenerateModelError, match="degenerate model refused") as info:
        _train("xgb", tmp_path / "m.ubj", guard=GuardConfig(min_conf_std=0.9))
    assert not (tmp_path / "m.ubj").exists()
    assert info.value.report.val.n > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"symbols": []}, ConfigError, "no symbols"),
        ({"synthetic": False}, ConfigError, "--data"),
        ({"synthetic": False, "data_dir": "/nonexistent/candles"}, DataError, "not found"),
        ({"options": TrainOptions(start="2024-13-01")}, ConfigError, "start='2024-13-01' is not a date"),
        ({"options": TrainOptions(start="2024-02-01", end="2024-01-01")}, ConfigError, "before"),
        ({"balance": "smote"}, ConfigError, "balance='smote'"),
        ({"interval": "7h"}, ConfigError, "interval"),
        ({"options": TrainOptions(synthetic_bars=80)}, DataError, "no usable train rows"),
    ],
)
def test_bad_training_input_is_a_clear_error(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        _train("xgb", tmp_path / "m.ubj", **kwargs)


def test_unknown_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'tft'"):
        train_model("tft", symbols=["A"], synthetic=True, out_path=tmp_path / "x")
