"""Planted edge: a seeded market with a known predictable component. A challenger that sees it is
BETTER, with intervals that exclude zero; the same predictions shuffled in time are not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from ai_engine.analysis import analyze
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import CLASS_ORDER, Action, ModelRole, ModelStatus
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import (
    INTERVAL_MS,
    Candle,
    DecisionRecord,
    ModelResult,
    Prediction,
    event_id_for,
)

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
IV = "1h"
BETA, SIGMA, BAND = 0.006, 0.006, 0.004  # next bar's log return = BETA * z + SIGMA * noise
WEIGHTS = {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}
HOURS = 24 * 365 * 60.0


def _true_probs(z: np.ndarray) -> np.ndarray:
    """P(SELL, HOLD, BUY) of the next bar given z: exactly calibrated."""
    up = norm.cdf((BETA * z - BAND) / SIGMA)
    down = norm.cdf((-BAND - BETA * z) / SIGMA)
    return np.stack([down, 1 - up - down, up], axis=1)


def _noise_probs(rng, n: int) -> np.ndarray:
    return rng.dirichlet([4, 5, 4], n)


def _sha(key: str) -> str:
    return "cd" * 32 if key == "patchtst" else (key.encode().hex() * 64)[:64]


def planted_store(path, *, challenger: str = "seen", n: int = 1500, seed: int = 0, symbols=("BTCUSDT", "ETHUSDT"),
                  synthetic: bool = False, shadows=None, voting: tuple[str, ...] = ()):
    """``shadows(rng, seen)``, if given, returns the shadows' probabilities by model key (an extra
    shadow's key is ``<model>_<tag>``, as the engine names them); else the one shadow ``patchtst`` sees z (``challenger="seen"``) or
    has the same predictions shuffled in time. ``voting``: shadows' keys that vote instead (at
    their model's weight)."""
    rng = np.random.default_rng(seed)
    iv = INTERVAL_MS[IV]
    manager = EnsembleManager(min_consensus=3, boost=1.1, cap=0.95, n_configured=4)
    records, candles = [], []
    for sym in symbols:
        z = rng.normal(size=n)
        r = BETA * z + SIGMA * rng.normal(size=n)  # from close t to close t+1, known at t through z
        close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
        for i in range(n + 1):
            o = close[i - 1] if i else close[0]
            candles.append(Candle(sym, IV, T0 + i * iv, float(o), float(max(o, close[i])) * 1.001,
                                  float(min(o, close[i])) * 0.999, float(close[i]), 1.0, synthetic))
        ch = _true_probs(z)
        if shadows is not None:
            shadow_probs = shadows(rng, ch)
        else:
            shadow_probs = {"patchtst": ch[rng.permutation(n)] if challenger == "shuffled" else ch}
        voters = {m: _noise_probs(rng, n) for m in ("xgb", "lgbm", "nhits")}
        for i in range(n):
            t = T0 + i * iv
            res = [ModelResult(m, ModelRole.VOTER, ModelStatus.OK, WEIGHTS[m], "v1", m * 8,
                               Prediction.from_probs(tuple(voters[m][i]))) for m in ("xgb", "lgbm", "nhits")]
            res += [ModelResult(k, ModelRole.VOTER if k in voting else ModelRole.SHADOW, ModelStatus.OK,
                                WEIGHTS["patchtst"], "v2", _sha(k), Prediction.from_probs(tuple(p[i])))
                    for k, p in shadow_probs.items()]
            d = manager.decide(res)
            records.append(DecisionRecord(
                event_id=event_id_for("ai.decision", sym, IV, t), symbol=sym, interval=IV, candle_open_time=t,
                decided_at=t + iv, entry_price=float(close[i]), decision=d, published=d.actionable,
                blocked_reason=None, config_id="planted", decision_latency_ms=1.0, synthetic=synthetic,
                intent_event_id=event_id_for("trade.intent", sym, IV, t) if d.actionable else None))
    store = TelemetryStore(path)
    lc = {"horizon": 1, "mode": "fixed", "fee_band": BAND, "k": 0.5, "vol_window": 168}
    models = {m: {"role": "voter", "weight": WEIGHTS[m], "status": "active", "version": "v1", "sha256": m * 8,
                  "label_config": lc} for m in ("xgb", "lgbm", "nhits")}
    models |= {k: {"role": "voter" if k in voting else "shadow", "weight": WEIGHTS["patchtst"], "status": "active",
                   "version": "v1",
                   "sha256": m_sha, "label_config": lc} | ({"kind": k.split("_")[0]} if k != "patchtst" else {})
               for k, m_sha in ((k, _sha(k)) for k in shadow_probs)}
    store.record_config("planted", "start", {"models": models, "min_consensus": 3, "confidence_boost": 1.1,
                                             "confidence_cap": 0.95})
    store.record_decisions(records, candles)
    store.close()
    return path


def test_a_challenger_that_sees_the_signal_is_better(tmp_path):
    res = analyze(planted_store(tmp_path / "skilled.sqlite", challenger="skilled"), HOURS)
    e = res.edge
    assert e.revote_mismatches == 0
    assert e.verdict == "BETTER"
    prior = e.scores[0]
    assert prior.reference == "class prior" and prior.log_loss_test.hi < 0 and prior.skill > 0.05
    assert e.forecast_edge.log_loss_test.hi < 0  # the ensemble forecasts better with it
    assert e.money_edge.lo > 0 and e.money_edge.boot_lo > 0  # option A earns more than the champion
    a = {s.name: s for s in e.strategies}
    assert a["option A"].stats.net_return > a["champion (as recorded)"].stats.net_return
    assert a["patchtst alone (challenger)"].stats.avg_trade > 0


def test_an_edge_seen_only_on_synthetic_candles_is_never_recommended_for_option_a(tmp_path):
    res = analyze(planted_store(tmp_path / "synthetic.sqlite", challenger="skilled", synthetic=True), HOURS)
    assert res.edge.verdict == "BETTER" and res.edge.synthetic
    assert res.recommendation.option == "B" and "synthetic" in res.recommendation.reason
    real = analyze(planted_store(tmp_path / "real.sqlite", challenger="skilled"), HOURS)
    assert real.primary.gates[3].status == "PASS" and real.recommendation.option == "A"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_predictions_shuffled_in_time_are_not_better(tmp_path, seed):
    res = analyze(planted_store(tmp_path / f"shuffled{seed}.sqlite", challenger="shuffled", seed=seed), HOURS)
    e = res.edge
    assert e.verdict in ("WORSE", "NOT DISTINGUISHABLE YET")
    assert not (e.money_edge.lo > 0 and e.money_edge.boot_lo > 0)
    assert res.recommendation.option == "C"


def test_true_probs_are_probabilities():
    p = _true_probs(np.linspace(-4, 4, 101))
    assert np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    assert math.isclose(p[50, 0], p[50, 2])
    assert CLASS_ORDER[int(np.argmax(p[-1]))] is Action.BUY
