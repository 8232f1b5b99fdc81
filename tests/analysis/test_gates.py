"""Gates and outcomes on stores whose shadow behaviour is known against the recorded market."""

from __future__ import annotations

import numpy as np
import pytest

import ai_engine.analysis as analysis
from ai_engine.analysis import Thresholds, analyze, render_text
from ai_engine.telemetry import TelemetryStore

HOURS = 24 * 365


def _status(result):
    return [g.status for g in result.primary.gates]


def test_flat_lined_model_fails_diversity_and_spread(make_store):
    r = analyze(make_store(shadow="flat"), HOURS)
    g = r.primary.gates
    assert (g[0].status, g[1].status) == ("FAIL", "FAIL")
    assert r.primary.confidence.distinct == 1
    assert r.verdict == "NOT_READY" and r.exit_code == 1


def test_model_copying_the_ensemble_passes_agreement(make_store):
    r = analyze(make_store(shadow="copy"), HOURS)
    assert r.primary.gates[2].status == "PASS"
    assert r.primary.agreement.p == 1.0


def test_skilled_model_passes_calibration_and_anti_skilled_fails(make_store):
    good = analyze(make_store(shadow="skilled"), HOURS).primary
    bad = analyze(make_store(shadow="anti"), HOURS).primary
    assert good.gates[3].status == "PASS"
    assert bad.gates[3].status == "FAIL"
    acc = [b.accuracy.p for b in good.buckets if b.qualifies]
    assert acc[-1] > acc[0] + 0.3
    assert good.ece[0] < bad.ece[0] and good.brier[0] < bad.brier[0]
    assert good.ece[1] <= good.ece[0] <= good.ece[2]


def test_outcomes_come_from_the_market_not_the_ensemble(make_store):
    # Steady rise of ~1%/bar: every 4-bar return is far above the band, so BUY is always right,
    # while the ensemble (always HOLD) never agrees with BUY.
    def always_buy(rng, real, ens, n):
        return np.full(n, 2), rng.uniform(0.4, 0.9, n)

    m = analyze(make_store(shadow=always_buy, drift=0.05, ensemble="hold", n=300), HOURS).primary
    assert m.accuracy.p == 1.0 and m.accuracy.n == m.n_scored
    assert m.agreement.count == 0


def test_pending_predictions_are_reported_not_scored(make_store):
    path = make_store(n=200, horizon=4, tail=0)
    m = analyze(path, HOURS).primary
    assert (m.n_pending, m.n_scored, m.n_valid) == (4, 196, 200)
    m2 = analyze(make_store(n=200, horizon=4, tail=4), HOURS).primary
    assert (m2.n_pending, m2.n_scored) == (0, 200)


def test_hold_decisions_count(make_store):
    path = make_store(n=300, ensemble="hold")
    store = TelemetryStore(path, readonly=True)
    assert store.count("intents") == 0
    store.close()
    r = analyze(path, HOURS)
    assert r.primary.n_valid == 300 and r.window.n_decisions == 300
    assert r.decision_actions == (0, 300, 0)
    assert sum(row[1] for row in r.primary.crosstab) == 300  # every decision is in the HOLD column


def test_horizon_and_band_flags_override_the_label_config(make_store):
    path = make_store(n=300, tail=10)
    m = analyze(path, HOURS, horizon=8, band=0.05).primary
    assert m.n_scored == 300 and any("band from --band" in d for d, _ in m.labels_used)
    assert m.realised[1].p > 0.8  # ±5% over 8 bars of 1% noise: mostly HOLD
    assert analyze(path, HOURS, horizon=12).primary.n_pending == 2  # 10 candles recorded after the last


def test_vol_band_without_history_falls_back_and_says_so(make_store):
    short = analyze(make_store(n=300, mode="vol", history=0, tail=4), HOURS).primary
    full = analyze(make_store(n=300, mode="vol", history=200, tail=4), HOURS).primary
    assert short.band_fallback > 0 and full.band_fallback == 0
    assert "Vol band → fixed band" in render_text(analyze(make_store(n=300, mode="vol", tail=4), HOURS))


def test_missing_label_config_uses_default_and_says_so(make_store):
    m = analyze(make_store(n=200, label_config=False), HOURS).primary
    assert all("no label_config" in d for d, _ in m.labels_used)


def test_small_window_is_inconclusive_not_pass(make_store):
    r = analyze(make_store(shadow="skilled"), 20)
    assert r.primary.n_valid == 20
    assert _status(r) == ["INCONCLUSIVE"] * 4
    assert r.verdict == "INCONCLUSIVE" and r.exit_code == 3
    assert render_text(r).split("\n── Edge:")[0].rstrip().splitlines()[-1].startswith("⏳ INCONCLUSIVE (")


def test_until_selects_an_earlier_window(make_store):
    path = make_store(n=300)
    last = analyze(path, 10).window
    earlier = analyze(path, 10, until=last.end_ms - 100 * 3_600_000).window
    assert earlier.end_ms == last.end_ms - 100 * 3_600_000 and earlier.n_decisions == 10
    iso = analyze(path, 10, until="2023-11-15T00:00:00Z").window
    assert iso.end_ms == 1_700_006_400_000


