"""The decision path does not wait on slow models: a held shadow is recorded ``late`` and joined
later while the decision and its intent go out; a held voter is excluded with its timeout as the
reason, skipped (not piled up) while it hangs, and back once it returns. No timed assertions:
models are held on Events."""

from __future__ import annotations

import os
import threading

import pytest

from ai_engine.analysis import analyze
from ai_engine.cpu_affinity import ALL_CPUS, set_cpus
from ai_engine.engine import DecisionEngine
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.live import CandleProcessor
from ai_engine.model_slots import load_slots
from ai_engine.runtime import open_engine
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


def _cpus_of(thread_name: str) -> set[int]:
    (thread,) = [t for t in threading.enumerate() if t.name == thread_name]
    return os.sched_getaffinity(thread.native_id)


@pytest.mark.skipif(len(ALL_CPUS) < 2, reason="pinning the decision path needs 2 or more CPUs")
def test_the_deciding_thread_and_its_voter_worker_share_one_cpu_and_the_shadow_does_not(tmp_path, tree_models, market):
    """Live (AI_ENGINE_DECISION_CPU=auto): the thread that decides and the voter worker run on the
    highest CPU; the shadow's worker thread, pipe thread and process, started from or for that
    thread, keep every CPU; a reload to ``off`` gives the deciding path every CPU back."""
    env = {"LGBM_ROLE": "shadow", "ENSEMBLE_MIN_CONSENSUS": "1", "SHADOW_DEADLINE_MS": "60000"}  # no busy-machine `late`
    settings = tree_settings(tmp_path, tree_models, **env)
    assert settings.decision_cpu == max(ALL_CPUS)
    engine = open_engine(settings)  # the shadow in its own process, the default
    assert engine.state.slots["lgbm"].agent.wait_started(120) is None
    seen: dict[str, object] = {}

    def live() -> None:  # the service's deciding thread (not pytest's, which must stay unpinned)
        proc = CandleProcessor(engine, "1h")
        proc.prime(c for batch in market[:PRIME] for c in batch)
        for batch in market[PRIME:PRIME + 10]:
            engine.pin_decisions()
            seen.setdefault("records", []).extend(proc.process(batch))
        seen["decider"], seen["voters"] = os.sched_getaffinity(0), _cpus_of("voters-0")
        seen["shadow worker"], seen["shadow pipe"] = _cpus_of("model-lgbm"), _cpus_of("model-lgbm-pipe")
        seen["shadow process"] = os.sched_getaffinity(engine.state.slots["lgbm"].agent.pid)
        assert engine.reload(tree_settings(tmp_path, tree_models, **env, AI_ENGINE_DECISION_CPU="off"))
        engine.pin_decisions()
        proc.process(market[PRIME + 10])
        seen["decider off"], seen["voters off"] = os.sched_getaffinity(0), _cpus_of("voters-0")

    worker = threading.Thread(target=live)
    try:
        worker.start()
        worker.join(120)
    finally:
        engine.close()
    cpu = max(ALL_CPUS)
    assert seen["decider"] == seen["voters"] == {cpu}
    assert seen["shadow worker"] == seen["shadow pipe"] == seen["shadow process"] == set(ALL_CPUS)
    assert seen["decider off"] == seen["voters off"] == set(ALL_CPUS)
    records = seen["records"]
    assert len(records) == 20 and all(r.decision.results[1].status.value == "ok" for r in records)
    assert os.sched_getaffinity(0) == set(ALL_CPUS)  # pytest's own thread untouched


@pytest.mark.skipif(not ALL_CPUS, reason="no CPU affinity on this platform")
def test_a_cpu_that_cannot_be_used_is_logged_and_the_thread_keeps_its_cpus(caplog):
    """A CPU taken away after the start (a cgroup change) must never stop the deciding thread."""
    before = os.sched_getaffinity(0)
    set_cpus(0, frozenset({4095}))
    assert os.sched_getaffinity(0) == before
    assert "could not run thread 0 on CPUs [4095]" in caplog.text
