"""A model's results kept as arrays (``ResultColumn``, from COLUMN_ROWS rows) are the results the
per-row path builds, row for row, and the vote over them is the same: rows not fed (non-finite
input), rows whose output is invalid, and good rows alike."""

from __future__ import annotations

import numpy as np
import pytest

from ai_engine import model_calls
from ai_engine.agents.base import PredictionBatch
from ai_engine.engine import DecisionInputs
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import ModelRole
from ai_engine.features import compute_features
from ai_engine.model_slots import load_slots
from tests.core.conftest import make_settings
from tests.helpers import AgentWrapper


class Spoiled(AgentWrapper):
    """The real agent's predictions, two rows of them made invalid (a NaN, a sum of 1.2)."""

    def predict(self, X):
        real = self._agent.predict(X)
        probs = real.probs.copy()
        probs[5] = np.nan
        probs[7] = [0.5, 0.4, 0.3]
        return PredictionBatch(probs, None if real.logits is None else real.logits.copy())


@pytest.mark.parametrize("model", ["xgb", "nhits"])
def test_result_column_equals_the_per_row_results(tmp_path, synthetic_models, synthetic_series, monkeypatch, model):
    settings, _ = make_settings(tmp_path, synthetic_models, PATCHTST_ROLE="disabled")
    slots = load_slots(settings)
    series = synthetic_series["BTCUSDT"]
    frame = compute_features(series)
    rows = np.flatnonzero(frame.valid_windows(64))[-40:]
    from ai_engine.features import sequence_windows

    tab = np.array(frame.tabular[rows])
    win = sequence_windows(frame.sequence, rows, 64)
    tab[3, 0] = np.nan
    win[3, -1, 0] = np.nan  # row 3 is not fed to either kind of model
    inputs = DecisionInputs([series.candle(int(i)) for i in rows], tab, win)
    slot = slots[model]
    slot.agent = Spoiled(slot.agent)

    monkeypatch.setattr(model_calls, "COLUMN_ROWS", 1)
    column = model_calls.run_slot(slot, inputs)
    monkeypatch.setattr(model_calls, "COLUMN_ROWS", 10**9)
    per_row = model_calls.run_slot(slot, inputs)
    assert isinstance(column, model_calls.ResultColumn) and isinstance(per_row, list)
    assert [r.reason for r in per_row][3] == model_calls.NOT_FED
    # the spoiled rows 5 and 7 of what was fed are rows 6 and 8 of the batch (row 3 was not fed)
    assert per_row[6].reason == "invalid output: non-finite output"
    assert per_row[8].reason.startswith("invalid output: invalid probabilities")
    assert sum(r.status.value == "ok" for r in per_row) == 37
    for a, b in zip(column, per_row, strict=True):
        assert (a.status, a.reason, a.prediction) == (b.status, b.reason, b.prediction)
    vote = EnsembleManager(min_consensus=1, n_configured=1)
    x, y = vote.decide_many([column], len(rows)), vote.decide_many([per_row], len(rows))
    for name in ("action", "confidence", "consensus_count", "total_models", "actionable", "scores"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
    assert y.total_models.sum() == 37  # every good row voted

    slot.role = ModelRole.SHADOW  # the same arrays from a shadow: recorded, never a vote
    monkeypatch.setattr(model_calls, "COLUMN_ROWS", 1)
    shadow = model_calls.run_slot(slot, inputs)
    assert isinstance(shadow, model_calls.ResultColumn) and not shadow.vote_arrays()[0].any()
    assert vote.decide_many([shadow], len(rows)).total_models.sum() == 0
    assert sum(r.status.value == "ok" and r.shadow for r in shadow) == 37
