"""The ensemble rule: weighted vote, consensus gate, boost, and shadow isolation on every path."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import Action, ModelRole, ModelStatus
from ai_engine.types import ModelResult, Prediction

WEIGHTS = {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}


def res(model, action=None, conf=0.6, role=ModelRole.VOTER, status=ModelStatus.OK):
    pred = None
    if action is not None:
        probs = [(1 - conf) / 2] * 3
        probs[["SELL", "HOLD", "BUY"].index(action)] = conf
        pred = Prediction.from_probs(probs)
    return ModelResult(model=model, role=role, status=status, weight=WEIGHTS[model], prediction=pred)


def test_three_agreeing_voters_are_actionable_and_two_are_not():
    ens = EnsembleManager()
    d = ens.decide([res("xgb", "BUY"), res("lgbm", "BUY"), res("nhits", "BUY"), res("patchtst", "SELL")])
    assert (d.action, d.consensus_count, d.total_models, d.actionable) == (Action.BUY, 3, 4, True)
    # 2 of 4 agreeing (failure mode 4): the winner may be BUY but it is not actionable
    d = ens.decide([res("xgb", "BUY"), res("lgbm", "BUY"), res("nhits", "SELL", 0.5), res("patchtst", "HOLD", 0.4)])
    assert d.action is Action.BUY and d.consensus_count == 2 and not d.actionable


def test_unanimous_four_boosts_confidence_below_cap():
    ens = EnsembleManager(boost=1.1, cap=0.95)
    d = ens.decide([res(m, "SELL", 0.7) for m in WEIGHTS])
    assert d.boosted and abs(d.confidence - 0.77) < 1e-9 and d.consensus_count == 4
    d = ens.decide([res(m, "SELL", 0.9) for m in WEIGHTS])
    assert d.confidence == 0.95  # capped below 1 (failure mode 12)


def test_shadow_never_counts_and_three_voters_never_boost():
    ens = EnsembleManager()
    d = ens.decide([res("xgb", "BUY"), res("lgbm", "BUY"), res("nhits", "BUY"),
                    res("patchtst", "BUY", role=ModelRole.SHADOW)])
    assert d.consensus_count == 3 and d.total_models == 3 and not d.boosted


def test_failed_and_inactive_models_do_not_vote():
    ens = EnsembleManager()
    d = ens.decide([res("xgb", "BUY"), res("lgbm", "BUY"), res("nhits", None, status=ModelStatus.INACTIVE),
                    res("patchtst", None, status=ModelStatus.ERROR)])
    assert d.total_models == 2 and d.consensus_count == 2 and not d.actionable


def test_tie_between_actions_is_hold():
    ens = EnsembleManager()
    d = ens.decide([res("xgb", "BUY", 0.6), res("lgbm", "SELL", 0.6)])
    assert d.action is Action.HOLD and not d.actionable


def test_no_voters_is_hold_with_zero_models():
    d = EnsembleManager().decide([res("xgb", None, status=ModelStatus.INACTIVE)])
    assert (d.action, d.total_models, d.consensus_count, d.actionable) == (Action.HOLD, 0, 0, False)


actions = st.sampled_from(["BUY", "SELL", "HOLD"])
statuses = st.sampled_from([ModelStatus.OK, ModelStatus.ERROR, ModelStatus.INACTIVE, ModelStatus.LATE])


@given(
    votes=st.tuples(*[st.tuples(actions, st.floats(0.34, 1.0)) for _ in range(4)]),
    shadow=st.sampled_from(list(WEIGHTS)),
    shadow_status=statuses,
    shadow_action=st.one_of(st.none(), actions),
)
def test_decision_with_a_shadow_model_equals_decision_without_it(votes, shadow, shadow_status, shadow_action):
    """For any predictions, a model in shadow (any status, any output) changes nothing."""
    ens = EnsembleManager()
    results = [res(m, a, c) for m, (a, c) in zip(WEIGHTS, votes, strict=True)]
    idx = list(WEIGHTS).index(shadow)
    shadowed = res(shadow, shadow_action, 0.9, role=ModelRole.SHADOW, status=shadow_status)
    with_shadow = ens.decide(results[:idx] + [shadowed] + results[idx + 1 :])
    absent = ens.decide(results[:idx] + results[idx + 1 :])
    for f in ("action", "confidence", "consensus_count", "total_models", "actionable", "boosted", "scores"):
        assert getattr(with_shadow, f) == getattr(absent, f), f
    assert dataclasses.replace(with_shadow, results=()) == dataclasses.replace(absent, results=())


@given(
    rows=st.lists(
        st.tuples(*[st.tuples(st.one_of(st.none(), actions), st.floats(0.34, 1.0),
                              st.sampled_from([ModelStatus.OK, ModelStatus.OK, ModelStatus.ERROR, ModelStatus.LATE]))
                    for _ in range(5)]),
        min_size=1, max_size=30),
    roles=st.tuples(*[st.sampled_from([ModelRole.VOTER, ModelRole.VOTER, ModelRole.SHADOW, ModelRole.DISABLED])
                      for _ in range(5)]),
    weights=st.tuples(*[st.sampled_from([0.0, 10.0, 20.0, 25.0, 30.0, 33.3]) for _ in range(5)]),
    present=st.integers(1, 5),
    rule=st.tuples(st.integers(1, 4), st.sampled_from([1.0, 1.1, 1.25]), st.sampled_from([0.9, 0.95]),
                   st.integers(3, 5)),
)
def test_decide_many_is_decide_per_row(rows, roles, weights, present, rule):
    """The batch vote equals the per-row vote field for field, bit for bit: random predictions,
    errors, late and missing predictions, shadows and disabled models, zero weights, any rule."""
    ens = EnsembleManager(min_consensus=rule[0], boost=rule[1], cap=rule[2], n_configured=rule[3])
    names = ["xgb", "lgbm", "nhits", "patchtst", "extra"][:present]
    columns = []
    for j, name in enumerate(names):
        col = []
        for row in rows:
            action, conf, status = row[j]
            pred = None
            if action is not None:
                probs = [(1 - conf) / 2] * 3
                probs[["SELL", "HOLD", "BUY"].index(action)] = conf
                pred = Prediction.from_probs(probs)
            col.append(ModelResult(model=name, role=roles[j], status=status, weight=weights[j], prediction=pred))
        columns.append(col)
    expected = [ens.decide(list(row)) for row in zip(*columns, strict=True)]
    vote = ens.decide_many(columns, len(rows))
    assert vote.decisions() == expected
    assert vote.actionable.tolist() == [d.actionable for d in expected]
    assert ens.decide_many([[] for _ in names], 0).decisions() == []
    assert ens.decide_many([], 2).decisions() == [ens.decide([])] * 2  # no model outside the shadows
