"""Broken model files at start and at hot reload: the engine keeps deciding, says what it excluded
and why, and a reload that would load a broken file is refused as a whole."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from ai_engine.agents.artifacts import meta_path_for, sha256_file, write_meta
from ai_engine.live import CandleProcessor
from ai_engine.runtime import open_engine
from tests.reliability.conftest import copy_artifact, settings_for

FAULTS = {
    # fault: the reason the engine must give (a regex over the slot's reason)
    "missing": r"does not exist|not found|missing",
    "truncated": r"checksum mismatch|truncated or corrupt",  # the sidecar catches it first
    "wrong_architecture": r"weights do not match the artifact's architecture",
    "nan_weights": r"NaN/inf weights",
    "wrong_sha256": r"checksum mismatch",
    "feature_mismatch": r"feature|channel",
    "wrong_model_kind": r"nhits|NHiTS|kind",
}


def _resave(path: Path, ckpt: dict) -> None:
    torch.save(ckpt, path)
    meta = json.loads(meta_path_for(path).read_text())
    meta |= {"sha256": sha256_file(path), "size": path.stat().st_size}
    if "feature_names" in meta and "feature_names" in ckpt:
        meta["feature_names"] = list(ckpt["feature_names"])
    write_meta(path, meta)


def broken_patchtst(fault: str, models: dict[str, Path], where: Path) -> Path:
    """A PatchTST artifact with ``fault`` injected (sidecar kept consistent unless the fault is the sidecar)."""
    if fault == "missing":
        return where / "nowhere" / "patchtst_model.pth"
    if fault == "wrong_model_kind":
        return copy_artifact(models["nhits"], where / "nhits_as_patchtst.pth")
    path = copy_artifact(models["patchtst"], where / f"patchtst_{fault}.pth")
    if fault == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif fault == "wrong_sha256":
        meta = json.loads(meta_path_for(path).read_text())
        meta["sha256"] = "0" * 64
        write_meta(path, meta)
    else:
        ckpt = torch.load(path, weights_only=True)
        if fault == "wrong_architecture":
            ckpt["net_params"]["d_model"] = 32
        elif fault == "nan_weights":
            key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
            ckpt["state_dict"][key].view(-1)[0] = float("nan")
        elif fault == "feature_mismatch":
            ckpt["feature_names"] = list(ckpt["feature_names"])[::-1]
        _resave(path, ckpt)
    return path


def decide_some(engine, series, start: int, stop: int) -> list:
    proc = CandleProcessor(engine, "1h")
    from ai_engine.data import time_batches

    batches = list(time_batches({s: v.slice(0, stop) for s, v in series.items()}))
    proc.prime(c for b in batches[:start] for c in b)
    return [r for b in batches[start:] for r in proc.process(b)]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_broken_model_at_start_is_excluded_with_its_reason(fault, models, series, tmp_path, caplog):
    bad = dict(models, patchtst=broken_patchtst(fault, models, tmp_path))
    settings = settings_for(tmp_path / "home", bad, ENSEMBLE_MIN_CONSENSUS="2")
    caplog.set_level(logging.INFO)
    engine = open_engine(settings)
    try:
        slot = engine.state.slots["patchtst"]
        assert not slot.active and slot.reason
        assert re.search(FAULTS[fault], slot.reason), slot.reason
        assert engine.state.config_payload["models"]["patchtst"]["status"] == "inactive"
        records = decide_some(engine, series, 120, 180)
    finally:
        engine.close()
    assert len(records) == 2 * 60  # it keeps deciding, every candle
    for rec in records:
        assert rec.decision.total_models == 3
        p = next(r for r in rec.decision.results if r.model == "patchtst")
        assert p.status.value == "inactive" and p.prediction is None and p.reason == slot.reason
    assert "[PatchTST] ❌ model not loaded, excluded from the ensemble" in caplog.text


@pytest.mark.parametrize("fault", list(FAULTS))
def test_reload_onto_a_broken_model_is_refused_and_the_old_config_keeps_deciding(fault, models, series, tmp_path, caplog):
    settings = settings_for(tmp_path / "home", models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    try:
        before = engine.state.config_id
        first = decide_some(engine, series, 120, 150)
        bad = dict(models, patchtst=broken_patchtst(fault, models, tmp_path))
        new = settings_for(tmp_path / "home", bad, ENSEMBLE_MIN_CONSENSUS="2")
        caplog.set_level(logging.ERROR)
        assert engine.reload(new) is False
        assert engine.state.config_id == before and engine.state.slots["patchtst"].active
        assert f"reload refused, previous configuration {before} stays in force" in caplog.text
        after = decide_some(engine, series, 150, 180)
    finally:
        engine.close()
    assert len(first) == len(after) == 60
    assert all(r.config_id == before and r.decision.total_models == 4 for r in first + after)
    stored = {row[0] for row in engine.store.connection.execute("SELECT DISTINCT config_id FROM decisions")}
    assert stored == {before}


def test_reload_onto_good_models_is_applied_between_batches(models, series, tmp_path):
    """Control for the refusals above: the same reload with a healthy file is applied."""
    settings = settings_for(tmp_path / "home", models, ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    try:
        before = engine.state.config_id
        assert engine.reload(settings_for(tmp_path / "home", models, ENSEMBLE_MIN_CONSENSUS="2", PATCHTST_SHADOW_ONLY="true"))
        records = decide_some(engine, series, 120, 140)
    finally:
        engine.close()
    assert engine.state.config_id != before
    assert all(r.config_id == engine.state.config_id and r.decision.total_models == 3 for r in records)
