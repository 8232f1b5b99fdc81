"""The policy's steps on real parts (a recorded store, the env file, the lifecycle edits): a
promoted model whose live edge turns WORSE is rolled back at the level the policy names, an
INCONCLUSIVE verdict or a pause never promotes, abort ends the run; the guard's FAIL criteria;
the policy keys are strict."""

from __future__ import annotations

import logging

import pytest

from ai_engine.config import load_settings
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle import policy
from ai_engine.lifecycle.audit import read_audit
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.lifecycle.rollback import backup
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.analysis.conftest import build_store

ON = ("AI_ENGINE_POLICY=on\nAI_ENGINE_POLICY_SHADOW_HOURS=0\nAI_ENGINE_POLICY_MIN_PREDICTIONS=0\n"
      "AI_ENGINE_POLICY_B_HOURS=1000000\nAI_ENGINE_POLICY_LIVE_HOURS=1000\n")


def _deploy(deployment, in_shadow: bool, **store):
    """The deployment with the policy on, its PatchTST's rows recorded as ``store`` says."""
    from ai_engine.agents.artifacts import sha256_file
    from ai_engine.model_slots import resolve_model_path

    with deployment.env.open("a") as f:
        f.write(ON + ("PATCHTST_SHADOW_ONLY=true\n" if in_shadow else ""))
    settings = load_settings(deployment.env)
    sha = sha256_file(resolve_model_path(settings, "patchtst")[0])
    build_store(settings.store_path, shadow_sha=sha, **store)
    return settings, sha


def test_a_promoted_model_whose_live_edge_turns_worse_is_rolled_back_full(deployment):
    from ai_engine.enums import ModelRole

    settings, sha = _deploy(deployment, in_shadow=False, n=1500, shadow="anti", shadow_role=ModelRole.VOTER)
    backup(settings)
    policy._write_state(settings.home, policy.PolicyState("patchtst", sha, "option_b", False, 0, 0, 0))
    out = policy.step(settings)
    assert out.action == "rollback" and out.target == "full" and "live edge WORSE" in out.reason, out
    vals = read_env_file(deployment.env)
    assert vals["PATCHTST_MODEL_PATH"].endswith(".pth") and "BASELINE" in vals["PATCHTST_MODEL_PATH"]
    whats = [e["what"] for e in read_audit(settings.home)]
    assert whats[-2:] == ["models.rollback.full patchtst", "policy.rollback"]
    assert policy.read_state(settings.home).stage == "rolled_back"
    assert policy.step(load_settings(deployment.env)) is None  # the run is over: nothing more happens


def test_inconclusive_waits_a_pause_holds_resume_promotes_abort_ends(deployment):
    settings, sha = _deploy(deployment, in_shadow=True, n=40, shadow="skilled")
    before = deployment.env.read_bytes()
    out = policy.step(settings)  # the run starts; 40 predictions: the gates cannot judge yet
    assert out.action == "wait" and "INCONCLUSIVE" in out.reason and deployment.env.read_bytes() == before
    build_store(settings.store_path, n=1500, shadow="skilled", shadow_sha=sha)  # the evidence arrives
    policy.control(settings, "pause")
    assert policy.step(settings).reason == "paused by the operator" and deployment.env.read_bytes() == before
    policy.control(settings, "resume")
    out = policy.step(settings)
    assert out.action == "promote" and out.target == "option_b", out
    vals = read_env_file(deployment.env)
    assert "PATCHTST_SHADOW_ONLY" not in vals and vals["PATCHTST_WEIGHT"] == "5" and vals["NHITS_WEIGHT"] == "40"
    whats = [e["what"] for e in read_audit(settings.home)]
    assert whats == ["policy.start", "policy.pause", "policy.resume", "models.activate patchtst", "policy.promote"]
    policy.control(settings, "abort")
    assert policy.step(load_settings(deployment.env)) is None and policy.read_state(settings.home).stage == "aborted"
    with pytest.raises(ConfigError, match="no policy run to resume"):
        policy.control(settings, "resume")


