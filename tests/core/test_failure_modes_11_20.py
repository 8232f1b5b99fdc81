"""Failure modes 11-20 of shared/spec/KNOWN_FAILURE_MODES.md: the checks the other suites lacked.

Each test names the failure mode it proves. docs/failure-modes.md maps every mode to all
of its tests, here and elsewhere. Real models (the session's ``synthetic_models``), real SQLite,
real files and, for mode 15, the real Redis under a key prefix of its own.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading

import numpy as np
import pytest

from ai_engine.agents import XGBAgent, load_agent, sha256_file
from ai_engine.agents.artifacts import meta_path_for, write_meta
from ai_engine.config import load_settings
from ai_engine.engine import DecisionEngine, DecisionInputs
from ai_engine.enums import CLASS_ORDER, Action, GovernorMode, ModelStatus
from ai_engine.exceptions import ConfigError, ModelLoadError
from ai_engine.features import FEATURE_NAMES, compute_features
from ai_engine.governor import FileGovernorBackend, Governor, GovernorState
from ai_engine.lifecycle.envfile import read_env_file, update_env_file
from ai_engine.model_calls import run_slot
from ai_engine.model_slots import load_slot, load_slots
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import Prediction
from tests.core.conftest import PREFIX, SYMBOLS, make_settings
from tests.helpers import AgentWrapper, redis_prefix

BARS = 300  # bars of the session's synthetic market replayed per test (the first ~130 warm up)
SLOW_OK = {"MODEL_TIMEOUT_MS": "60000"}  # a busy machine must not turn a slow batch into a timed-out voter


@pytest.fixture(scope="module")
def market(synthetic_series):
    return {s: v.slice(0, BARS) for s, v in synthetic_series.items()}


def _copy_artifact(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    shutil.copyfile(meta_path_for(src), meta_path_for(dest))
    return dest


def _replay(settings, series, slots=None, **kw):
    """Replay ``series`` through an engine on ``settings`` (``slots`` as given); returns the stored decisions."""
    store = TelemetryStore(settings.store_path)
    engine = DecisionEngine(settings, store=store, governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                            slots=slots, wait_for_shadow=True)
    try:
        replay_series(engine, series, **kw)
    finally:
        engine.close()
    return store.decisions_json()


class _Rewritten(AgentWrapper):
    """A real agent whose predictions are rewritten by ``fn`` (a model returning garbage)."""

    def __init__(self, agent, fn):
        super().__init__(agent)
        self._fn = fn

    def predict(self, X):
        return [self._fn(p) for p in self._agent.predict(X)]


# -- 11: silent fallbacks --------------------------------------------------------------------------
def test_fm11_model_expecting_a_feature_the_engine_lacks_is_excluded_not_zero_filled(
        tmp_path, synthetic_models, market, caplog):
    """FM11: an artifact that needs a feature the engine does not compute is excluded at start, its
    reason naming the feature (it is never fed 0.0 for it), and the other models keep deciding."""
    names = (*FEATURE_NAMES[:-1], "funding_rate")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(names)))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    legacy = XGBAgent(n_estimators=5, n_jobs=1).fit(X, y, feature_names=names).save(tmp_path / "xgb_legacy.ubj").path
    settings, _ = make_settings(tmp_path / "home", {**synthetic_models, "xgb": legacy}, **SLOW_OK)
    caplog.set_level(logging.INFO, logger="ai_engine")
    slots = load_slots(settings)
    assert not slots["xgb"].active and "funding_rate" in slots["xgb"].reason
    decisions = _replay(settings, market, slots)
    assert len(decisions) > 100
    for d in decisions:
        x = d["model_breakdown"]["xgb"]
        assert d["total_models"] == 3 and x["status"] == "inactive" and x["action"] is None
        assert "funding_rate" in x["reason"]
    assert re.search(r"\[XGBoost\] ❌ model not loaded, excluded from the ensemble: .*funding_rate", caplog.text)


def test_fm11_row_with_a_missing_feature_value_is_not_fed_and_says_why(tmp_path, synthetic_models, synthetic_series):
    """FM11: a row with a missing (NaN) feature value is never imputed (with 0.0 or anything) and fed:
    the model gives an error row with the reason and still predicts the other rows."""
    settings, _ = make_settings(tmp_path, synthetic_models)
    slot = load_slot(settings, "xgb", strict=True)
    series = synthetic_series["BTCUSDT"]
    frame = compute_features(series)
    rows = np.flatnonzero(frame.valid)[:3]
    tabular = frame.tabular[rows].copy()
    tabular[1, slot.input_index[0]] = np.nan
    results = run_slot(slot, DecisionInputs([series.candle(int(i)) for i in rows], tabular, None))
    assert [r.status for r in results] == [ModelStatus.OK, ModelStatus.ERROR, ModelStatus.OK]
    assert results[1].prediction is None and results[1].reason.startswith("non-finite input")
    assert all(r.prediction is not None for r in (results[0], results[2]))


# -- 12: hard-coded confidences --------------------------------------------------------------------
@pytest.mark.parametrize(("conf", "reason"), [(1.05, "confidence 1.05 outside [0, 1]"),
                                              (0.75, "confidence 0.7500 is not the probability of its action")])
def test_fm12_confidence_is_the_models_probability_and_a_hard_coded_one_is_refused(conf, reason, tmp_path,
                                                                                    synthetic_models, market):
    """FM12: a voter reporting a confidence above 1, or a fixed one beside its real probabilities, is
    excluded with the reason; every recorded confidence is a probability in [0, 1], each model's the
    probability its own output gives its action."""
    settings, _ = make_settings(tmp_path, synthetic_models, **SLOW_OK)
    slots = load_slots(settings)
    slots["xgb"].agent = _Rewritten(slots["xgb"].agent, lambda p: Prediction(p.action, conf, p.probs, p.logit))
    decisions = _replay(settings, market, slots)
    assert len(decisions) > 100
    for d in decisions:
        x = d["model_breakdown"]["xgb"]
        assert x["status"] == "error" and x["confidence"] is None and reason in x["reason"]
        assert d["total_models"] == 3 and 0.0 <= d["confidence"] <= 1.0
    db = TelemetryStore(settings.store_path, readonly=True).connection
    rows = db.execute("SELECT model, action, confidence, p_sell, p_hold, p_buy FROM predictions WHERE status='ok'").fetchall()
    assert {m for m, *_ in rows} == {"lgbm", "nhits", "patchtst"}
    for _model, action, conf, *probs in rows:
        assert 0.0 <= conf <= 1.0 and abs(sum(probs) - 1.0) < 1e-6
        assert conf == pytest.approx(max(probs), abs=1e-9) == probs[[a.value for a in CLASS_ORDER].index(action)]
    for m in ("lgbm", "nhits", "patchtst"):  # the model's own spread, not a few fixed values
        assert len({c for model, _, c, *_ in rows if model == m}) >= 20, m


# -- 13: checkpoint / agent mismatch ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["xgb", "lgbm"])
def test_fm13_tree_artifact_whose_feature_list_does_not_fit_its_booster_is_refused(name, tmp_path, synthetic_models):
    """FM13: a tree model whose (consistently re-signed) sidecar lists 8 features for a booster
    trained on more is refused at load, and the engine excludes it with that reason."""
    path = _copy_artifact(synthetic_models[name], tmp_path / synthetic_models[name].name)
    meta = json.loads(meta_path_for(path).read_text())
    assert len(meta["feature_names"]) > 8
    write_meta(path, meta | {"feature_names": meta["feature_names"][:8]})
    with pytest.raises(ModelLoadError, match=r"architecture mismatch: booster has \d+ features, metadata lists 8"):
        load_agent(name, path)
    settings, _ = make_settings(tmp_path / "home", {**synthetic_models, name: path})
    slot = load_slot(settings, name)
    assert not slot.active and "architecture mismatch" in slot.reason


# -- 14: one spelling of an action -----------------------------------------------------------------
def test_fm14_actions_are_one_upper_case_enum():
    """FM14: ``Action.parse`` takes the exact upper-case names only, and predictions always carry
    the enum member (never a string of any case)."""
    assert [Action.parse(a) for a in ("SELL", "HOLD", "BUY")] == list(CLASS_ORDER)
    for bad in ("buy", "Buy", "sell", " BUY", "BUY ", "LONG", ""):
        with pytest.raises(ValueError, match="unknown action"):
            Action.parse(bad)
    with pytest.raises(ValueError):
        Action("buy")
    for k in range(3):
        probs = [0.1, 0.1, 0.1]
        probs[k] = 0.8
        assert type(Prediction.from_probs(probs).action) is Action


@pytest.mark.parametrize("role", ["voter", "shadow"])
def test_fm14_model_returning_a_lower_case_action_is_excluded_not_a_crash(role, tmp_path, synthetic_models, market):
    """FM14: a model whose predictions carry ``'buy'`` instead of ``Action.BUY`` is excluded as an
    error with the reason; the other models still decide every candle."""
    env = {"XGB_ROLE": "shadow", "SHADOW_ISOLATION": "thread"} if role == "shadow" else {}
    settings, _ = make_settings(tmp_path, synthetic_models, ENSEMBLE_MIN_CONSENSUS="2", **env, **SLOW_OK)
    slots = load_slots(settings)
    slots["xgb"].agent = _Rewritten(slots["xgb"].agent,
                                    lambda p: Prediction(p.action.value.lower(), p.confidence, p.probs, p.logit))
    decisions = _replay(settings, {s: v.slice(0, 160) for s, v in market.items()}, slots)
    assert len(decisions) > 50
    for d in decisions:
        x = d["model_breakdown"]["xgb"]
        assert x["status"] == "error" and re.search(r"action '(buy|sell|hold)' is not one of BUY, SELL, HOLD",
                                                     x["reason"]), x
        assert x["shadow"] is (role == "shadow")
    if role == "voter":  # the other three still decide; a shadow was never among the voters
        assert all(d["total_models"] == 3 for d in decisions)


# -- 15: bus trimming never trims the analysis store ----------------------------------------------
@pytest.fixture
def bus():
    """(client, url, prefix) on the real Redis; every key under the prefix is deleted afterwards."""
    redis = pytest.importorskip("redis")
    with redis_prefix("test:fm15") as (url, prefix):
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        yield client, url, prefix
        client.close()


@pytest.mark.redis
def test_fm15_trimming_the_bus_never_trims_what_the_analysis_reads(tmp_path, synthetic_models, market, bus):
    """FM15: with a stream MAXLEN of 10 and then ``XTRIM MAXLEN 0`` on both streams, the analysis
    still sees every decision and every shadow prediction of the run."""
    from ai_engine.analysis.analyze import analyze
    from ai_engine.telemetry.redis_streams import STREAMS, RedisPublisher, stream_key

    client, url, prefix = bus
    settings, _ = make_settings(tmp_path, synthetic_models, REDIS_URL=url, AI_ENGINE_REDIS_PREFIX=prefix,
                                AI_ENGINE_STREAM_MAXLEN="10", GOVERNOR_BACKEND="file", PATCHTST_SHADOW_ONLY="true",
                                SHADOW_ISOLATION="thread", ENSEMBLE_MIN_CONSENSUS="2", **SLOW_OK)
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        summary = replay_series(engine, market)
    finally:
        engine.close()  # the publisher delivers the outbox before it stops
    assert summary.decisions > 100 and summary.published > 0
    # what the engine's publisher had no time left for at close, a second one delivers (exactly once)
    assert RedisPublisher(settings.store_path, url, prefix=prefix, maxlen=10, poll_s=0.05).close(timeout=60) == 0
    store = TelemetryStore(settings.store_path, readonly=True)
    undelivered = store.connection.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
    assert undelivered == 0 and store.count("outbox") == summary.decisions + summary.published
    before = analyze(settings.store_path, 100_000, model="patchtst")
    for s in STREAMS:
        client.xtrim(stream_key(prefix, s), maxlen=0)  # the operator's XTRIM MAXLEN 0
        assert client.xlen(stream_key(prefix, s)) == 0
    after = analyze(settings.store_path, 100_000, model="patchtst")
    for res in (before, after):
        assert res.window.n_decisions == summary.decisions
        assert res.primary.n_rows == summary.decisions and res.primary.role_counts == {"shadow": summary.decisions}
    assert store.count("decisions") == summary.decisions and store.count("intents") == summary.published


# -- 17: the governor fails closed and says why ----------------------------------------------------
def test_fm17_missing_governor_state_blocks_every_actionable_decision_and_says_why(tmp_path, synthetic_models, market):
    """FM17: with no governor state nothing is published and every actionable decision carries the
    reason; with the state released the same decisions are published, none blocked silently."""
    settings, _ = make_settings(tmp_path / "missing", synthetic_models, ENSEMBLE_MIN_CONSENSUS="2", **SLOW_OK)
    settings.governor_state_file.unlink()
    blocked = _replay(settings, market)
    actionable = [d for d in blocked if d["actionable"]]
    assert actionable and not any(d["published"] for d in blocked)
    for d in actionable:
        assert "governor state missing" in d["blocked_reason"] and "governor release" in d["blocked_reason"]
    assert TelemetryStore(settings.store_path, readonly=True).count("intents") == 0
    released, _ = make_settings(tmp_path / "released", synthetic_models, ENSEMBLE_MIN_CONSENSUS="2", **SLOW_OK)
    allowed = _replay(released, market)
    assert [d["event_id"] for d in allowed if d["published"]] == [d["event_id"] for d in actionable]
    assert all(d["blocked_reason"] is None for d in allowed)


# -- 18: env edits are atomic, keyed and idempotent ------------------------------------------------
def test_fm18_env_edits_are_atomic_a_reader_never_sees_half_a_file(tmp_path):
    """FM18: while keyed edits run, a concurrent reader always parses a whole file with every key
    once; repeating an edit changes nothing and no temp file is left behind."""
    env = tmp_path / "ai-engine.env"
    keys = {"AI_ENGINE_HOME": "/var/lib/ai-engine", "AI_ENGINE_SYMBOLS": "BTCUSDT,ETHUSDT",
            "PATCHTST_MODEL_PATH": "/opt/quantum/ai_engine/models/patchtst_v20260109_233444.pth",
            "PATCHTST_SHADOW_ONLY": "true", "XGB_WEIGHT": "25", "LGBM_WEIGHT": "25", "NHITS_WEIGHT": "30",
            "PATCHTST_WEIGHT": "20", "ENSEMBLE_MIN_CONSENSUS": "3", "SHADOW_LOG_INTERVAL_S": "30"}
    env.write_text("# managed by ai-engine models\n" + "".join(f"{k}={v}\n" for k, v in keys.items()))
    stop, problems = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                got = read_env_file(env)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if set(got) != set(keys):
                problems.append(f"keys {sorted(got)}")

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for i in range(150):
            w = ("25", "25", "30", "20") if i % 2 else ("27.5", "27.5", "40", "5")
            assert update_env_file(env, dict(zip(("XGB_WEIGHT", "LGBM_WEIGHT", "NHITS_WEIGHT", "PATCHTST_WEIGHT"), w,
                                                 strict=True)))
    finally:
        stop.set()
        t.join(10)
    assert problems == []
    text = env.read_text()
    assert all(text.count(f"\n{k}=") == 1 for k in keys)
    assert not update_env_file(env, {"XGB_WEIGHT": "25", "PATCHTST_WEIGHT": "20"})  # idempotent
    assert env.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["ai-engine.env"]


# -- 19: weights are configuration ---------------------------------------------------------------
def test_fm19_weights_come_from_configuration_and_change_by_command(tmp_path, synthetic_models, market):
    """FM19: the vote uses the weights of the env file (97/1/1/1 makes XGBoost decide), and
    ``models activate --weight --rebalance`` plus a reload moves that to NHiTS, no code edited."""
    from ai_engine.lifecycle.activation import activate

    home, env = tmp_path / "home", tmp_path / "ai-engine.env"
    lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}",
             *(f"{PREFIX[m]}_MODEL_PATH={p}" for m, p in synthetic_models.items()),
             "XGB_WEIGHT=97", "LGBM_WEIGHT=1", "NHITS_WEIGHT=1", "PATCHTST_WEIGHT=1", "MODEL_TIMEOUT_MS=60000"]
    env.write_text("\n".join(lines) + "\n")
    settings = load_settings(env)
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER))
    times = market["BTCUSDT"].open_time
    cut = int(times[220])
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, {s: v.slice(0, 221) for s, v in market.items()})
        first = engine.state.config_id
        res = activate(settings, "nhits", 97.0, {"xgb": 1.0, "lgbm": 1.0, "patchtst": 1.0}, force=True)
        assert res.changed and res.backup.is_file()
        assert engine.reload(load_settings(env))
        second = engine.state.config_id
        replay_series(engine, market, start_ms=cut + 1)
    finally:
        engine.close()
    decisions = TelemetryStore(settings.store_path, readonly=True).decisions_json()
    phases = {first: ("xgb", {"xgb": 97, "lgbm": 1, "nhits": 1, "patchtst": 1}),
              second: ("nhits", {"xgb": 1, "lgbm": 1, "nhits": 97, "patchtst": 1})}
    assert {d["config_id"] for d in decisions} == set(phases)
    outvoted = 0
    for d in decisions:
        leader, weights = phases[d["config_id"]]
        b = d["model_breakdown"]
        assert {m: r["weight"] for m, r in b.items()} == weights
        assert all(r["status"] == "ok" for r in b.values())
        assert d["action"] == b[leader]["action"]  # 97 of 100: the configured leader decides
        others = [r["action"] for m, r in b.items() if m != leader]
        outvoted += others.count(b[leader]["action"]) == 0 and len(set(others)) == 1
    assert outvoted > 0, "need decisions where every other model disagrees, so the weights are what decides"


# -- 20: every start and reload says what it applied ----------------------------------------------
def test_fm20_every_start_and_reload_logs_and_records_roles_weights_versions_checksums(
        tmp_path, synthetic_models, market, caplog):
    """FM20: a start with the NHiTS file missing and a reload once it is back each log and record the
    applied roles, weights, status, versions and checksums; every decision names its configuration."""
    nhits = tmp_path / "models" / "nhits_model.pth"  # absent at start
    settings, _ = make_settings(tmp_path / "home", {**synthetic_models, "nhits": nhits}, **SLOW_OK)
    cut = int(market["BTCUSDT"].open_time[220])
    caplog.set_level(logging.INFO, logger="ai_engine")
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, {s: v.slice(0, 221) for s, v in market.items()})
        start_id = engine.state.config_id
        _copy_artifact(synthetic_models["nhits"], nhits)  # the same path, now present
        assert engine.reload(settings)
        reload_id = engine.state.config_id
        replay_series(engine, market, start_ms=cut + 1)
    finally:
        engine.close()
    assert start_id != reload_id
    store = TelemetryStore(settings.store_path, readonly=True)
    rows = store.connection.execute("SELECT config_id, reason, payload FROM configs ORDER BY applied_at").fetchall()
    assert [(c, r) for c, r, _ in rows] == [(start_id, "start"), (reload_id, "reload")]
    applied = [json.loads(p)["models"] for *_, p in rows]
    paths = {**synthetic_models, "nhits": nhits}
    for i, payload in enumerate(applied):
        for m, cfg in payload.items():
            assert (cfg["role"], cfg["weight"]) == ("voter", settings.models[m].weight)
            if m == "nhits" and i == 0:
                assert cfg["status"] == "inactive" and "model file missing" in cfg["reason"]
                assert cfg["version"] is None and cfg["sha256"] is None
            else:
                assert cfg["status"] == "active" and str(cfg["version"]).startswith(f"{m}_v")
                assert cfg["sha256"] == sha256_file(paths[m])
    assert sum(c["weight"] for c in applied[0].values() if c["status"] == "active") == 70  # visible, not silent
    for d in store.decisions_json():
        assert d["config_id"] == (start_id if d["candle_open_time"] <= cut else reload_id)
    log = caplog.text
    assert f"Applied configuration {start_id} (start): 3 active voters" in log
    assert f"Applied configuration {reload_id} (reload): 4 active voters" in log
    assert re.search(r"nhits +role=voter +weight=30 +status=inactive +version=None sha256=- reason=.*model file missing",
                     log)
    for m, p in paths.items():
        sha = sha256_file(p)
        assert re.search(rf"{m} +role=voter +weight={settings.models[m].weight:g} +status=active +"
                         rf"version={applied[1][m]['version']} sha256={sha[:16]}", log), m
