"""Configuration mistakes refused at parse, naming the key, instead of changing what votes or where
the kill switch is read; env-file edits keep the file's owner, group and symlink."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pytest

from ai_engine.config import load_settings
from ai_engine.enums import ModelRole
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle.envfile import parse_env_text, read_env_file, update_env_file


def _env(tmp_path, text: str):
    env = tmp_path / "ai-engine.env"
    env.write_text(text)
    return env


@pytest.mark.parametrize("key", ["patchtst_shadow_only", "Patchtst_Shadow_Only", "patchtst_shadow_olny"])
def test_a_key_in_another_case_is_refused_with_its_spelling(tmp_path, key):
    with pytest.raises(ConfigError, match=f"{key} .*did you mean PATCHTST_SHADOW_ONLY"):
        load_settings(_env(tmp_path, f"{key}=true\n"), environ={})
    with pytest.raises(ConfigError, match=f"{key} .*did you mean PATCHTST_SHADOW_ONLY"):
        load_settings(None, environ={key: "true"})


def test_an_unknown_key_with_one_of_our_prefixes_in_lower_case_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown configuration key ensemble_votes"):
        load_settings(_env(tmp_path, "ensemble_votes=2\n"), environ={})


def test_a_key_removed_from_the_env_file_no_longer_applies_from_the_process_environment(tmp_path, caplog):
    """systemd loads the env file into the environment at start; ``models activate`` then removes
    PATCHTST_SHADOW_ONLY from the file and sends SIGHUP: the reload must make PatchTST vote."""
    env = _env(tmp_path, "PATCHTST_SHADOW_ONLY=true\nXGB_WEIGHT=25\n")
    environ_at_start = read_env_file(env)
    assert load_settings(env, environ=environ_at_start).models["patchtst"].role is ModelRole.SHADOW
    update_env_file(env, unset=("PATCHTST_SHADOW_ONLY",))
    with caplog.at_level(logging.WARNING, logger="ai_engine.config"):
        s = load_settings(env, environ=environ_at_start)
    assert s.models["patchtst"].role is ModelRole.VOTER and "PATCHTST_SHADOW_ONLY" not in s.raw
    assert "ignoring PATCHTST_SHADOW_ONLY from the process environment" in caplog.text


def test_a_voter_of_weight_zero_is_refused(tmp_path):
    weights = "XGB_WEIGHT=45\nLGBM_WEIGHT=25\nNHITS_WEIGHT=30\nPATCHTST_WEIGHT=0\n"
    with pytest.raises(ConfigError, match=r"PATCHTST_WEIGHT=0 but patchtst is a voter.*PATCHTST_ROLE=disabled"):
        load_settings(_env(tmp_path, weights), environ={})
    s = load_settings(_env(tmp_path, weights + "PATCHTST_SHADOW_ONLY=true\n"), environ={})
    assert s.models["patchtst"].role is ModelRole.SHADOW


@pytest.mark.parametrize("text", [
    "ENSEMBLE_MIN_CONSENSUS=4\nPATCHTST_SHADOW_ONLY=true\n",
    "ENSEMBLE_MIN_CONSENSUS=1\nXGB_ROLE=disabled\nLGBM_ROLE=disabled\nNHITS_ROLE=disabled\nPATCHTST_ROLE=disabled\n",
])
def test_a_consensus_no_set_of_voters_can_reach_is_refused(tmp_path, text):
    with pytest.raises(ConfigError, match="ENSEMBLE_MIN_CONSENSUS=.* no decision could ever trade"):
        load_settings(_env(tmp_path, text), environ={})


@pytest.mark.parametrize("url", ["notaurl", "http://x", "redis://127.0.0.1:notaport", "redis://:s3cret@h:99999/0"])
def test_a_malformed_redis_url_is_refused_at_parse_without_its_password(tmp_path, url):
    with pytest.raises(ConfigError, match="REDIS_URL is not valid") as exc:
        load_settings(_env(tmp_path, f"REDIS_URL={url}\n"), environ={})
    assert "s3cret" not in str(exc.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/1", "unix:///run/redis.sock"])
def test_redis_urls_of_the_three_schemes_are_accepted(tmp_path, url):
    assert load_settings(_env(tmp_path, f"REDIS_URL={url}\n"), environ={}).redis_url == url


def test_redis_governor_without_a_redis_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="GOVERNOR_BACKEND=redis needs REDIS_URL"):
        load_settings(_env(tmp_path, "GOVERNOR_BACKEND=redis\n"), environ={})


@pytest.mark.parametrize("args", [["status"], ["governor", "status"], ["governor", "kill", "--reason", "t"]])
def test_commands_on_a_malformed_redis_url_say_so_without_a_traceback(tmp_path, capsys, args):
    from ai_engine.cli.main import main

    env = _env(tmp_path, f"AI_ENGINE_HOME={tmp_path / 'home'}\nREDIS_URL=redis://127.0.0.1:notaport\n")
    assert main([*args, "--env-file", str(env)]) == 2
    assert "REDIS_URL is not valid" in capsys.readouterr().err


def test_empty_values_are_allowed_where_documented_and_otherwise_name_the_key(tmp_path):
    assert [ln.value for ln in parse_env_text("A=\nB=''\n") if ln.key] == ["", ""]
    s = load_settings(_env(tmp_path, "REDIS_URL=\nAI_ENGINE_SHARD=\n"), environ={})
    assert s.redis_url == "" and s.shard is None
    for key in ("XGB_SHADOW_ONLY", "AI_ENGINE_HOME", "AI_ENGINE_REDIS_PREFIX"):
        with pytest.raises(ConfigError, match=f"{key} is empty"):
            load_settings(_env(tmp_path, f"{key}=\n"), environ={})


@pytest.mark.parametrize("text", ["XGB_WEIGHT=2_5\nLGBM_WEIGHT=25\n", "ENSEMBLE_MIN_CONSENSUS=0_3\n"])
def test_a_number_with_an_underscore_is_refused(tmp_path, text):
    with pytest.raises(ConfigError, match="without '_'"):
        load_settings(_env(tmp_path, text), environ={})


def test_a_comment_after_a_value_is_refused_and_a_quoted_hash_is_kept(tmp_path):
    """systemd keeps ``# c`` in the value (a comment starts only a line): refused rather than used."""
    with pytest.raises(ConfigError, match=r"ai-engine.env:1: value '/x # c' holds a comment"):
        load_settings(_env(tmp_path, "AI_ENGINE_HOME=/x # c\n"), environ={})
    with pytest.raises(ConfigError, match="holds a comment"):
        parse_env_text("AI_ENGINE_REDIS_PREFIX=\t# none\n")
    assert load_settings(_env(tmp_path, 'AI_ENGINE_HOME="/x # c"\n'), environ={}).home == Path("/x # c")
    assert parse_env_text("REDIS_URL=redis://:p#w@h:1/0\n")[0].value == "redis://:p#w@h:1/0"


