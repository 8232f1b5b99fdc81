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
from ai_engine.exceptions import ConfigError
from tests.analysis.test_planted_edge import HOURS, _noise_probs, planted_store

CHALLENGERS = ("patchtst", "patchtst_shuffled", "patchtst_noise")


def _shadows(rng, seen):
    """One shadow sees the predictable component, one has the same predictions shuffled in time,
    one is noise."""
    return {"patchtst": seen, "patchtst_shuffled": seen[rng.permutation(len(seen))],
            "patchtst_noise": _noise_probs(rng, len(seen))}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("challengers") / "t.sqlite"
    planted_store(path, shadows=_shadows)
    return path


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


def test_a_new_version_beside_its_voting_champion_replaces_it_in_the_counterfactual(tmp_path):
    """Champion beside challenger (issue 18 item 2): NHiTS votes while its retrain nhits_r2 shadows.
    Activating the retrain means it takes NHiTS's place and weight, not a fifth voter beside it;
    the record still re-votes exactly (the ensemble is the four, extra shadows do not count)."""
    from ai_engine.analysis import analyze

    path = tmp_path / "beside.sqlite"
    planted_store(path, shadows=lambda rng, seen: {"patchtst": _noise_probs(rng, len(seen)), "nhits_r2": seen})
    e = analyze(path, HOURS, model="nhits_r2", all_versions=True).edge
    assert e.revote_mismatches == 0
    a, b = e.scenarios[0], e.scenarios[1]
    assert a.weights == {"xgb": 25.0, "lgbm": 25.0, "nhits_r2": 30.0}
    assert b.weights["nhits_r2"] == 5.0 and "nhits" not in b.weights and sum(b.weights.values()) == 100.0
    assert e.verdict == "BETTER"
    nhits = next(s for s in e.scores if s.reference == "nhits")  # compared directly with its champion
    assert nhits.log_loss_test.hi < 0


def test_an_extra_shadow_does_not_count_as_a_configured_model_for_the_boost(tmp_path):
    """All four vote (4/4 agreement is boosted) while a retrain shadows beside them: the ensemble is
    still the four, so re-voting the record reproduces every boost."""
    from ai_engine.analysis import analyze

    path = tmp_path / "four.sqlite"
    planted_store(path, voting=("patchtst",),
                  shadows=lambda rng, seen: {"patchtst": _noise_probs(rng, len(seen)), "nhits_r2": seen})
    r = analyze(path, HOURS, model="nhits_r2", all_versions=True)
    assert r.edge.revote_mismatches == 0
    assert r.edge.scenarios[0].weights == {"xgb": 25.0, "lgbm": 25.0, "nhits_r2": 30.0, "patchtst": 20.0}
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT SUM(boosted) FROM decisions").fetchone()[0] > 10  # the case this checks
