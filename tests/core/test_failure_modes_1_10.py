"""Failure modes 1-10 of ../shared/spec/KNOWN_FAILURE_MODES.md, each proved on real parts: the small
models trained by the project's code (tests/core/conftest.py), the engine, its SQLite store, env
files and the lifecycle commands. docs/failure-modes.md maps each mode to its tests."""

from __future__ import annotations

import json
import logging
import sqlite3
import time

import numpy as np
import pytest

from ai_engine.analysis import analyze
from ai_engine.config import load_settings
from ai_engine.engine import DecisionEngine, DecisionInputs
from ai_engine.enums import ModelRole, ModelStatus
from ai_engine.exceptions import ConfigError, DegenerateModelError
from ai_engine.features import SEQUENCE_CHANNELS, compute_features
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.lifecycle.edits import edit_env
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.lifecycle.rollback import rollback
from ai_engine.model_calls import NOT_FED
from ai_engine.model_slots import load_slots
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import Prediction
from tests.core.conftest import SYMBOLS, make_settings
from tests.helpers import AgentWrapper

YEARS = 24 * 3650  # an analysis window that takes every decision
THREAD = {"SHADOW_ISOLATION": "thread"}  # the shadow on a thread of the engine: no child process to start


class Collect:
    """A sink of the engine: keeps every DecisionRecord it is told about, in order."""

    def __init__(self) -> None:
        self.records = []

    def notify(self, records) -> None:
        self.records.extend(records)


def key(d) -> tuple:
    """What a decision decided (a DecisionRecord or its JSON)."""
    if not isinstance(d, dict):
        d = d.to_json()
    return (d["event_id"], d["action"], round(d["confidence"], 9), d["consensus_count"], d["total_models"],
            d["actionable"], d["published"])


@pytest.fixture(scope="module")
def shadow_run(tmp_path_factory, synthetic_models, synthetic_series):
    """A replay as deployed: PatchTST in shadow (in its own process, the default), JSONL written."""
    home = tmp_path_factory.mktemp("fm_shadow")
    settings, _ = make_settings(home, synthetic_models, PATCHTST_SHADOW_ONLY="true")
    engine = open_engine(settings, wait_for_shadow=True)
    jsonl = home / "decisions.jsonl"
    try:
        replay_series(engine, synthetic_series, jsonl=jsonl)
    finally:
        engine.close()
    return settings, engine.store.decisions_json(), jsonl