def test_an_edit_writes_through_a_symlink(tmp_path):
    target = _env(tmp_path, "XGB_WEIGHT=25\n")
    link = tmp_path / "link.env"
    link.symlink_to(target.name)
    assert update_env_file(link, {"XGB_WEIGHT": "30"})
    assert link.is_symlink() and read_env_file(target) == {"XGB_WEIGHT": "30"}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner and group needs root")
def test_an_edit_keeps_the_mode_owner_and_group(tmp_path):
    env = _env(tmp_path, "XGB_WEIGHT=25\n")
    os.chown(env, 4321, 1234)  # root:qt 640 in production
    env.chmod(0o640)
    assert update_env_file(env, {"XGB_WEIGHT": "30"})
    st = env.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 1234, 0o640)


def test_decision_cpu_is_auto_off_or_a_cpu_this_process_may_use():
    from ai_engine.cpu_affinity import ALL_CPUS

    def cpu(value):
        return load_settings(None, environ={"AI_ENGINE_DECISION_CPU": value}).decision_cpu

    assert cpu("off") is None and cpu("OFF") is None
    assert cpu("auto") == (max(ALL_CPUS) if len(ALL_CPUS) > 1 else None)
    assert cpu(str(min(ALL_CPUS))) == min(ALL_CPUS)
    for bad in ("fast", "-1", "1.5", "0x1"):
        with pytest.raises(ConfigError, match=rf"AI_ENGINE_DECISION_CPU='{re.escape(bad)}' is not valid: expected auto"):
            cpu(bad)
    with pytest.raises(ConfigError, match=r"AI_ENGINE_DECISION_CPU='4096' is not valid: this process may use CPUs"):
        cpu("4096")


@pytest.mark.parametrize("value", ["0", "3", "two", ""])
def test_voter_lanes_other_than_1_or_2_are_refused_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match="AI_ENGINE_VOTER_LANES"):
        load_settings(_env(tmp_path, f"AI_ENGINE_VOTER_LANES={value}\n"), environ={})
    assert load_settings(_env(tmp_path, "AI_ENGINE_VOTER_LANES=1\n"), environ={}).voter_lanes == 1
