"""Registry staging and env edits: refused changes leave everything byte-identical; accepted ones are audited."""

from __future__ import annotations

import json
import shutil

import pytest

from ai_engine.agents.artifacts import write_meta
from ai_engine.config import load_settings
from ai_engine.exceptions import ConfigError, ModelLoadError
from ai_engine.lifecycle.activation import activate, parse_weights, shadow, stage
from ai_engine.lifecycle.audit import read_audit
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.lifecycle.registry import Registry
from ai_engine.lifecycle.rollback import rollback


def _settings(dep):
    return load_settings(dep.env)


def test_stage_copies_artifact_with_checksum_and_report(deployment, artifacts, cli):
    env_before = deployment.env.read_text()
    res = cli("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst", "--env-file", str(deployment.env))
    assert res.exit_code == 0, res.output
    (sv,) = Registry(deployment.models_dir).versions("patchtst")
    meta = json.loads((artifacts.patchtst_new.parent / "model.meta.json").read_text())
    assert sv.version == meta["version"] and sv.sha256 == meta["sha256"]
    assert sv.path == deployment.models_dir / "patchtst" / f"{sv.version}.pth" and sv.path.is_file()
    assert (sv.path.parent / f"{sv.path.name}.meta.json").is_file()
    assert "test" in sv.report
    # staging is idempotent and never changes what the engine loads: only the env file says that
    assert cli("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst",
               "--env-file", str(deployment.env)).exit_code == 0
    assert len(Registry(deployment.models_dir).versions("patchtst")) == 1
    assert deployment.env.read_text() == env_before
    assert [e["what"] for e in read_audit(deployment.home)] == ["models.stage"]
    listing = cli("models", "list", "--json", "--env-file", str(deployment.env))
    assert listing.exit_code == 0
    (row,) = [r for r in json.loads(listing.output) if r["version"] == sv.version]
    assert row["in_use"] is False and row["role"] == "-"


def test_stage_refuses_wrong_checksum_and_wrong_kind(deployment, artifacts, tmp_path):
    bad = tmp_path / "bad" / "patchtst.pth"
    bad.parent.mkdir()
    shutil.copyfile(artifacts.patchtst_new, bad)
    meta = json.loads((artifacts.patchtst_new.parent / "model.meta.json").read_text())
    write_meta(bad, meta | {"sha256": "0" * 64})  # a sidecar of another build
    env_before = deployment.env.read_bytes()
    with pytest.raises(ModelLoadError, match="checksum"):
        stage(_settings(deployment), "patchtst", bad)
    with pytest.raises(ModelLoadError):
        stage(_settings(deployment), "xgb", artifacts.patchtst_new)  # a torch file is not an xgb model
    assert Registry(deployment.models_dir).versions() == []
    assert deployment.env.read_bytes() == env_before and read_audit(deployment.home) == []


def test_verify_detects_a_tampered_staged_file(deployment, artifacts, cli):
    sv, _ = stage(_settings(deployment), "patchtst", artifacts.patchtst_new)
    ok = cli("models", "verify", "--env-file", str(deployment.env))
    assert ok.exit_code == 0, ok.output
    with open(sv.path, "ab") as f:
        f.write(b"x")
    bad = cli("models", "verify", "--env-file", str(deployment.env))
    assert bad.exit_code == 1 and "FAIL" in bad.output and sv.version in bad.output
    env_before = deployment.env.read_bytes()
    with pytest.raises(ModelLoadError, match="changed after staging"):
        shadow(_settings(deployment), "patchtst")
    assert deployment.env.read_bytes() == env_before


@pytest.mark.parametrize("arg", ["xgb=27.5,lgbm=27.5,nhits", "xgb=27.5;lgbm=27.5", "xgb=abc", "foo=10",
                                 "xgb=10,xgb=20", "", "xgb=-5", "xgb=27.5,lgbm=27.5,nhits=41"])
def test_malformed_or_unbalanced_rebalance_changes_nothing(deployment, cli, arg):
    before = deployment.env.read_bytes()
    res = cli("models", "activate", "patchtst", "--weight", "5", "--rebalance", arg, "--force",
              "--env-file", str(deployment.env))
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError)
    msg = str(res.exception)
    assert "rebalance" in msg or "sum to 100" in msg
    assert deployment.env.read_bytes() == before
    assert read_audit(deployment.home) == []