# -- 1. the analysis sees every shadow prediction ----------------------------------------------------
def test_fm1_shadow_telemetry_is_json_and_the_analysis_counts_every_row(shadow_run, tmp_path):
    """FM1: telemetry is real JSON and typed rows; the analysis sees every shadow row and counts
    by reason each row it cannot use."""
    settings, decisions, jsonl = shadow_run
    text = jsonl.read_text()
    assert "'shadow'" not in text and "True" not in text  # no Python dict repr anywhere
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == len(decisions) > 500
    assert all(d["model_breakdown"]["patchtst"]["shadow"] is True for d in lines)
    with sqlite3.connect(settings.store_path) as db:
        payloads = [json.loads(p) for (p,) in db.execute("SELECT payload FROM decisions")]
        roles = db.execute("SELECT role, COUNT(*) FROM predictions WHERE model='patchtst' GROUP BY role").fetchall()
    assert all(p["model_breakdown"]["patchtst"]["shadow"] is True for p in payloads)
    assert roles == [("shadow", len(decisions))]
    m = analyze(settings.store_path, YEARS).primary
    assert m.role_counts == {"shadow": len(decisions)}
    assert m.n_rows == m.n_valid == len(decisions) and m.skipped == ()
    # rows the analysis cannot use are counted under their reason, never dropped silently
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(settings.store_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
        ids = [i for (i,) in dst.execute("SELECT event_id FROM predictions WHERE model='patchtst' LIMIT 3")]
        dst.execute("UPDATE predictions SET action='buy' WHERE model='patchtst' AND event_id=?", (ids[0],))
        dst.execute("UPDATE predictions SET status='weird' WHERE model='patchtst' AND event_id=?", (ids[1],))
        dst.execute("UPDATE predictions SET confidence=NULL WHERE model='patchtst' AND event_id=?", (ids[2],))
    m = analyze(copy, YEARS).primary
    assert m.n_rows == len(decisions) and m.n_valid == len(decisions) - 3
    assert dict(m.skipped) == {"status unknown": 1, "unknown action string": 1, "confidence missing": 1}


# -- 2. a shadow stays out of the vote on every path -------------------------------------------------
class Faulty(AgentWrapper):
    """A real agent whose inference fails in a chosen way (fault injection)."""

    def __init__(self, agent, mode: str) -> None:
        super().__init__(agent)
        self.mode = mode

    def predict(self, X):
        if self.mode == "raise":
            raise RuntimeError("shadow exploded")
        if self.mode == "late":
            time.sleep(0.1)
        preds = self._agent.predict(X)
        if self.mode == "invalid":
            return [Prediction(p.action, 0.0, (0.0, 0.0, 0.0), 0.0) for p in preds]
        if self.mode == "short":
            return preds[:-1]
        return preds


# NHiTS disabled: the voters need no window, so PatchTST's first rows have no full window (warm-up).
FAULT_ENV = {"NHITS_ROLE": "disabled", "ENSEMBLE_MIN_CONSENSUS": "2", **THREAD}
FAULT_BARS = 260


def run_faulty(home, models, series, mode: str | None):
    """Decisions of a replay with PatchTST in shadow failing as ``mode`` says (None: PatchTST disabled)."""
    env = dict(FAULT_ENV, PATCHTST_ROLE="disabled" if mode is None else "shadow")
    if mode == "late":
        env["SHADOW_DEADLINE_MS"] = "1"
    if mode == "inactive":
        models = dict(models, patchtst=home / "missing" / "patchtst_model.pth")
    settings, _ = make_settings(home, models, **env)
    slots = load_slots(settings)
    if mode in ("raise", "invalid", "short", "late"):
        slots["patchtst"].agent = Faulty(slots["patchtst"].agent, mode)
    sink = Collect()
    engine = DecisionEngine(settings, store=TelemetryStore(settings.store_path), slots=slots, sinks=[sink],
                            governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                            wait_for_shadow=mode != "late")
    try:
        replay_series(engine, {s: v.slice(0, FAULT_BARS) for s, v in series.items()}, chunk=64)
    finally:
        engine.close(shadow_grace_s=10)
    return engine, sink.records


@pytest.fixture(scope="module")
def without_patchtst(tmp_path_factory, synthetic_models, synthetic_series):
    _, records = run_faulty(tmp_path_factory.mktemp("fm2_none"), synthetic_models, synthetic_series, None)
    return [key(r) for r in records]


@pytest.mark.parametrize("mode", ["warm-up", "raise", "invalid", "short", "inactive", "late"])
def test_fm2_a_failing_shadow_never_votes(mode, without_patchtst, tmp_path, synthetic_models, synthetic_series):
    """FM2: whatever path the shadow's result takes (no full window, raise, invalid or too few
    outputs, file missing, past the deadline), it is tagged shadow, cannot vote, and every decision
    is that of an engine without the model."""
    engine, records = run_faulty(tmp_path, synthetic_models, synthetic_series, mode)
    assert [key(r) for r in records] == without_patchtst and len(records) > 300
    statuses = set()
    for rec in records:
        entry = next(r for r in rec.decision.results if r.model == "patchtst")
        assert entry.role is ModelRole.SHADOW and not entry.votes and entry.to_json()["shadow"] is True
        statuses.add(entry.status)
        if entry.status is not ModelStatus.OK:
            assert entry.reason
        # the recorded breakdown, shadow entry included, decides exactly what was decided
        again = engine.state.ensemble.decide(rec.decision.results)
        d = rec.decision
        assert (again.action, again.confidence, again.consensus_count, again.total_models, again.actionable) == (
            d.action, d.confidence, d.consensus_count, d.total_models, d.actionable)
    # rows without a full window are errors (NOT_FED) whatever else the shadow does
    expected = {"warm-up": {ModelStatus.ERROR, ModelStatus.OK}, "inactive": {ModelStatus.INACTIVE},
                "late": {ModelStatus.LATE, ModelStatus.ERROR}}.get(mode, {ModelStatus.ERROR})
    assert statuses == expected or (mode == "late" and statuses == {ModelStatus.LATE})
    if mode == "warm-up":
        assert any(r.decision.results[-1].reason == NOT_FED for r in records)
    rows = engine.store.connection.execute("SELECT DISTINCT role FROM predictions WHERE model='patchtst'").fetchall()
    assert rows == [("shadow",)]


# -- 3. the role is data ---------------------------------------------------------------------------
def test_fm3_any_model_is_shadowed_by_configuration_and_none_by_its_name(tmp_path, synthetic_models, synthetic_series):
    """FM3: XGBoost in shadow stays out of the vote and PatchTST votes: the role comes from the
    configuration and is recorded as data, never read from a model name."""
    settings, _ = make_settings(tmp_path, synthetic_models, XGB_ROLE="shadow", **THREAD)
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, {s: v.slice(0, 300) for s, v in synthetic_series.items()})
    finally:
        engine.close()
    decisions = engine.store.decisions_json()
    assert decisions
    for d in decisions:
        b = d["model_breakdown"]
        assert (b["xgb"]["role"], b["xgb"]["shadow"], b["xgb"]["model"]) == ("shadow", True, "xgb_shadow")
        assert (b["patchtst"]["role"], b["patchtst"]["shadow"]) == ("voter", False)
        assert d["total_models"] == 3
    assert any(d["model_breakdown"]["patchtst"]["action"] == d["action"] and d["consensus_count"] == 3
               for d in decisions)  # PatchTST's vote counts
    roles = dict(engine.store.connection.execute("SELECT model, role FROM predictions GROUP BY model").fetchall())
    assert roles == {"xgb": "shadow", "lgbm": "voter", "nhits": "voter", "patchtst": "voter"}


