"""The 4/4 boost through the real DecisionEngine on real trained models: three agreeing voters
beside a shadow never boost (not even when the shadow agrees too), four agreeing voters do.

The boost needs every configured model to vote and agree (spec: "4/4 boosts confidence"); a
shadow is configured but never votes, so with one the ensemble can never be unanimous.
"""

from __future__ import annotations

import pytest

from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from tests.core.conftest import make_settings

BOOST, CAP = 1.1, 0.95  # ENSEMBLE_CONFIDENCE_BOOST and ENSEMBLE_CONFIDENCE_CAP defaults


def _replay(home, models, series, **env) -> list[dict]:
    settings, _ = make_settings(home, models, **env)
    assert (settings.confidence_boost, settings.confidence_cap) == (BOOST, CAP)
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, series)
        return engine.store.decisions_json()
    finally:
        engine.close()


def _agreeing_voters(d: dict) -> list[dict]:
    return [e for e in d["model_breakdown"].values()
            if not e["shadow"] and e["status"] == "ok" and e["action"] == d["action"]]


def _weighted_confidence(d: dict) -> float:
    """The unboosted confidence: the weighted mean confidence of the agreeing voters."""
    agree = _agreeing_voters(d)
    return sum(e["weight"] * e["confidence"] for e in agree) / sum(e["weight"] for e in agree)


def test_three_agreeing_voters_beside_a_shadow_never_boost(tmp_path, synthetic_models, synthetic_series):
    """PatchTST in shadow: 3/3 agreeing voters (the shadow agreeing or not) keep the weighted mean."""
    got = _replay(tmp_path, synthetic_models, synthetic_series, PATCHTST_SHADOW_ONLY="true")
    unanimous = [d for d in got if d["total_models"] == 3 and d["consensus_count"] == 3]
    with_shadow = [d for d in unanimous if d["model_breakdown"]["patchtst"]["action"] == d["action"]]
    assert len(unanimous) >= 20 and len(with_shadow) >= 5, (len(unanimous), len(with_shadow))
    assert not [d for d in got if d["boosted"]]
    for d in unanimous:
        assert d["confidence"] == pytest.approx(_weighted_confidence(d), abs=2e-6)


def test_four_agreeing_voters_boost(tmp_path, synthetic_models, synthetic_series):
    """All four voting: 4/4 agreement boosts (×1.1, capped at 0.95); 3 of 4 does not."""
    got = _replay(tmp_path, synthetic_models, synthetic_series)
    four = [d for d in got if d["total_models"] == 4 and d["consensus_count"] == 4]
    below_cap = [d for d in four if _weighted_confidence(d) < CAP]
    assert len(below_cap) >= 5, len(below_cap)
    for d in below_cap:
        assert d["boosted"] is True
        assert d["confidence"] == pytest.approx(min(_weighted_confidence(d) * BOOST, CAP), abs=2e-6)
    three = [d for d in got if d["consensus_count"] == 3]
    assert three and not [d for d in three if d["boosted"]]
    for d in three:
        assert d["confidence"] == pytest.approx(_weighted_confidence(d), abs=2e-6)
