"""The decision path does not wait on slow models: a held shadow is recorded ``late`` and joined
later while the decision and its intent go out; a held voter is excluded with its timeout as the
reason, skipped (not piled up) while it hangs, and back once it returns. No timed assertions:
models are held on Events."""

from __future__ import annotations

import threading

import pytest

from ai_engine.analysis import analyze
from ai_engine.engine import DecisionEngine
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.live import CandleProcessor
from ai_engine.model_slots import load_slots
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.perf.conftest import Held, Sink, tree_settings

PRIME = 400


def build(tmp_path, models, hold: str, **env):
    settings = tree_settings(tmp_path, models, **env)
    slots = load_slots(settings)
    held = Held(slots[hold].agent)
    slots[hold].agent = held
    sink = Sink()
    engine = DecisionEngine(settings, store=TelemetryStore(settings.store_path),
                            governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                            sinks=[sink], slots=slots)
    return engine, held, sink


def test_held_shadow_does_not_hold_the_decision_or_its_intent(tmp_path, tree_models, market):
    engine, held, sink = build(tmp_path, tree_models, "lgbm", LGBM_ROLE="shadow", ENSEMBLE_MIN_CONSENSUS="1",
                               SHADOW_DEADLINE_MS="20")
    proc = CandleProcessor(engine, "1h")
    proc.prime(c for batch in market[:PRIME] for c in batch)
    try:
        records = [r for batch in market[PRIME:] for r in proc.process(batch)]
        # every decision is out while the shadow's first call has not returned
        assert held.entered.is_set() and not held.release.is_set()
        assert len(records) == 2 * len(market[PRIME:])
        assert sink.records == records  # handed to the publisher, in order
        for rec in records:
            shadow = rec.decision.results[1]
            assert shadow.model == "lgbm" and shadow.shadow and shadow.status.value == "late"
            assert "joined to the record later" in shadow.reason
            assert rec.decision.total_models == 1  # the shadow never voted
        published = [r for r in records if r.published]
        assert published, "min consensus 1 with a live governor must publish some intents"
        entry = published[0].intent_payload()["model_breakdown"]["lgbm"]
        assert entry["shadow"] is True and entry["status"] == "late"
        store = engine.store
        assert store.count("decisions") == len(records) and store.count("intents") == len(published)
        late_rows = store.connection.execute("SELECT COUNT(*) FROM predictions WHERE model='lgbm' AND status='late'")
        assert late_rows.fetchone()[0] == len(records)
        waiting = analyze(engine.state.settings.store_path, 24 * 365, model="lgbm").primary
        assert dict(waiting.skipped) == {"status late, no result joined": len(records)} and waiting.n_late == 0
    finally:
        held.release.set()
        engine.close()
    # once released, the shadow's real results are joined to every recorded decision
    rows = engine.store.connection.execute(
        "SELECT status, COUNT(*), COUNT(action) FROM predictions WHERE model='lgbm' GROUP BY status").fetchall()
    assert rows == [("ok", len(records), len(records))]
    reasons = engine.store.connection.execute("SELECT DISTINCT reason FROM predictions WHERE model='lgbm'").fetchall()
    assert reasons == [("joined late",)]  # and the analysis counts them as such
    assert analyze(engine.state.settings.store_path, 24 * 365, model="lgbm").primary.n_late == len(records)


@pytest.mark.parametrize("hold", ["xgb", "lgbm"])  # the first voter of the run (the others go on without it), the last
def test_held_voter_times_out_is_skipped_while_hung_and_comes_back(tmp_path, tree_models, market, hold):
    engine, held, _ = build(tmp_path, tree_models, hold, MODEL_TIMEOUT_MS="250")
    k_held, k_other = (0, 1) if hold == "xgb" else (1, 0)
    proc = CandleProcessor(engine, "1h")
    proc.prime(c for batch in market[:PRIME] for c in batch)
    try:
        first = proc.process(market[PRIME])
        assert held.entered.is_set()
        for rec in first:
            stuck, other = rec.decision.results[k_held], rec.decision.results[k_other]
            assert stuck.status.value == "error" and stuck.reason == "timed out after 250 ms" and stuck.prediction is None
            assert other.status.value == "ok" and rec.decision.total_models == 1
        second = proc.process(market[PRIME + 1])
        assert all(r.decision.results[k_held].reason.startswith("skipped: a call that timed out") for r in second)
        assert all(r.decision.results[k_other].status.value == "ok" for r in second)
        assert held.calls == 1  # the hung call was not queued behind or run again
        # one voter worker left inside the hung call, one running the others: no thread per decision
        assert sum(t.name.startswith("voters-") for t in threading.enumerate()) == 2
    finally:
        held.release.set()
    assert engine.wait_idle(timeout=60) == 0
    third = proc.process(market[PRIME + 2])
    assert all(r.decision.results[k_held].status.value == "ok" and r.decision.total_models == 2 for r in third)
    engine.close()
    reasons = engine.store.connection.execute(
        "SELECT DISTINCT reason FROM predictions WHERE model=? AND status='error'", (hold,)).fetchall()
    assert ("timed out after 250 ms",) in reasons
