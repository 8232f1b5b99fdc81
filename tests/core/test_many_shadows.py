"""Many shadows at once (issue 18, item 1): extra shadows ``SHADOW_<MODEL>_<TAG>_MODEL_PATH``, each
under its own stable key (``patchtst_r2``), on real trained models, the SQLite store and the env file.

None of them can vote (there is no key that would make one vote), none changes a decision or
delays the voters, a typo in their keys is an error, and with the spec's single PatchTST shadow
every output is what it was.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ai_engine.config import load_settings
from ai_engine.engine import DecisionEngine
from ai_engine.exceptions import ConfigError
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.model_slots import applied_config, load_slots
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.core.conftest import make_settings
from tests.core.test_engine import Broken, strip
from tests.reliability.conftest import tiny_torch_model

SPEC_SHADOW = {"PATCHTST_SHADOW_ONLY": "true"}
KEYS = ("patchtst_r2", "patchtst_r3", "nhits_r2")


@pytest.fixture(scope="module")
def retrains(tmp_path_factory) -> dict[str, Path]:
    """Three more real artifacts: two PatchTST retrains and one NHiTS retrain (other seeds)."""
    out = tmp_path_factory.mktemp("retrains")
    return {
        "patchtst_r2": tiny_torch_model("patchtst", out / "patchtst_r2.pth", seed=1),
        "patchtst_r3": tiny_torch_model("patchtst", out / "patchtst_r3.pth", seed=2),
        "nhits_r2": tiny_torch_model("nhits", out / "nhits_r2.pth", seed=1),
    }


def extra_env(retrains: dict[str, Path]) -> dict[str, str]:
    return {f"SHADOW_{k.upper()}_MODEL_PATH": str(p) for k, p in retrains.items()}


def replay(home, models, series, env, **kw):
    settings, _ = make_settings(home, models, **env)
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, series, **kw)
        return settings, engine.store.decisions_json(), engine.store
    finally:
        engine.close()


# -- configuration --------------------------------------------------------------------------------
def test_extra_shadow_keys_give_one_stable_key_each(tmp_path, synthetic_models, retrains):
    settings, _ = make_settings(tmp_path, synthetic_models, **SPEC_SHADOW, **extra_env(retrains))
    assert list(settings.models) == ["xgb", "lgbm", "nhits", "patchtst"]  # the ensemble is still the four
    assert sorted(settings.shadows) == sorted(KEYS)
    for key, cfg in settings.shadows.items():
        assert cfg.name == key and cfg.kind == key.split("_")[0] and cfg.path == retrains[key]
        assert cfg.role.value == "shadow" and cfg.weight == settings.models[cfg.kind].weight
    assert settings.weights() == {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}


BAD_KEYS = [
    ("SHADOW_PATCHTS_R2_MODEL_PATH", "/x.pth", "model"),          # misspelt model
    ("SHADOW_PATCHTST_R2_MODEL_PTH", "/x.pth", "SHADOW_PATCHTST_R2_MODEL_PATH"),  # misspelt suffix
    ("SHADOW_PATCHTST_R2_ROLE", "voter", "never votes"),          # no key makes an extra shadow vote
    ("SHADOW_PATCHTST_R2_WEIGHT", "20", "never votes"),
    ("SHADOW_PATCHTST_R2_SHADOW_ONLY", "false", "never votes"),
    ("shadow_patchtst_r2_model_path", "/x.pth", "SHADOW_PATCHTST_R2_MODEL_PATH"),  # keys are case-sensitive
    ("SHADOW_PATCHTST_MODEL_PATH", "/x.pth", "tag"),              # no tag
    ("SHADOW_PATCHTST_R-2_MODEL_PATH", "/x.pth", "invalid key"),  # not a key systemd or we accept
    ("SHADOW_PATCHTST_SHADOW_MODEL_PATH", "/x.pth", "tag"),       # patchtst_shadow is the spec shadow's name
    ("SHADOW_PATCHTST_R2_MODEL_PATH", "", "empty"),
]


@pytest.mark.parametrize(("key", "value", "said"), BAD_KEYS, ids=[k for k, _, _ in BAD_KEYS])
def test_a_mistake_in_an_extra_shadow_key_is_an_error_in_the_env_file(tmp_path, key, value, said):
    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\n{key}={value}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert said in str(err.value)


@pytest.mark.parametrize(("key", "value", "said"), [b for b in BAD_KEYS if "-" not in b[0]],
                         ids=[k for k, _, _ in BAD_KEYS if "-" not in k])
def test_a_mistake_in_an_extra_shadow_key_is_an_error_in_the_environment_too(tmp_path, key, value, said):
    """Other software sets variables too, so the environment warns on most unknown keys of ours;
    not on these: a misspelt shadow key would silently drop the shadow someone deployed."""
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={"AI_ENGINE_HOME": str(tmp_path), key: value})
    assert said in str(err.value)


def test_two_shadows_of_one_file_are_refused(tmp_path, synthetic_models, retrains):
    same = str(retrains["patchtst_r2"])
    with pytest.raises(ConfigError, match="same file"):
        make_settings(tmp_path, synthetic_models, SHADOW_PATCHTST_R2_MODEL_PATH=same, SHADOW_PATCHTST_R3_MODEL_PATH=same)
    with pytest.raises(ConfigError, match="same file"):
        make_settings(tmp_path, synthetic_models, SHADOW_PATCHTST_R2_MODEL_PATH=str(synthetic_models["patchtst"]))


# -- the decision path ------------------------------------------------------------------------
def test_three_extra_shadows_run_beside_the_spec_shadow_and_change_no_decision(
        tmp_path, synthetic_models, synthetic_series, retrains, caplog):
    """Real models, default process isolation: every decision carries each shadow under its own key
    and model name, with its own telemetry rows, and the votes are those of the spec's setup."""
    _, base, _ = replay(tmp_path / "one", synthetic_models, synthetic_series, SPEC_SHADOW)
    with caplog.at_level(logging.INFO, logger="ai_engine.agents.isolated"):
        settings, got, store = replay(tmp_path / "many", synthetic_models, synthetic_series,
                                      SPEC_SHADOW | extra_env(retrains))
    # each shadow's process is named by its key in the log, not by its kind
    started = {r.getMessage().split("]")[0][1:] for r in caplog.records if "model runs in its own process" in r.getMessage()}
    assert started == {"patchtst", *KEYS}, started
    assert len(got) > 500 and strip(got) == strip(base)
    for d in got:
        mb = d["model_breakdown"]
        assert list(mb) == ["xgb", "lgbm", "nhits", "patchtst", *sorted(KEYS)]
        assert mb["patchtst"]["model"] == "patchtst_shadow" and mb["patchtst"]["shadow"] is True
        for key in KEYS:
            assert mb[key]["model"] == f"{key}_shadow" and mb[key]["shadow"] is True and mb[key]["role"] == "shadow"
            assert mb[key]["status"] == "ok" and mb[key]["sha256"] != mb[key.split("_")[0]]["sha256"]
        assert d["consensus_count"] <= 3 and d["total_models"] == 3
    db = TelemetryStore(settings.store_path, readonly=True).connection
    counts = dict(db.execute("SELECT model, COUNT(*) FROM predictions WHERE status = 'ok' GROUP BY model").fetchall())
    assert all(counts[k] == len(got) for k in (*KEYS, "patchtst")), counts
    payload = json.loads(db.execute("SELECT payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()[0])
    for key in KEYS:
        entry = payload["models"][key]
        assert entry["role"] == "shadow" and entry["status"] == "active" and entry["kind"] == key.split("_")[0]
        assert entry["path"] == str(retrains[key]) and len(entry["sha256"]) == 64
    # the models differ, so each shadow is told apart by its own outputs, not only by its key
    conf = {k: [d["model_breakdown"][k]["confidence"] for d in got] for k in ("patchtst", *KEYS)}
    assert len({tuple(v) for v in conf.values()}) == 4


def test_the_spec_single_shadow_is_unchanged_by_the_feature(tmp_path, synthetic_models):
    """No extra keys: the four models, the spec's names, and an applied configuration (hence its
    config_id) with exactly the fields it had before."""
    settings, _ = make_settings(tmp_path, synthetic_models, **SPEC_SHADOW)
    assert settings.shadows == {}
    slots = load_slots(settings)
    assert list(slots) == ["xgb", "lgbm", "nhits", "patchtst"]
    _, payload = applied_config(settings, slots)
    assert list(payload["models"]) == ["xgb", "lgbm", "nhits", "patchtst"]
    for entry in payload["models"].values():
        assert set(entry) == {"role", "weight", "status", "reason", "path", "version", "sha256", "label_config"}


def test_a_slow_extra_shadow_never_delays_the_voters(
        tmp_path, synthetic_models, synthetic_series, retrains):
    """An extra shadow 0.3 s per call against a 50 ms deadline: its entries are ``late`` and joined
    when they arrive; the decisions are those of the spec's setup without it."""
    short = {k: v.slice(0, 400) for k, v in synthetic_series.items()}
    _, base, _ = replay(tmp_path / "base", synthetic_models, short, SPEC_SHADOW, chunk=64)
    settings, _ = make_settings(tmp_path / "slow", synthetic_models, **SPEC_SHADOW, SHADOW_DEADLINE_MS="50",
                                SHADOW_ISOLATION="thread", SHADOW_PATCHTST_R2_MODEL_PATH=str(retrains["patchtst_r2"]))
    slots = load_slots(settings)
    slots["patchtst_r2"].agent = Broken(slots["patchtst_r2"].agent, "slow")
    store = TelemetryStore(settings.store_path)
    engine = DecisionEngine(settings, store=store, slots=slots, wait_for_shadow=False,
                            governor=Governor(FileGovernorBackend(settings.governor_state_file)))
    replay_series(engine, short, chunk=64)
    engine.close()
    got = store.decisions_json()
    assert len(got) > 50 and strip(got) == strip(base)[: len(got)]
    assert {d["model_breakdown"]["patchtst_r2"]["status"] for d in got} == {"late"}
    # each shadow on a worker of its own: the spec shadow's entries are there (ok, or late on a busy
    # machine at 50 ms) and, like the slow one's, every stored row is its real result
    assert {d["model_breakdown"]["patchtst"]["status"] for d in got} <= {"ok", "late"}
    for key in ("patchtst", "patchtst_r2"):
        rows = store.connection.execute("SELECT DISTINCT status FROM predictions WHERE model=?", (key,)).fetchall()
        assert rows == [("ok",)], key


def test_an_extra_shadow_that_does_not_load_is_inactive_with_its_reason_and_a_reload_refuses_it(
        tmp_path, synthetic_models, synthetic_series, retrains):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(retrains["patchtst_r2"].read_bytes()[:100])
    Path(f"{broken}.meta.json").write_text(Path(f"{retrains['patchtst_r2']}.meta.json").read_text())
    settings, _ = make_settings(tmp_path / "h", synthetic_models, SHADOW_PATCHTST_R2_MODEL_PATH=str(broken))
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, {k: v.slice(0, 300) for k, v in synthetic_series.items()})
        got = engine.store.decisions_json()
        assert got and all(d["model_breakdown"]["patchtst_r2"]["status"] == "inactive" and
                           d["model_breakdown"]["patchtst_r2"]["reason"] and d["total_models"] == 4 for d in got)
        good, _ = make_settings(tmp_path / "h", synthetic_models)
        assert engine.reload(good)  # removing it applies
        assert "patchtst_r2" not in engine.state.slots
        bad, _ = make_settings(tmp_path / "h", synthetic_models, SHADOW_PATCHTST_R2_MODEL_PATH=str(broken))
        assert not engine.reload(bad)  # a reload that would load a broken file is refused whole
        assert "patchtst_r2" not in engine.state.slots
    finally:
        engine.close()


def test_an_env_file_edit_adds_an_extra_shadow_to_a_running_engine_without_touching_the_vote(
        tmp_path, synthetic_models, synthetic_series, retrains):
    """Through the env file and a reload, as ``serve`` does on SIGHUP."""
    from ai_engine.lifecycle.envfile import update_env_file

    env = tmp_path / "ai-engine.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in make_settings(tmp_path, synthetic_models, **SPEC_SHADOW)[1].items()))
    engine = open_engine(load_settings(env), wait_for_shadow=True)
    try:
        replay_series(engine, {k: v.slice(0, 300) for k, v in synthetic_series.items()})
        n_before = len(engine.store.decisions_json())
        update_env_file(env, {"SHADOW_NHITS_R2_MODEL_PATH": str(retrains["nhits_r2"])})
        assert engine.reload(load_settings(env))
        replay_series(engine, synthetic_series, resume=True)
        got = engine.store.decisions_json()
    finally:
        engine.close()
    before, after = got[:n_before], got[n_before:]
    assert before and after and len({d["config_id"] for d in before}) == 1
    assert all("nhits_r2" not in d["model_breakdown"] for d in before)
    assert all(d["model_breakdown"]["nhits_r2"]["model"] == "nhits_r2_shadow" and d["total_models"] == 3
               and d["config_id"] != before[0]["config_id"] for d in after)


def test_the_analysis_judges_each_extra_shadow_on_its_own_rows(tmp_path, synthetic_models, synthetic_series, retrains):
    """``analyze --model patchtst_r2`` reads that key's rows only, of the artifact in force."""
    from ai_engine.analysis import analyze

    settings, got, _ = replay(tmp_path, synthetic_models, synthetic_series,
                              SPEC_SHADOW | extra_env(retrains) | {"SHADOW_ISOLATION": "thread"})
    hours = len(synthetic_series["BTCUSDT"]) + 1.0
    for key in ("patchtst", *KEYS):
        result = analyze(settings.store_path, hours, model=key, all_versions=False, edge=False)
        m = result.primary
        assert m.n_rows == len(got), (key, m.n_rows)
        assert result.selection is not None and result.selection.role == "shadow"
        sha = got[-1]["model_breakdown"][key]["sha256"]
        assert result.selection.sha256 == sha, key