# -- 4. the consensus rule is enforced ---------------------------------------------------------------
def test_fm4_the_configured_consensus_decides_what_is_published(shadow_run, tmp_path, synthetic_models,
                                                                 synthetic_series):
    """FM4: ENSEMBLE_MIN_CONSENSUS (3, and 4 here) is applied to every published intent, and
    total_models counts the models that actually voted."""
    settings4, _ = make_settings(tmp_path, synthetic_models, ENSEMBLE_MIN_CONSENSUS="4", **THREAD)
    engine = open_engine(settings4, wait_for_shadow=True)
    try:
        replay_series(engine, synthetic_series)
    finally:
        engine.close()
    settings3, shadow_decisions, _ = shadow_run
    for settings, decisions, need in ((settings3, shadow_decisions, 3), (settings4, engine.store.decisions_json(), 4)):
        for d in decisions:
            voted = sum(e["role"] == "voter" and e["status"] == "ok" for e in d["model_breakdown"].values())
            assert d["total_models"] == voted
            assert d["published"] == (d["action"] != "HOLD" and d["consensus_count"] >= need)
        short = [d for d in decisions if d["action"] != "HOLD" and d["consensus_count"] == need - 1]
        assert short and not any(d["actionable"] or d["published"] for d in short)  # the rule made a difference
        with sqlite3.connect(settings.store_path) as db:
            intents = [json.loads(p) for (p,) in db.execute("SELECT payload FROM intents")]
        assert intents and all(i["consensus_count"] >= need for i in intents)
        assert len(intents) == sum(d["published"] for d in decisions)


