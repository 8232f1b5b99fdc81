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
from ai_engine.features import DeferredArray, compute_features, sequence_windows
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


def batch(engine, series, n: int, computed_in: list | None = None) -> DecisionInputs:
    """The last n decidable rows; with ``computed_in``, their tabular rows deferred as serving
    defers them, noting the thread that computes them."""
    frame = compute_features(series)
    seq = engine.state.seq_len
    rows = np.flatnonzero(frame.valid_windows(seq))[-n:]
    rows_tabular = np.asarray(frame.tabular[rows])
    tabular = rows_tabular
    if computed_in is not None:
        def compute() -> np.ndarray:
            computed_in.append(threading.get_native_id())
            return rows_tabular

        tabular = DeferredArray(compute)
    return DecisionInputs([series.candle(int(i)) for i in rows], tabular, sequence_windows(frame.sequence, rows, seq))


def decide_watched(tmp_path, models, series, n: int, wait_s: float, computed_in: list | None = None, **env: str):
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
        got["records"] = engine.decide(batch(engine, series, n, computed_in))
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


def test_deferred_tabular_rows_are_computed_in_the_tabular_lane(tmp_path, synthetic_models, synthetic_series):
    """Serving's deferred tabular rows: computed once, by the tabular voters' lane (the sequence
    voter already runs beside it), and the decisions are those of rows computed at once."""
    series = synthetic_series["BTCUSDT"]
    n = model_calls.LANE_ROWS + 2
    computed_in: list[int] = []
    got, watched = decide_watched(tmp_path / "deferred", synthetic_models, series, n, wait_s=20, computed_in=computed_in)
    assert computed_in == [watched["xgb"].thread] and watched["xgb"].thread != watched["nhits"].thread
    assert watched["xgb"].saw_sequence_inside
    plain, _ = decide_watched(tmp_path / "plain", synthetic_models, series, n, wait_s=20)
    assert summary(got["records"]) == summary(plain["records"])


def test_a_deferred_tabular_row_that_is_not_finite_is_never_fed(tmp_path, synthetic_models, synthetic_series):
    """A deferred tabular row is checked when it is read, not before dispatch: one that turns out
    not finite is not fed to the tabular voters (NOT_FED), so they cast no vote on it."""
    settings, _ = make_settings(tmp_path, synthetic_models, PATCHTST_ROLE="disabled")
    engine = open_engine(settings)
    inputs = batch(engine, synthetic_series["ETHUSDT"], 3)
    broken = np.array(inputs.tabular)
    broken[1, 0] = np.nan
    records = engine.decide(DecisionInputs(inputs.candles, DeferredArray(lambda: broken), inputs.windows))
    engine.close()
    results = {r.model: r for r in records[1].decision.results}
    for name in ("xgb", "lgbm"):
        assert results[name].status.value == "error" and results[name].reason == model_calls.NOT_FED
    assert results["nhits"].prediction is not None
    assert records[1].decision.consensus_count <= 1
    assert all(r.status.value == "ok" for r in records[0].decision.results if r.model in ("xgb", "lgbm"))

