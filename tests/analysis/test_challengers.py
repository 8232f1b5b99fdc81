"""Several challengers at once (issue 18, item 4): Holm's correction over their p-values of
"better", the best one named only if it survives, and its Sharpe deflated for every trial."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from ai_engine.analysis import analyze_challengers
from ai_engine.analysis.challengers import compare_challengers, expected_max_sharpe, holm
from ai_engine.cli.main import app
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import ModelRole, ModelStatus
from ai_engine.exceptions import ConfigError
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import (
    INTERVAL_MS,
    Candle,
    DecisionRecord,
    ModelResult,
    Prediction,
    event_id_for,
)
from tests.analysis.test_planted_edge import (
    BAND,
    BETA,
    HOURS,
    IV,
    SIGMA,
    T0,
    WEIGHTS,
    _noise_probs,
    _true_probs,
)

CHALLENGERS = ("patchtst", "patchtst_shuffled", "patchtst_noise")


def _store(path, n: int = 1500, seed: int = 0):
    """The planted market of test_planted_edge with three shadows: one sees the predictable
    component, one has the same predictions shuffled in time, one is noise."""
    rng = np.random.default_rng(seed)
    iv = INTERVAL_MS[IV]
    manager = EnsembleManager(min_consensus=3, boost=1.1, cap=0.95, n_configured=4)
    records, candles = [], []
    for sym in ("BTCUSDT", "ETHUSDT"):
        z = rng.normal(size=n)
        r = BETA * z + SIGMA * rng.normal(size=n)
        close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
        for i in range(n + 1):
            o = close[i - 1] if i else close[0]
            candles.append(Candle(sym, IV, T0 + i * iv, float(o), float(max(o, close[i])) * 1.001,
                                  float(min(o, close[i])) * 0.999, float(close[i]), 1.0, False))
        seen = _true_probs(z)
        shadows = {"patchtst": seen, "patchtst_shuffled": seen[rng.permutation(n)],
                   "patchtst_noise": _noise_probs(rng, n)}
        voters = {m: _noise_probs(rng, n) for m in ("xgb", "lgbm", "nhits")}
        for i in range(n):
            t = T0 + i * iv
            res = [ModelResult(m, ModelRole.VOTER, ModelStatus.OK, WEIGHTS[m], "v1", m * 8,
                               Prediction.from_probs(tuple(voters[m][i]))) for m in ("xgb", "lgbm", "nhits")]
            res += [ModelResult(k, ModelRole.SHADOW, ModelStatus.OK, WEIGHTS["patchtst"], "v2", k[:2] * 32,
                                Prediction.from_probs(tuple(p[i]))) for k, p in shadows.items()]
            d = manager.decide(res)
            records.append(DecisionRecord(
                event_id=event_id_for("ai.decision", sym, IV, t), symbol=sym, interval=IV, candle_open_time=t,
                decided_at=t + iv, entry_price=float(close[i]), decision=d, published=d.actionable,
                blocked_reason=None, config_id="planted", decision_latency_ms=1.0, synthetic=False,
                intent_event_id=event_id_for("trade.intent", sym, IV, t) if d.actionable else None))
    store = TelemetryStore(path)
    lc = {"horizon": 1, "mode": "fixed", "fee_band": BAND, "k": 0.5, "vol_window": 168}
    models = {m: {"role": "voter", "weight": WEIGHTS[m], "status": "active", "version": "v1", "sha256": m * 8,
                  "label_config": lc} for m in ("xgb", "lgbm", "nhits")}
    models |= {k: {"role": "shadow", "weight": WEIGHTS["patchtst"], "status": "active", "version": "v2",
                   "sha256": k[:2] * 32, "label_config": lc} | ({"kind": "patchtst"} if k != "patchtst" else {})
               for k in CHALLENGERS}
    store.record_config("planted", "start", {"models": models, "min_consensus": 3, "confidence_boost": 1.1,
                                             "confidence_cap": 0.95})
    store.record_decisions(records, candles)
    store.close()
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("challengers") / "t.sqlite")


@pytest.fixture(scope="module")
def comparison(store):
    return analyze_challengers(store, HOURS, CHALLENGERS, all_versions=True)


def test_the_challenger_that_sees_the_market_survives_the_correction_and_the_others_do_not(comparison):
    rows = {r.model: r for r in comparison.rows}
    assert rows["patchtst"].verdict == "BETTER" and rows["patchtst"].survives
    assert rows["patchtst"].p_better < 0.05 / 3  # below even Bonferroni's threshold
    for other in ("patchtst_shuffled", "patchtst_noise"):
        assert not rows[other].survives and rows[other].verdict != "BETTER"
    assert comparison.best == "patchtst"
    assert comparison.trialled == 3  # no registry: the challengers compared here


def test_more_trials_deflate_the_best_ones_sharpe(store, comparison):
    from ai_engine.analysis import analyze

    edges = {m: analyze(store, HOURS, model=m, all_versions=True).edge for m in CHALLENGERS}
    few = compare_challengers(edges, {"patchtst": 3})
    many = compare_challengers(edges, {"patchtst": 500})
    assert few.best == many.best == "patchtst"
    assert many.trialled == 500 and few.trialled == 3
    assert many.deflated_sharpe < few.deflated_sharpe <= 1.0
    assert expected_max_sharpe(500, 0.01) > expected_max_sharpe(3, 0.01) > expected_max_sharpe(1, 0.01) == 0.0


def test_no_challenger_is_named_when_none_survives(store):
    c = analyze_challengers(store, HOURS, ("patchtst_shuffled", "patchtst_noise"), all_versions=True)
    assert c.best is None and c.deflated_sharpe is None
    assert "no challenger survives Holm's correction for 2 comparisons" in c.reason


def test_cli_compares_every_shadow_in_force(store):
    res = CliRunner().invoke(app, ["analyze", "--hours", str(HOURS), "--store", str(store), "--all-versions",
                                   "--challengers", "all", "--json"])
    assert res.exit_code in (0, 1, 3), res.output
    d = json.loads(res.stdout)["challengers"]
    assert sorted(r["model"] for r in d["challengers"]) == sorted(CHALLENGERS)
    assert d["best"] == "patchtst" and d["correction"].startswith("Holm")
    text = CliRunner().invoke(app, ["analyze", "--hours", str(HOURS), "--store", str(store), "--all-versions",
                                    "--challengers", "patchtst,patchtst_noise"]).stdout
    assert "Challengers against the champion (Holm's correction over 2" in text and "Best challenger: patchtst" in text


def test_one_challenger_or_an_unknown_one_is_refused(store):
    with pytest.raises(ConfigError, match="at least two"):
        analyze_challengers(store, HOURS, ("patchtst",))
    res = CliRunner().invoke(app, ["analyze", "--hours", "24", "--store", str(store), "--challengers", "patchtst,patchtsx"])
    assert res.exit_code == 2 and "patchtsx" in res.stderr and "Traceback" not in res.output


def test_holm_holds_the_family_wise_error_rate_under_dependence():
    """Simulation: 5 no-better challengers judged on the same decisions (test statistics correlated
    0.6), one-sided t p-values as the comparison computes them. Claiming each one that passes 5%
    alone names a false winner in about a fifth of the windows; Holm in at most alpha."""
    rng = np.random.default_rng(7)
    reps, k, rho, df = 4000, 5, 0.6, 300
    common = rng.normal(size=(reps, 1))
    z = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=(reps, k))
    p = stats.t.sf(z, df)
    naive = float((p <= 0.05).any(axis=1).mean())
    corrected = float(np.mean([any(holm(list(row), 0.05)) for row in p]))
    assert naive > 0.12
    assert corrected <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)  # within Monte Carlo error of alpha
    # and it keeps power: one challenger truly better by 4 standard errors is found nearly always
    z[:, 0] += 4.0
    found = np.mean([holm(list(row), 0.05)[0] for row in stats.t.sf(z, df)])
    assert found > 0.9