# -- 5. roles change by configuration and command; the engine reports what it applies ----------------
def _roles_applied(store_path) -> list[tuple[str, dict, dict]]:
    """(config id, roles the engine recorded for it, roles in its decisions' breakdown)."""
    with sqlite3.connect(store_path) as db:
        configs = {c: json.loads(p)["models"] for c, p in db.execute("SELECT config_id, payload FROM configs")}
        rows = db.execute("SELECT config_id, payload FROM decisions ORDER BY candle_open_time, symbol").fetchall()
    return [(c, {m: v["role"] for m, v in configs[c].items()},
             {m: e["role"] for m, e in json.loads(p)["model_breakdown"].items()}) for c, p in rows]


def test_fm5_roles_follow_the_env_file_and_commands_and_are_reported_as_applied(tmp_path, synthetic_models,
                                                                               synthetic_series):
    """FM5: the env flag and the documented rollback change the role on a running engine, and the
    configuration the engine records is the one its decisions were made with."""
    _, environ = make_settings(tmp_path, synthetic_models, PATCHTST_SHADOW_ONLY="true", **THREAD)
    env = tmp_path / "ai-engine.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in environ.items()))
    at_start = read_env_file(env)  # what systemd's EnvironmentFile put into the process environment
    settings = load_settings(env, environ=at_start)
    engine = open_engine(settings, wait_for_shadow=True)
    first = {s: v.slice(0, 400) for s, v in synthetic_series.items()}
    try:
        replay_series(engine, first)
        n_first = engine.store.count("decisions")
        assert engine.state.config_payload["models"]["patchtst"]["role"] == "shadow"
        rollback(settings, "fast", force=True)  # the documented rollback: PatchTST votes
        assert "PATCHTST_SHADOW_ONLY" not in read_env_file(env)
        assert engine.reload(load_settings(env, environ=at_start))
        assert engine.state.config_payload["models"]["patchtst"]["role"] == "voter"
        replay_series(engine, synthetic_series, resume=True)
    finally:
        engine.close()
    applied = _roles_applied(settings.store_path)
    assert len({c for c, _, _ in applied}) == 2
    for _, recorded, used in applied:
        assert recorded == used  # what the engine says it applies is what its decisions used
    assert {used["patchtst"] for _, _, used in applied[:n_first]} == {"shadow"}
    assert {used["patchtst"] for _, _, used in applied[n_first:]} == {"voter"}
    decisions = engine.store.decisions_json()
    assert len(decisions) > n_first > 100
    assert {d["total_models"] for d in decisions[:n_first]} == {3}
    assert {d["total_models"] for d in decisions[n_first:]} == {4}


# -- 6. a misspelt flag stops the engine -------------------------------------------------------------
@pytest.mark.parametrize("text", ["PATCHTST_SHADOW_ONLY=ture", "PATCHTST_SHADOW_ONLY=", "PATCHTST_ROLE=shaddow",
                                  "PATCHTST_SHADOW_ONLY=true # shadow", "PATCHTST_SHADOWONLY=true",
                                  "PATCHTST_SHADOW_ONLY=n", "PATCHTST_SHADOW_ONLY=f", "PATCHTST_SHADOW_ONLY=t"])
def test_fm6_a_misspelt_shadow_flag_is_refused_and_never_reaches_the_engine(tmp_path, text):
    """FM6: a typo in the flag, its value or its key is a ConfigError naming the key, whether
    written by hand or through a lifecycle command; nothing falls back to "votes"."""
    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\nPATCHTST_SHADOW_ONLY=true\n")
    settings = load_settings(env, environ={})
    assert settings.models["patchtst"].role is ModelRole.SHADOW
    name, _, value = text.partition("=")
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env, environ={"PATCHTST_SHADOW_ONLY": "true"})
    assert name in str(info.value) or (value and value in str(info.value))  # names what to fix
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\nPATCHTST_SHADOW_ONLY=true\n")
    before = env.read_bytes()
    with pytest.raises(ConfigError, match="refused"):
        edit_env(settings, "test", {name: value})
    assert env.read_bytes() == before