def test_parse_weights():
    assert parse_weights("xgb=27.5, lgbm=27.5,nhits=40") == {"xgb": 27.5, "lgbm": 27.5, "nhits": 40.0}


def test_activation_needs_ready_gate_or_force(deployment):
    before = deployment.env.read_bytes()
    with pytest.raises(ConfigError, match="gate verdict is .*--force"):
        activate(_settings(deployment), "patchtst", 20.0)  # empty store: verdict cannot be READY
    assert deployment.env.read_bytes() == before
    res = activate(_settings(deployment), "patchtst", 5.0, {"xgb": 27.5, "lgbm": 27.5, "nhits": 40.0}, force=True)
    assert res.changed
    vals = read_env_file(deployment.env)
    assert (vals["PATCHTST_WEIGHT"], vals["XGB_WEIGHT"], vals["NHITS_WEIGHT"]) == ("5", "27.5", "40")
    assert deployment.env.read_text().startswith("# test deployment\n")  # comments kept
    (entry,) = read_audit(deployment.home)
    assert entry["forced"] is True and entry["gate"] != "READY"
    assert entry["before"]["PATCHTST_WEIGHT"] == "20" and entry["after"]["PATCHTST_WEIGHT"] == "5"
    backup = deployment.home / "env-backups"
    assert [p.read_bytes() for p in backup.iterdir()] == [before]


def test_shadow_then_rollbacks_edit_the_env_file(deployment, artifacts):
    from ai_engine.lifecycle.rollback import backup

    original = deployment.env.read_bytes()
    bk = backup(_settings(deployment))
    assert set(bk.models) == {"xgb", "lgbm", "nhits", "patchtst"} and bk.env_backup.read_bytes() == original
    sv, _ = stage(_settings(deployment), "patchtst", artifacts.patchtst_new)
    shadow(_settings(deployment), "patchtst")
    vals = read_env_file(deployment.env)
    assert vals["PATCHTST_MODEL_PATH"] == str(sv.path) and vals["PATCHTST_SHADOW_ONLY"] == "true"
    assert not shadow(_settings(deployment), "patchtst").changed  # idempotent
    shadowed = deployment.env.read_bytes()
    with pytest.raises(ConfigError, match="rollback --fast makes patchtst vote; its gate verdict is INCONCLUSIVE"):
        rollback(_settings(deployment), "fast")  # no shadow predictions of the new file yet
    assert deployment.env.read_bytes() == shadowed
    with pytest.raises(ConfigError, match="--force applies to --fast only"):
        rollback(_settings(deployment), "full", force=True)
    rollback(_settings(deployment), "fast", force=True)
    assert "PATCHTST_SHADOW_ONLY" not in read_env_file(deployment.env)
    rollback(_settings(deployment), "full")
    vals = read_env_file(deployment.env)
    assert vals["PATCHTST_MODEL_PATH"] == str(bk.models["patchtst"]) and "PATCHTST_SHADOW_ONLY" not in vals
    rollback(_settings(deployment), "nuclear")
    assert deployment.env.read_bytes() == original
    whats = [e["what"] for e in read_audit(deployment.home)]
    assert whats == ["models.backup", "models.stage", "models.shadow patchtst", "models.rollback.fast patchtst",
                     "models.rollback.full patchtst", "models.rollback.nuclear"]


def test_edit_that_makes_config_invalid_is_refused(deployment):
    from ai_engine.lifecycle.edits import edit_env

    before = deployment.env.read_bytes()
    with pytest.raises(ConfigError, match="left unchanged.*PATCHTST_SHADOW_ONLY"):
        edit_env(_settings(deployment), "test", {"PATCHTST_SHADOW_ONLY": "ture"})
    assert deployment.env.read_bytes() == before
    assert not list(deployment.env.parent.glob(".ai-engine.env.edit-*"))


@pytest.mark.parametrize("rows", ["this file in shadow", "another file in shadow", "this file voting"])
def test_the_gate_judges_only_the_shadow_predictions_of_the_file_it_would_make_vote(deployment, rows):
    from ai_engine.agents.artifacts import sha256_file
    from ai_engine.enums import ModelRole
    from ai_engine.lifecycle.gate import check_gate
    from ai_engine.model_slots import resolve_model_path
    from tests.analysis.conftest import build_store

    settings = _settings(deployment)
    path, _ = resolve_model_path(settings, "patchtst")
    sha = sha256_file(path)
    build_store(settings.store_path, n=1500, shadow="skilled",
                shadow_sha="ef" * 32 if rows == "another file in shadow" else sha,
                shadow_role=ModelRole.VOTER if rows == "this file voting" else ModelRole.SHADOW)
    gate = check_gate(settings, "patchtst", hours=24 * 365)
    if rows == "this file in shadow":
        assert gate.verdict == "READY" and f"1500 shadow predictions of {path.name}" in gate.detail
    else:
        assert gate.verdict == "INCONCLUSIVE" and "no shadow predictions of" in gate.detail