def test_verdict_rule():
    from ai_engine.analysis.gates import Gate

    def g(*st):
        return tuple(Gate(i + 1, "x", "m", None, None, None, "t", s, "") for i, s in enumerate(st))

    assert analysis.verdict_for(g("PASS", "PASS", "PASS", "FAIL")) == "READY"
    assert analysis.verdict_for(g("PASS", "PASS", "INCONCLUSIVE", "FAIL")) == "INCONCLUSIVE"
    assert analysis.verdict_for(g("PASS", "FAIL", "INCONCLUSIVE", "FAIL")) == "NOT_READY"


def test_thresholds_are_configurable(make_store):
    path = make_store(shadow="copy")
    assert analyze(path, HOURS, thresholds=Thresholds(min_agreement=1.0)).primary.gates[2].status != "FAIL"
    assert analyze(path, HOURS, thresholds=Thresholds(max_action_share=0.2)).primary.gates[0].status == "FAIL"


def test_compare_runs_the_same_analysis_on_both_models(make_store):
    r = analyze(make_store(shadow="skilled"), HOURS, compare="lgbm")
    assert [m.model for m in r.models] == ["patchtst", "lgbm"]
    assert r.models[1].agreement.p == 1.0  # the voter is the ensemble here
    text = render_text(r)
    assert "patchtst" in text and "lgbm" in text and text.count("Agreement Rate") >= 2


def test_public_names_match_all():
    assert sorted(analysis.__all__) == sorted(n for n in dir(analysis) if n in analysis.__all__)
    for name in analysis.__all__:
        assert hasattr(analysis, name)


@pytest.mark.parametrize("bad", [{"hours": 0}, {"hours": float("nan")}, {"horizon": 0}, {"band": 2.0},
                                 {"until": "yesterday"}, {"compare": "patchtst"}])
def test_bad_arguments_raise_config_error_naming_the_flag(make_store, bad):
    from ai_engine.exceptions import ConfigError

    kw = {"hours": HOURS} | bad
    with pytest.raises(ConfigError, match=r"--\w+"):
        analyze(make_store(n=50), **kw)


def test_calibration_is_inconclusive_when_accuracy_does_not_depend_on_confidence(make_store):
    # Right about half the time whatever the confidence: no evidence that higher confidence means
    # higher accuracy, and seven buckets must not give 21 chances of a spurious "significant" drop.
    def unrelated(rng, real, ens, n):
        c = rng.uniform(0.34, 0.99, n)
        right = rng.random(n) < 0.5
        return np.where(right, real, (real + rng.integers(1, 3, n)) % 3), c

    g = analyze(make_store(shadow=unrelated, n=600), HOURS).primary.gates[3]
    assert g.status == "INCONCLUSIVE", g
    assert g.lo < 0 < g.hi and "straddles 0" in g.detail


def test_calibration_never_passes_a_fall_in_accuracy():
    from ai_engine.analysis.metrics import Bucket, _calibration_gate
    from ai_engine.analysis.stats import TimeIndex, wilson

    def gate(per_bucket: tuple[tuple[float, int, int], ...]):
        """Gate 4 on rows with these (lo, correct, n) buckets, one row per hour in a shuffled order."""
        buckets = tuple(Bucket(lo, lo + 0.1, wilson(k, n), lo + 0.05, True) for lo, k, n in per_bucket)
        bidx = np.concatenate([np.full(n, i) for i, (_, _, n) in enumerate(per_bucket)])
        correct = np.concatenate([np.arange(n) < k for _, k, n in per_bucket])
        order = np.random.default_rng(0).permutation(bidx.size)
        return _calibration_gate(buckets, Thresholds(), correct[order], bidx[order], TimeIndex.of(np.arange(bidx.size)))

    # what an operator saw: 16% → 10% → 7%, no two buckets significantly apart
    g = gate(((0.4, 16, 100), (0.5, 10, 100), (0.6, 7, 100)))
    assert g.status != "PASS" and g.value < 0 and g.hi > g.value
    assert gate(((0.4, 160, 400), (0.5, 200, 400), (0.6, 240, 400))).status == "PASS"


def test_only_keeps_the_rows_of_one_artifact_in_one_role(make_store):
    path = make_store(n=300)
    assert analyze(path, HOURS, only=("shadow", "cd" * 32)).primary.n_rows == 300
    assert analyze(path, HOURS, only=("shadow", "ef" * 32)).primary.n_rows == 0
    assert analyze(path, HOURS, only=("voter", "cd" * 32)).primary.n_rows == 0


def test_a_version_is_listed_once_however_many_configurations_it_ran_under():
    from ai_engine.analysis.reader import ROLE_CODES, _versions

    shadow = ROLE_CODES.index("shadow")
    role = np.full(5, shadow)
    cfg = np.array([0, 0, 1, 1, 2])  # configs 0 and 1 differ only in the other models' weights
    per_cfg = [("v2", "cd" * 32), ("v2", "cd" * 32), ("v3", "ef" * 32)]
    seen = _versions(role, cfg, np.array([10, 20, 30, 40, 50]), per_cfg)
    assert [(v.version, v.n, v.first_ms, v.last_ms) for v in seen] == [("v2", 4, 10, 40), ("v3", 1, 50, 50)]
