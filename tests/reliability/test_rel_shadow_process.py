"""Shadow models in their own processes (SHADOW_ISOLATION=process, the default): the same
predictions as in the engine's process, a killed child costs only its own rows and is started
again, a reload that keeps the shadow keeps its process, and nothing is left running at close."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import ai_engine.agents.isolated as isolated
from ai_engine.agents import load_agent
from ai_engine.agents.isolated import IsolatedAgent
from ai_engine.exceptions import ConfigError
from ai_engine.runtime import open_engine
from tests.reliability.conftest import copy_artifact, settings_for
from tests.reliability.test_rel_model_faults import decide_some


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not running either
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("model", ["patchtst", "xgb"])
def test_isolated_agent_predicts_exactly_what_the_agent_does(model, models):
    agent = load_agent(model, models[model])
    rng = np.random.default_rng(0)
    if agent.input_kind == "sequence":
        X = rng.normal(size=(37, agent.seq_len_, len(agent.feature_names_in_))).astype(np.float32)
    else:
        X = rng.normal(size=(37, len(agent.feature_names_in_)))
    iso = IsolatedAgent(agent, models[model])
    try:
        assert iso.pid != os.getpid() and _alive(iso.pid)
        assert iso.predict(X) == agent.predict(X)
        assert (iso.version, iso.sha256, iso.input_kind) == (agent.version, agent.sha256, agent.input_kind)
        with pytest.raises(isolated.ModelProcessError, match="DataError: .*inf"):  # the child's input checks, as text
            iso.predict(np.full_like(X, np.inf))
        assert iso.predict(X[:1]) == agent.predict(X[:1])  # and it goes on serving
    finally:
        iso.close()
    assert not _alive(iso.pid)


def test_a_child_that_cannot_load_the_artifact_fails_its_calls_with_the_reason(models, tmp_path, monkeypatch):
    monkeypatch.setattr(isolated, "RESTART_AFTER_S", 3600.0)
    agent = load_agent("patchtst", models["patchtst"])
    other = copy_artifact(models["nhits"], tmp_path / "patchtst_model.pth")  # swapped after the parent loaded
    iso = IsolatedAgent(agent, other)
    try:
        assert "model process did not start" in iso.wait_started(timeout=120)
        X = np.zeros((2, agent.seq_len_, len(agent.feature_names_in_)), dtype=np.float32)
        with pytest.raises(isolated.ModelProcessError, match="did not start: ModelLoadError: .*wrong model kind"):
            iso.predict(X)
        with pytest.raises(isolated.ModelProcessError, match="a new one starts after 3600 s"):
            iso.predict(X)  # no second process until the back-off has passed
    finally:
        iso.close()


def test_a_child_closed_while_it_starts_is_not_reported_as_a_failure(models, caplog):
    # A run that ends within a second of its start (a short replay, a refused reload) closes the
    # shadow's child before it is ready; that was logged as "did not start: not ready after 120 s".
    agent = load_agent("patchtst", models["patchtst"])
    caplog.set_level("INFO", logger="ai_engine.agents.isolated")
    iso = IsolatedAgent(agent, models["patchtst"])
    iso.close()
    assert iso.wait_started(timeout=30) == "model process did not start: stopped before it was ready"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert "stopped before it was ready" in caplog.text


def test_engine_runs_the_shadow_in_its_own_process_and_ends_it_at_close(models, series, tmp_path):
    settings = settings_for(tmp_path / "home", models, PATCHTST_SHADOW_ONLY="true", ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        shadow = engine.state.slots["patchtst"].agent
        assert shadow.isolated and _alive(shadow.pid)
        assert not getattr(engine.state.slots["nhits"].agent, "isolated", False)  # voters stay in the engine
        records = decide_some(engine, series, 120, 160)
        pid = shadow.pid
    finally:
        engine.close()
    assert not _alive(pid)
    assert len(records) == 80
    for rec in records:
        entry = rec.decision.results[-1]
        assert entry.model == "patchtst" and entry.shadow and entry.status.value == "ok"
        assert rec.decision.total_models == 3  # the shadow never voted
    # the same decisions and shadow predictions as with the shadow on a thread of the engine
    threaded = open_engine(settings_for(tmp_path / "home2", models, PATCHTST_SHADOW_ONLY="true",
                                        ENSEMBLE_MIN_CONSENSUS="2", SHADOW_ISOLATION="thread"), wait_for_shadow=True)
    try:
        assert not getattr(threaded.state.slots["patchtst"].agent, "isolated", False)
        again = decide_some(threaded, series, 120, 160)
    finally:
        threaded.close()
    def what(recs):  # everything but the timings
        return [(r.decision.action, r.decision.confidence, r.decision.scores,
                 [(x.model, x.role, x.status, x.prediction) for x in r.decision.results]) for r in recs]

    assert what(again) == what(records)


def test_killed_shadow_process_costs_only_its_rows_and_is_started_again(models, series, tmp_path, monkeypatch):
    monkeypatch.setattr(isolated, "RESTART_AFTER_S", 0.0)
    settings = settings_for(tmp_path / "home", models, PATCHTST_SHADOW_ONLY="true", ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        shadow = engine.state.slots["patchtst"].agent
        assert shadow.wait_started(timeout=120) is None
        first_pid = shadow.pid
        os.kill(first_pid, signal.SIGKILL)
        hit = decide_some(engine, series, 120, 121)  # the call that finds the child gone
        back = decide_some(engine, series, 121, 130)
    finally:
        engine.close()
    assert all(r.decision.total_models == 3 for r in hit + back)  # the voters never noticed
    lost = hit[0].decision.results[-1]
    assert lost.status.value == "error" and "model process exited with code -9" in lost.reason
    assert shadow.pid != first_pid
    assert all(r.decision.results[-1].status.value == "ok" for r in back)


def test_reload_keeps_the_process_of_an_unchanged_shadow(models, series, tmp_path):
    settings = settings_for(tmp_path / "home", models, PATCHTST_SHADOW_ONLY="true", ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings)
    try:
        pid = engine.state.slots["patchtst"].agent.pid
        assert engine.reload(settings_for(tmp_path / "home", models, PATCHTST_SHADOW_ONLY="true",
                                          ENSEMBLE_MIN_CONSENSUS="3"))
        assert engine.state.slots["patchtst"].agent.pid == pid
        # activated: it votes from the engine's process, and its child ends
        assert engine.reload(settings_for(tmp_path / "home", models, ENSEMBLE_MIN_CONSENSUS="3"))
        assert not getattr(engine.state.slots["patchtst"].agent, "isolated", False)
        decide_some(engine, series, 120, 125)
    finally:
        engine.close()
    import gc

    gc.collect()
    assert not _alive(pid)


def test_shadow_isolation_is_checked_strictly(models, tmp_path):
    with pytest.raises(ConfigError, match="SHADOW_ISOLATION='processes' is not valid: expected process or thread"):
        settings_for(tmp_path / "home", models, SHADOW_ISOLATION="processes")