def test_verify_detects_a_hand_edited_sidecar(deployment, artifacts, cli):
    from ai_engine.agents.artifacts import meta_path_for

    sv, _ = stage(_settings(deployment), "patchtst", artifacts.patchtst_new)
    mp = meta_path_for(sv.path)
    meta = json.loads(mp.read_text())
    mp.write_text(json.dumps(meta | {"calibration": {"method": "temperature", "temperature": 1e-6}}))
    bad = cli("models", "verify", "--env-file", str(deployment.env))
    assert bad.exit_code == 1 and "sidecar was edited after it was written" in " ".join(bad.output.split())


def test_after_a_full_rollback_the_load_line_answers_the_specs_baseline_check(deployment, artifacts, caplog):
    import logging
    import re

    from ai_engine.lifecycle.rollback import backup
    from ai_engine.model_slots import load_slot

    backup(_settings(deployment))
    stage(_settings(deployment), "patchtst", artifacts.patchtst_new)
    shadow(_settings(deployment), "patchtst")
    with caplog.at_level(logging.INFO, logger="ai_engine"):
        load_slot(_settings(deployment), "patchtst")
    assert not re.search("PatchTST.*baseline", caplog.text)
    rollback(_settings(deployment), "full")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ai_engine"):
        load_slot(_settings(deployment), "patchtst")
    # the spec: journalctl ... | grep "PatchTST.*baseline"
    assert re.search(r"\[PatchTST\] ✅ Model weights loaded from patchtst_model_BASELINE_\d{8}\.pth \(baseline\)", caplog.text)


@pytest.mark.parametrize("weight", [0.5, 5.0, 33.3])
def test_the_suggested_rebalance_is_one_that_works(deployment, weight):
    import re

    with pytest.raises(ConfigError, match="weights must sum to 100") as err:
        activate(_settings(deployment), "patchtst", weight)  # the others stay 25/25/30
    hint = re.search(r"e\.g\. --rebalance (\S+)", str(err.value)).group(1)
    assert activate(_settings(deployment), "patchtst", weight, parse_weights(hint), force=True).changed
    weights = {k: float(v) for k, v in read_env_file(deployment.env).items() if k.endswith("_WEIGHT")}
    assert sum(weights.values()) == pytest.approx(100.0) and weights["PATCHTST_WEIGHT"] == weight


def test_a_registry_index_that_is_not_a_file_is_an_error(deployment):
    (deployment.models_dir / "registry.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match="registry index .* is not a file"):
        Registry(deployment.models_dir).verify()


def test_two_editors_at_once_lose_no_edit(deployment):
    """An operator's command and the policy's process editing at the same moment: each edit reads the
    file under one lock, so both end up in it and the audit log has every one of them."""
    import subprocess
    import sys

    script = ("import sys; from ai_engine.config import load_settings; from ai_engine.lifecycle.edits import edit_env\n"
              "env, key, base = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
              "for i in range(1, 16):\n"
              "    edit_env(load_settings(env), f'test {key}', {key: str(base + i)})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(deployment.env), key, str(base)])
             for key, base in (("FLATLINE_WINDOW", 100), ("AI_ENGINE_STREAM_MAXLEN", 5000))]
    assert [p.wait(120) for p in procs] == [0, 0]
    vals = read_env_file(deployment.env)
    assert (vals["FLATLINE_WINDOW"], vals["AI_ENGINE_STREAM_MAXLEN"]) == ("115", "5015")
    edits = [e for e in read_audit(deployment.home) if e["what"].startswith("test ")]
    assert len(edits) == 30
    for key, base in (("FLATLINE_WINDOW", 100), ("AI_ENGINE_STREAM_MAXLEN", 5000)):  # each saw the one before
        mine = [e for e in edits if e["what"] == f"test {key}"]
        assert [e["before"][key] for e in mine[1:]] == [str(base + i) for i in range(1, 15)]