def test_a_rollback_never_waits_on_a_promotion_s_analysis(deployment, monkeypatch):
    """serve's FAIL rollback takes the state's lock between candles; a promotion's gate analysis (the
    slow part) runs before that lock, so the rollback goes through while it runs, and the promotion
    then finds the run rolled back and changes nothing."""
    import threading

    from ai_engine.lifecycle import activation

    settings, sha = _deploy(deployment, in_shadow=True, n=1500, shadow="skilled")
    backup(settings)
    state = policy.PolicyState("patchtst", sha, "shadow", False, 0, 0, 0)
    policy._write_state(settings.home, state)
    in_gate, release = threading.Event(), threading.Event()
    real_gate = activation.activation_gate

    def slow_gate(*args, **kwargs):  # the real analysis, held open until the rollback is done
        in_gate.set()
        release.wait(60)
        return real_gate(*args, **kwargs)

    monkeypatch.setattr(activation, "activation_gate", slow_gate)
    promoted: list = []
    promotion = threading.Thread(target=lambda: promoted.append(policy._promote(settings, state, "option_b", "t", None)))
    promotion.start()
    assert in_gate.wait(60)
    rolled: list = []
    rollback = threading.Thread(target=lambda: rolled.append(policy.roll_back(settings, "full", "FAIL criterion: t")))
    rollback.start()
    rollback.join(30)
    done_first = not rollback.is_alive()
    release.set()
    promotion.join(60)
    rollback.join(60)
    assert done_first and rolled == ["full"]  # it did not wait for the analysis
    assert promoted[0].stage == "rolled_back"
    whats = [e["what"] for e in read_audit(settings.home)]
    assert "models.activate patchtst" not in whats and whats[-1] == "policy.rollback"


def test_the_guard_fails_on_crashes_store_growth_and_log_spam(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite")
    rate = policy.LogRate()
    guard = policy.Guard(store, rate)
    state = policy.PolicyState("patchtst", "ab" * 32, "shadow", False, 0, 0, policy._store_bytes(store.path))
    assert guard.failure(state) is None
    for i in range(3):  # a start after a start that never stopped: a crash
        store.record_config(f"c{i}", "start", {"models": {}})
    assert guard.failure(state) is None  # 2 crashes (the first start is none)
    store.record_config("c3", "start", {"models": {}})
    assert guard.failure(state)[0] == "crashes"
    calm = policy.PolicyState("patchtst", "ab" * 32, "shadow", False, 10**13, 0, state.store_bytes)
    assert guard.failure(calm) is None  # crashes before the run began are not its failures
    grown = policy.PolicyState("patchtst", "ab" * 32, "shadow", False, 10**13, 0, state.store_bytes - 6 * 1024**3)
    assert guard.failure(grown)[0] == "disk"
    logger = logging.getLogger("test.policy.spam")
    logger.addHandler(rate)
    for i in range(1001):
        logger.warning("line %d", i)
    assert guard.failure(calm)[0] == "log"
    logger.removeHandler(rate)
    store.close()


@pytest.mark.parametrize("line, said", [
    ("AI_ENGINE_POLICY=yes", "expected off, on or dry-run"),
    ("AI_ENGINE_POLICY_B_WEIGHT=6", "summing with its weight to 100"),
    ("AI_ENGINE_POLICY_A_REBALANCE=xgb=25,lgbm=25,patchtst=30", "other than patchtst"),
    ("AI_ENGINE_POLICY_ROLLBACK_ON_WORSE=fast", "expected full, nuclear"),
    ("AI_ENGINE_POLICY_SHADOW_HOURZ=1", "did you mean AI_ENGINE_POLICY_SHADOW_HOURS"),
    ("AI_ENGINE_POLICY_MIN_PREDICTIONS=1_000", "without '_'"),
    ("AI_ENGINE_POLICY_MODEL=arima_r2", "or an extra shadow's key"),
    ("AI_ENGINE_POLICY_MODEL=patchtst_r2\nAI_ENGINE_POLICY_B_REBALANCE=xgb=27.5,patchtst=27.5,nhits=40", "other than patchtst"),
])
def test_policy_keys_are_strict(tmp_path, line, said):
    env = tmp_path / "ai-engine.env"
    on = "" if line.startswith("AI_ENGINE_POLICY=") else "AI_ENGINE_POLICY=on\n"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\n{on}{line}\n")
    with pytest.raises(ConfigError, match=said):
        load_settings(env)


def test_a_refused_rollback_level_escalates_and_when_all_are_refused_nothing_changes(deployment):
    settings, sha = _deploy(deployment, in_shadow=True, n=40, shadow="skilled")
    policy._write_state(settings.home, policy.PolicyState("patchtst", sha, "shadow", False, 0, 0, 0))
    before = deployment.env.read_bytes()
    assert policy.roll_back(settings, "fast", "test") is None  # fast: gates not READY; full, nuclear: no backup
    assert deployment.env.read_bytes() == before
    entry = read_audit(settings.home)[-1]
    assert entry["what"] == "policy.rollback" and entry["level"] is None and len(entry["refused"]) == 3
    backup(settings)
    policy._write_state(settings.home, policy.PolicyState("patchtst", sha, "shadow", False, 0, 0, 0))
    assert policy.roll_back(settings, "fast", "test") == "full"
    assert "PATCHTST_SHADOW_ONLY" not in read_env_file(deployment.env)
    assert [e["what"] for e in read_audit(settings.home)][-2:] == ["models.rollback.full patchtst", "policy.rollback"]