# -- 7. real windows in serving; a flat-lined model is noticed ----------------------------------------
def test_fm7_serving_windows_are_candle_history_and_a_flat_model_is_flagged(tmp_path, synthetic_models,
                                                                           synthetic_series, caplog):
    """FM7: the live path hands the models windows of the real candle history; windows built
    from the latest price only make a model flat-line, and the engine says so."""
    from ai_engine.data import time_batches
    from ai_engine.live import CandleProcessor

    settings, _ = make_settings(tmp_path, synthetic_models, FLATLINE_WINDOW="40", **THREAD)
    engine = open_engine(settings, wait_for_shadow=True)
    seen: list[DecisionInputs] = []
    decide = engine.decide
    engine.decide = lambda inputs: seen.append(inputs) or decide(inputs)  # the live path's inputs, recorded
    series = {s: v.slice(0, 400) for s, v in synthetic_series.items()}
    frames = {s: compute_features(v) for s, v in series.items()}
    try:
        proc = CandleProcessor(engine, "1h")
        for batch in time_batches(series):
            proc.process(batch)
        assert len(seen) > 200
        assert not {"xgb", "lgbm", "patchtst"} & set(engine.flatline.flat)  # real windows, real variation
        L = engine.state.seq_len
        for inputs in seen[::7]:
            for c, w in zip(inputs.candles, inputs.windows, strict=True):
                row = int(np.searchsorted(frames[c.symbol].open_time, c.open_time))
                np.testing.assert_array_equal(w, frames[c.symbol].sequence[row - L + 1 : row + 1])
        # FM7 as it happened: every window built from one latest price, so every window is the same
        # constant (a min-max or per-window normalisation made each one zeros; the nets' fixed input
        # scale keeps the level, so the stuck price is what makes the output constant here)
        f, s = frames["BTCUSDT"], series["BTCUSDT"]
        rows = np.arange(300, 360)
        constant = np.repeat(np.repeat(f.sequence[[300]][:, None, :], L, axis=1), rows.size, axis=0)
        with caplog.at_level(logging.WARNING, logger="ai_engine.monitor"):
            decide(DecisionInputs([s.candle(int(i)) for i in rows], f.tabular[rows], constant))
    finally:
        engine.close()
    assert "patchtst" in engine.flatline.flat and "xgb" not in engine.flatline.flat
    assert "[FLATLINE] patchtst" in caplog.text


# -- 8. sequence models train on time, not tiled features --------------------------------------------
def test_fm8_sequence_training_windows_are_consecutive_bars_of_distinct_channels(synthetic_models):
    """FM8: the sequence model was trained on windows of consecutive real bars with eight distinct
    channels, never a tabular row tiled over time or channels duplicated."""
    from ai_engine.agents import load_agent
    from ai_engine.data import synthetic_market
    from ai_engine.training import LabelConfig, build_dataset

    agent = load_agent("patchtst", synthetic_models["patchtst"])
    assert agent.feature_names_in_ == SEQUENCE_CHANNELS and len(set(agent.feature_names_in_)) == 8
    L = agent.seq_len_
    market = synthetic_market(list(SYMBOLS), interval="1h", n_bars=1500, seed=0)  # the fixture's training data
    ds = build_dataset(market, input_kind="sequence", label_config=LabelConfig(), seq_len=L)
    for part in (ds.train, ds.val):
        X = part.X
        assert (np.abs(np.diff(X, axis=1)).max(axis=2) > 0).all()  # every bar differs from the one before
        for i in range(X.shape[2]):
            for j in range(i):
                assert not np.allclose(X[..., i], X[..., j]), (SEQUENCE_CHANNELS[i], SEQUENCE_CHANNELS[j])
        for sym in SYMBOLS:
            f = compute_features(market[sym])
            sel = np.flatnonzero(part.symbol == sym)
            rows = np.searchsorted(f.open_time, part.open_time[sel])
            idx = rows[:, None] + np.arange(-L + 1, 1)
            np.testing.assert_array_equal(X[sel], f.sequence[idx])  # each window ends at its own bar


