"""From LANE_ROWS rows a batch's sequence voter runs beside the tabular voters, on the CPUs the
decision does not use; below, the voters run in turn on the decision's CPU. Either way the
decisions are the same. No timed assertions: concurrency is seen through an Event."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from ai_engine import model_calls
from ai_engine.cpu_affinity import ALL_CPUS
from ai_engine.engine import DecisionInputs
from ai_engine.features import compute_features, sequence_windows
from ai_engine.runtime import open_engine
from tests.core.conftest import make_settings
from tests.helpers import AgentWrapper


class Watched(AgentWrapper):
    """A real agent that notes where it ran and, for a tabular one, whether the sequence voter was
    inside its own forward meanwhile."""

    def __init__(self, agent, inside: threading.Event, wait_s: float) -> None:
        super().__init__(agent)
        self.inside, self.wait_s = inside, wait_s
        self.saw_sequence_inside: bool | None = None
        self.cpus: set[int] | None = None
        self.thread: int | None = None

    def predict(self, X):
        self.thread, self.cpus = threading.get_native_id(), os.sched_getaffinity(0)
        if self._agent.input_kind == "sequence":
            self.inside.set()
        else:
            self.saw_sequence_inside = self.inside.wait(self.wait_s)
        return self._agent.predict(X)


def batch(engine, series, n: int) -> DecisionInputs:
    frame = compute_features(series)
    seq = engine.state.seq_len
    rows = np.flatnonzero(frame.valid_windows(seq))[-n:]
    return DecisionInputs([series.candle(int(i)) for i in rows], np.asarray(frame.tabular[rows]),
                          sequence_windows(frame.sequence, rows, seq))


def decide_watched(tmp_path, models, series, n: int, wait_s: float, **env: str):
    settings, _ = make_settings(tmp_path, models, PATCHTST_ROLE="disabled", MODEL_TIMEOUT_MS="60000", **env)
    engine = open_engine(settings)
    inside = threading.Event()
    watched = {}
    for name in ("xgb", "lgbm", "nhits"):
        slot = engine.state.slots[name]
        watched[name] = slot.agent = Watched(slot.agent, inside, wait_s)
    got = {}

    def live() -> None:  # the service's deciding thread (pytest's own must stay unpinned)
        engine.pin_decisions()
        got["records"] = engine.decide(batch(engine, series, n))
        got["decider"] = os.sched_getaffinity(0)

    worker = threading.Thread(target=live)
    worker.start()
    worker.join(120)
    engine.close()
    return got, watched


def summary(records):
    return [(r.candle_open_time, r.decision.action, r.decision.confidence, r.decision.consensus_count)
            for r in records]


def test_from_lane_rows_the_sequence_voter_runs_beside_the_tabular_ones(tmp_path, synthetic_models,
                                                                        synthetic_series):
    series = synthetic_series["BTCUSDT"]
    n = model_calls.LANE_ROWS + 2
    got, watched = decide_watched(tmp_path / "lanes", synthetic_models, series, n, wait_s=20)
    assert len(got["records"]) == n
    assert watched["xgb"].saw_sequence_inside and watched["lgbm"].saw_sequence_inside
    assert watched["nhits"].thread != watched["xgb"].thread == watched["lgbm"].thread
    if len(ALL_CPUS) > 1:  # pinned: the tabular lane on the decision's CPU, the sequence lane on the others
        cpu = max(ALL_CPUS)
        assert got["decider"] == watched["xgb"].cpus == {cpu}
        assert watched["nhits"].cpus == set(ALL_CPUS) - {cpu}

    # the same rows with lanes off give the same decisions
    lanes_from = model_calls.LANE_ROWS
    try:
        model_calls.LANE_ROWS = 10**9
        alone, watched_alone = decide_watched(tmp_path / "alone", synthetic_models, series, n, wait_s=0.2)
    finally:
        model_calls.LANE_ROWS = lanes_from
    assert summary(alone["records"]) == summary(got["records"])
    assert watched_alone["xgb"].saw_sequence_inside is False  # in turn: xgb ran before nhits began
    assert watched_alone["nhits"].thread == watched_alone["xgb"].thread


@pytest.mark.parametrize(("rows", "env"), [(1, {}), (model_calls.LANE_ROWS - 1, {}),
                                           (model_calls.LANE_ROWS + 2, {"AI_ENGINE_VOTER_LANES": "1"})])
def test_below_lane_rows_or_with_one_lane_the_voters_run_in_turn(tmp_path, synthetic_models, synthetic_series,
                                                                 rows, env):
    got, watched = decide_watched(tmp_path, synthetic_models, synthetic_series["ETHUSDT"], rows, wait_s=0.2, **env)
    assert len(got["records"]) == rows
    assert watched["xgb"].saw_sequence_inside is False and watched["lgbm"].saw_sequence_inside is False
    assert watched["nhits"].thread == watched["xgb"].thread
