"""Artifact safety: every broken, tampered, mismatched or malicious file is refused with a reason."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ai_engine.agents import DEFAULT_ARTIFACT_NAME, XGBAgent, load_agent, sha256_file
from ai_engine.agents.artifacts import meta_path_for, write_meta
from ai_engine.exceptions import FeatureMismatchError, ModelLoadError


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, fit_agent):
    """One saved artifact per model: name → (path, held-out X)."""
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for name in ("xgb", "lgbm", "nhits", "patchtst"):
        agent, X, _ = fit_agent(name)
        out[name] = (agent.save(root / DEFAULT_ARTIFACT_NAME[name]).path, X)
    return out


def _copy(src: Path, dst_dir: Path, with_meta: bool = True) -> Path:
    dst = dst_dir / src.name
    dst.write_bytes(src.read_bytes())
    if with_meta:
        meta_path_for(dst).write_text(meta_path_for(src).read_text())
    return dst


def _rewrite_meta(path: Path, **changes) -> None:
    """A sidecar with ``changes``, internally consistent (as one written for another file would be)."""
    meta = json.loads(meta_path_for(path).read_text())
    write_meta(path, meta | changes)


@pytest.mark.parametrize("name", ["xgb", "lgbm", "nhits", "patchtst"])
def test_missing_file(name, tmp_path):
    with pytest.raises(ModelLoadError, match="model file missing"):
        load_agent(name, tmp_path / "nope.bin")


@pytest.mark.parametrize("name", ["xgb", "lgbm", "nhits", "patchtst"])
def test_truncated_file_is_refused(name, artifacts, tmp_path):
    path = _copy(artifacts[name][0], tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="checksum mismatch"):
        load_agent(name, path)
    if name in ("nhits", "patchtst"):  # without a sidecar the file itself must be judged corrupt
        meta_path_for(path).unlink()
        with pytest.raises(ModelLoadError, match="truncated or corrupt"):
            load_agent(name, path)


@pytest.mark.parametrize("name", ["xgb", "lgbm", "nhits", "patchtst"])
def test_wrong_checksum_is_refused(name, artifacts, tmp_path):
    path = _copy(artifacts[name][0], tmp_path)
    with pytest.raises(ModelLoadError, match=r"checksum mismatch: expected 0{64} \(registry\), got [0-9a-f]{64}"):
        load_agent(name, path, expected_sha256="0" * 64)
    _rewrite_meta(path, sha256="f" * 64)
    with pytest.raises(ModelLoadError, match=r"checksum mismatch: expected f{64} \(sidecar\)"):
        load_agent(name, path)


def test_tree_artifact_needs_its_sidecar(artifacts, tmp_path):
    path = _copy(artifacts["xgb"][0], tmp_path, with_meta=False)
    with pytest.raises(ModelLoadError, match="sidecar .* is missing"):
        load_agent("xgb", path)


@pytest.mark.parametrize(("name", "other"), [("xgb", "lgbm"), ("lgbm", "xgb"), ("nhits", "patchtst"),
                                             ("patchtst", "nhits"), ("patchtst", "xgb")])
def test_wrong_model_kind_is_refused(name, other, artifacts):
    with pytest.raises(ModelLoadError, match=f"wrong model kind: .*{name!r}, expected {other!r}"):
        load_agent(other, artifacts[name][0])


def test_unknown_model_name(artifacts):
    with pytest.raises(ModelLoadError, match="unknown model 'tft'"):
        load_agent("tft", artifacts["xgb"][0])


@pytest.mark.parametrize("name", ["nhits", "patchtst"])
def test_pth_without_sidecar_loads_from_embedded_metadata(name, artifacts, tmp_path, caplog):
    src, X = artifacts[name]
    path = _copy(src, tmp_path, with_meta=False)
    agent = load_agent(name, path)
    assert agent.sha256 == sha256_file(src)
    assert "not verified" in caplog.text
    np.testing.assert_array_equal(agent.predict_proba(X), load_agent(name, src).predict_proba(X))


def _resave(path: Path, ckpt: dict, *, keep_meta: bool) -> None:
    torch.save(ckpt, path)
    if keep_meta:
        _rewrite_meta(path, sha256=sha256_file(path), size=path.stat().st_size)
    else:
        meta_path_for(path).unlink(missing_ok=True)


@pytest.mark.parametrize("keep_meta", [True, False])
def test_nan_weights_are_refused(artifacts, tmp_path, keep_meta):
    path = _copy(artifacts["patchtst"][0], tmp_path)
    ckpt = torch.load(path, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["state_dict"][key][0] = float("nan")
    _resave(path, ckpt, keep_meta=keep_meta)
    with pytest.raises(ModelLoadError, match=f"NaN/inf weights in .*{re.escape(key)}"):
        load_agent("patchtst", path)


def test_weights_of_another_architecture_are_refused(artifacts, tmp_path):
    path = _copy(artifacts["patchtst"][0], tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["net_params"]["d_model"] = 32  # metadata claims a wider net than the weights hold
    _resave(path, ckpt, keep_meta=True)
    with pytest.raises(ModelLoadError, match=r"weights do not match the artifact's architecture PatchTSTClassifier\(.*'d_model': 32"):
        load_agent("patchtst", path)


def test_metadata_that_contradicts_the_architecture_is_refused(artifacts, tmp_path):
    path = _copy(artifacts["nhits"][0], tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["feature_names"] = ckpt["feature_names"][:5]  # 5 names for an 8-channel net
    _resave(path, ckpt, keep_meta=False)
    with pytest.raises(ModelLoadError, match="metadata mismatch: 5 feature names"):
        load_agent("nhits", path)
    (tmp_path / "other").mkdir()
    path2 = _copy(artifacts["nhits"][0], tmp_path / "other")
    _rewrite_meta(path2, seq_len=99)
    with pytest.raises(ModelLoadError, match="metadata mismatch: sidecar seq_len=99"):
        load_agent("nhits", path2)


def test_checkpoint_with_other_features_is_refused(tmp_path):
    """Failure mode 13: a 23-feature checkpoint where the engine provides other features."""
    rng = np.random.default_rng(0)
    names = tuple(f"legacy_{i}" for i in range(23))
    X = rng.normal(size=(120, 23))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    info = XGBAgent(n_estimators=5, n_jobs=1).fit(X, y, feature_names=names).save(tmp_path / "xgb_model.ubj")
    with pytest.raises(FeatureMismatchError, match=r"23 features; 23 are not provided by the engine: missing \['legacy_0'"):
        load_agent("xgb", info.path)


def test_sequence_checkpoint_with_reordered_channels_is_refused(artifacts, make_data):
    from ai_engine.features import SEQUENCE_CHANNELS

    with pytest.raises(FeatureMismatchError, match="reordered"):
        load_agent("patchtst", artifacts["patchtst"][0], available_features=SEQUENCE_CHANNELS[::-1])
    X, _, _ = make_data("sequence", n=3)
    assert load_agent("patchtst", artifacts["patchtst"][0]).predict_proba(X).shape == (3, 3)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_pickle_that_runs_code_is_refused(container, tmp_path):
    marker = tmp_path / "pwned_marker"
    path = tmp_path / "patchtst_model.pth"
    payload = {"format_version": 1, "model": "patchtst", "state_dict": _Exploit(marker)}
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    # A sidecar whose checksum matches, so the refusal must come from the safe unpickler itself.
    meta_path_for(path).write_text(json.dumps({"model": "patchtst", "sha256": sha256_file(path)}))
    with pytest.raises(ModelLoadError, match="refused to unpickle|truncated or corrupt"):
        load_agent("patchtst", path)
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_package():
    root = Path(__file__).resolve().parents[2] / "ai_engine"
    files = [*(root / "agents").rglob("*.py"), *(root / "training").rglob("*.py"), root / "cli" / "train_commands.py"]
    calls = [(p, line) for p in files for line in p.read_text().splitlines()
             if "torch.load(" in line and not line.lstrip().startswith(("#", '"'))]
    assert calls, "expected the safe loader to call torch.load"
    for p, line in calls:
        assert "weights_only=True" in line, f"{p}: {line.strip()}"


@pytest.mark.parametrize("name", ["xgb", "lgbm", "nhits", "patchtst"])
def test_a_hand_edited_sidecar_is_refused(name, artifacts, tmp_path):
    # The feature order and the calibration live in the sidecar, outside the model file's sha256:
    # reordering the names would feed every column to the wrong input without a word.
    path = _copy(artifacts[name][0], tmp_path)
    mp = meta_path_for(path)
    meta = json.loads(mp.read_text())
    mp.write_text(json.dumps(meta | {"feature_names": meta["feature_names"][::-1]}, indent=2))
    with pytest.raises(ModelLoadError, match="sidecar was edited after it was written"):
        load_agent(name, path)


def test_a_directory_or_an_empty_file_is_named_as_such(artifacts, tmp_path):
    (tmp_path / "dir.ubj").mkdir()
    with pytest.raises(ModelLoadError, match="is a directory, not a model file"):
        load_agent("xgb", tmp_path / "dir.ubj")
    empty = _copy(artifacts["xgb"][0], tmp_path)
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"is empty \(0 bytes\)"):
        load_agent("xgb", empty)


def test_an_artifact_from_before_the_class_bias_loads_as_temperature_only(artifacts, tmp_path):
    src, X = artifacts["lgbm"]
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    meta = json.loads(meta_path_for(src).read_text())
    meta.pop("meta_sha256")
    meta["calibration"] = {"method": "temperature", "temperature": meta["calibration"]["temperature"]}
    write_meta(path, meta)
    old = load_agent("lgbm", path)
    assert old.calibration_bias_ == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(old.predict_logits(X), old._raw_logits(X) / old.temperature_)


@pytest.mark.parametrize("bias", [[0.1, 0.2], [0.0, True, 0.0], "0,0,0"])
def test_a_malformed_calibration_bias_is_refused(bias, artifacts, tmp_path):
    src, _ = artifacts["xgb"]
    path = tmp_path / src.name
    path.write_bytes(src.read_bytes())
    meta = json.loads(meta_path_for(src).read_text())
    meta.pop("meta_sha256")
    meta["calibration"]["bias"] = bias
    write_meta(path, meta)
    with pytest.raises(ModelLoadError, match="calibration bias"):
        load_agent("xgb", path)