# -- 9. class imbalance: reported and refused ----------------------------------------------------------
def test_fm9_an_imbalanced_training_set_is_balanced_or_the_model_is_refused(tmp_path):
    """FM9: on ~92% HOLD labels an unweighted model says HOLD for every row and is refused (nothing
    saved, report attached); on ~81% HOLD a weighted model with no signal is refused too (its honest,
    prior-corrected probabilities say HOLD, or barely move); on near-balanced labels the default
    class weights give a model that is saved, with per-class behaviour and its spread reported."""
    from ai_engine.training import LabelConfig, TrainOptions, train_model

    def train(balance: str, band: float = 0.03):
        return train_model("lgbm", symbols=SYMBOLS, out_path=tmp_path / f"{balance}{band}.txt", synthetic=True,
                           options=TrainOptions(synthetic_bars=1500), threads=1, epochs=60, balance=balance,
                           label_config=LabelConfig(horizon=4, fee_band=band, mode="fixed"))

    with pytest.raises(DegenerateModelError, match=r"degenerate model refused \((100|9[5-9])\.\d% of validation "
                       r"predictions are HOLD|flat-lined"):
        train("weights", band=0.02)  # ~81% HOLD and no signal: the honest answer is HOLD, refused
    with pytest.raises(DegenerateModelError, match=r"100.0% of validation predictions are HOLD") as info:
        train("none")
    assert not list(tmp_path.iterdir())  # a refused model is never saved
    report = info.value.report
    assert report.train_label_share[1] > 0.85 and report.val.action_share[1] == 1.0
    assert {c.action: c.predicted for c in report.val.per_class}["BUY"] == 0
    _, report = train("weights", band=0.005)  # about a third HOLD
    assert (tmp_path / "weights0.005.txt").is_file()
    assert report.train_label_share[1] < 0.4 and {c.action for c in report.val.per_class} == {"SELL", "HOLD", "BUY"}
    assert max(report.val.action_share) < 0.95 and report.val.confidence_std >= 0.02
    assert all(c.predicted > 0 and c.recall > 0 for c in report.val.per_class)


# -- 10. time-ordered splits with a gap ----------------------------------------------------------------
def test_fm10_training_splits_are_time_ordered_with_a_gap_and_newest_first_is_refused(tmp_path, synthetic_series):
    """FM10: per symbol, train < validation < test in time, separated by the label horizon; a
    newest-first candle file or series is refused, never split."""
    import dataclasses

    from ai_engine.data import load_csv
    from ai_engine.exceptions import DataError
    from ai_engine.training import LabelConfig, build_dataset

    cfg = LabelConfig(horizon=6)
    ds = build_dataset(synthetic_series, input_kind="tabular", label_config=cfg)
    for sym in SYMBOLS:
        tr, va, te = (p.open_time[p.symbol == sym] for p in (ds.train, ds.val, ds.test))
        assert tr.max() + cfg.horizon * 3_600_000 < va.min() and va.max() + cfg.horizon * 3_600_000 < te.min()
        assert te.max() == synthetic_series[sym].open_time[-1 - cfg.horizon]  # the test part is the newest data
    s = synthetic_series["BTCUSDT"]
    rev = dataclasses.replace(s, **{f: getattr(s, f)[::-1].copy()
                                    for f in ("open_time", "open", "high", "low", "close", "volume")})
    with pytest.raises(DataError, match="newest-first"):
        build_dataset({"BTCUSDT": rev}, input_kind="tabular", label_config=cfg)
    csv = tmp_path / "BTCUSDT-1h.csv"
    rows = [f"{s.open_time[i]},{s.open[i]},{s.high[i]},{s.low[i]},{s.close[i]},{s.volume[i]}" for i in range(len(s))]
    csv.write_text("open_time,open,high,low,close,volume\n" + "\n".join(rows[::-1]) + "\n")
    with pytest.raises(DataError, match="newest first"):
        load_csv(csv)
