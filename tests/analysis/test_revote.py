"""The vectorised re-vote is the engine's rule, bit for bit, on any results the engine can see."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_engine.analysis.revote import Rule, revote
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import CLASS_ORDER, ModelRole, ModelStatus
from ai_engine.types import ModelResult, Prediction

MODELS = ("xgb", "lgbm", "nhits", "patchtst")

_row = st.tuples(
    st.integers(0, 2),  # action
    st.sampled_from([0.34, 0.4, 0.5, 0.55, 0.6, 0.61, 0.7, 0.8, 0.9, 0.99, 1 / 3, 0.5000001]),
    st.sampled_from(["voter", "voter", "voter", "shadow", "disabled"]),
    st.sampled_from(["ok", "ok", "ok", "error"]),
)


def _results(row, weights):
    out = []
    for (a, c, role, status), name, w in zip(row, MODELS, weights, strict=True):
        probs = [(1 - c) / 2] * 3
        probs[a] = c
        pred = Prediction(CLASS_ORDER[a], c, tuple(probs), 0.0) if status == "ok" else None
        out.append(ModelResult(name, ModelRole(role), ModelStatus(status), w, prediction=pred))
    return out


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(_row, _row, _row, _row), min_size=1, max_size=40),
    weights=st.sampled_from([(25, 25, 30, 20), (27.5, 27.5, 40, 5), (25, 25, 25, 25), (10, 0.1, 60, 29.9), (1, 1, 1, 1)]),
    min_consensus=st.integers(1, 4),
    boost=st.sampled_from([1.0, 1.1, 1.5]),
    cap=st.sampled_from([0.9, 0.95, 0.999]),
)
def test_revote_equals_the_ensemble_manager(rows, weights, min_consensus, boost, cap):
    manager = EnsembleManager(min_consensus=min_consensus, boost=boost, cap=cap, n_configured=4)
    action = np.array([[r[0] for r in row] for row in rows], dtype=np.int8)
    conf = np.array([[r[1] for r in row] for row in rows])
    votes = np.array([[r[2] == "voter" and r[3] == "ok" for r in row] for row in rows])
    got = revote(action, conf, votes, np.array(weights, dtype=float), Rule(min_consensus, boost, cap, 4))
    for i, row in enumerate(rows):
        want = manager.decide(_results(row, weights))
        assert CLASS_ORDER[got.action[i]] is want.action
        assert got.confidence[i] == want.confidence  # exactly, not approximately
        assert got.consensus[i] == want.consensus_count
        assert got.total[i] == want.total_models
        assert got.actionable[i] == want.actionable
        assert got.boosted[i] == want.boosted


def test_blocks_of_rows_give_what_one_pass_gives(monkeypatch):
    """The re-vote runs in blocks of rows (memory stays flat on 10M predictions): the blocks' edges
    change nothing, with per-row weights too."""
    import ai_engine.analysis.revote as rv

    rng = np.random.default_rng(3)
    n = 1000
    action = rng.integers(0, 3, (n, 4)).astype(np.int8)
    conf = rng.uniform(0.34, 0.99, (n, 4))
    votes = rng.random((n, 4)) < 0.85
    weights = np.where(rng.random((n, 4)) < 0.5, 25.0, 27.5)
    rule = Rule(3, 1.1, 0.95, 4)
    whole = revote(action, conf, votes, weights, rule)
    monkeypatch.setattr(rv, "BLOCK", 97)  # 11 blocks, the last one short
    blocks = revote(action, conf, votes, weights, rule)
    for field in rv.Vote.__slots__:
        assert np.array_equal(getattr(whole, field), getattr(blocks, field)), field
