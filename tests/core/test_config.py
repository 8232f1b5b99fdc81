"""Strict configuration: typos stop the engine, roles come from data, weights must sum to 100."""

from __future__ import annotations

import pytest

from ai_engine.config import load_settings
from ai_engine.enums import ModelRole
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle.envfile import parse_env_text, read_env_file, update_env_file


def test_defaults_are_the_spec_policy():
    s = load_settings(None, environ={})
    assert s.weights() == {"xgb": 25, "lgbm": 25, "nhits": 30, "patchtst": 20}
    assert set(s.roles().values()) == {ModelRole.VOTER} and s.min_consensus == 3


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", "True"])
def test_shadow_only_true_makes_patchtst_shadow(value):
    assert load_settings(None, environ={"PATCHTST_SHADOW_ONLY": value}).models["patchtst"].role is ModelRole.SHADOW


def test_misspelt_boolean_stops_with_key_and_value(tmp_path):
    env = tmp_path / "ai-engine.env"
    env.write_text("PATCHTST_SHADOW_ONLY=ture\n")
    with pytest.raises(ConfigError, match=r"PATCHTST_SHADOW_ONLY='ture'"):
        load_settings(env, environ={})


def test_misspelt_key_is_refused_with_suggestion(tmp_path):
    env = tmp_path / "ai-engine.env"
    env.write_text("PATCHTST_SHADOW_OLNY=true\n")
    with pytest.raises(ConfigError, match="did you mean PATCHTST_SHADOW_ONLY"):
        load_settings(env, environ={})
    with pytest.raises(ConfigError, match="PATCHTST_SHADOW_OLNY"):
        load_settings(None, environ={"PATCHTST_SHADOW_OLNY": "true"})


def test_any_model_can_be_shadowed_or_disabled():
    s = load_settings(None, environ={"XGB_ROLE": "shadow", "NHITS_ROLE": "disabled", "ENSEMBLE_MIN_CONSENSUS": "2"})
    assert s.models["xgb"].role is ModelRole.SHADOW and s.models["nhits"].role is ModelRole.DISABLED


def test_contradicting_role_flags_are_refused():
    with pytest.raises(ConfigError, match="contradicts"):
        load_settings(None, environ={"PATCHTST_SHADOW_ONLY": "true", "PATCHTST_ROLE": "voter"})


def test_weights_must_sum_to_100():
    ok = load_settings(None, environ={"XGB_WEIGHT": "27.5", "LGBM_WEIGHT": "27.5", "NHITS_WEIGHT": "40", "PATCHTST_WEIGHT": "5"})
    assert ok.weights()["patchtst"] == 5
    with pytest.raises(ConfigError, match="sum to 100"):
        load_settings(None, environ={"PATCHTST_WEIGHT": "5"})


def test_env_file_is_authoritative_over_process_environment(tmp_path):
    env = tmp_path / "e.env"
    env.write_text("# comment\nPATCHTST_SHADOW_ONLY=false\n")
    s = load_settings(env, environ={"PATCHTST_SHADOW_ONLY": "true"})
    assert s.models["patchtst"].role is ModelRole.VOTER


def test_env_parser_follows_systemd_rules(tmp_path):
    lines = parse_env_text('# c\n; c2\nexport A=1\nB="two words"\nC=\'x y\'\n\n')
    assert {ln.key: ln.value for ln in lines if ln.key} == {"A": "1", "B": "two words", "C": "x y"}
    with pytest.raises(ConfigError, match="duplicate key A"):
        parse_env_text("A=1\nA=2\n", "f.env")
    with pytest.raises(ConfigError, match="f.env:1: expected KEY=VALUE"):
        parse_env_text("garbage line\n", "f.env")


def test_update_env_file_is_keyed_idempotent_and_keeps_comments(tmp_path):
    env = tmp_path / "e.env"
    env.write_text("# keep me\nPATCHTST_SHADOW_ONLY=true\nXGB_WEIGHT=25\n")
    assert update_env_file(env, {"PATCHTST_MODEL_PATH": "/m/p.pth", "XGB_WEIGHT": "30"}, unset=("PATCHTST_SHADOW_ONLY",))
    assert not update_env_file(env, {"PATCHTST_MODEL_PATH": "/m/p.pth", "XGB_WEIGHT": "30"}, unset=("PATCHTST_SHADOW_ONLY",))
    text = env.read_text()
    assert text.startswith("# keep me\n") and text.count("XGB_WEIGHT") == 1
    assert read_env_file(env) == {"XGB_WEIGHT": "30", "PATCHTST_MODEL_PATH": "/m/p.pth"}


@pytest.mark.parametrize("key,value", [("ENSEMBLE_MIN_CONSENSUS", "5"), ("ENSEMBLE_MIN_CONSENSUS", "three"),
                                       ("AI_ENGINE_INTERVAL", "7m"), ("AI_ENGINE_SHARD", "2/2"), ("XGB_ROLE", "boss")])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        load_settings(None, environ={key: value})


def test_retention_never_cuts_into_the_observation_window():
    assert load_settings(None, environ={"AI_ENGINE_RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(ConfigError, match="7-day observation window"):
        load_settings(None, environ={"AI_ENGINE_RETENTION_DAYS": "2"})


def test_env_example_documents_every_key_and_loads():
    from pathlib import Path

    from ai_engine.config import KEYS

    example = Path(__file__).resolve().parents[2] / "deploy" / "ai-engine.env.example"
    text = example.read_text()
    assert [k for k in KEYS if f"{k}=" not in text] == []
    load_settings(example, environ={})


def test_the_model_path_help_names_the_file_loaded_by_default():
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME
    from ai_engine.config import KEYS, MODEL_ENV_PREFIX

    for model, prefix in MODEL_ENV_PREFIX.items():
        assert f"default: {DEFAULT_ARTIFACT_NAME[model]} in the models dir" in KEYS[f"{prefix}_MODEL_PATH"].help
