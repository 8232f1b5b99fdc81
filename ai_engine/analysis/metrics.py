"""Section figures and gates for one model over the window (all decisions, HOLD ones included).

Rows that cannot be used are never dropped silently: each is counted under the first reason
that applies (status, missing decision, NULL or unknown action, bad confidence). The intervals of
the gates, the shares and ECE/Brier take the candle time as their unit (``stats``): rows of one
timestamp are one cluster, and the series of timestamps is autocorrelated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ai_engine.analysis.gates import MIN_JUDGED_N, Gate, Thresholds, Verdict, verdict_for
from ai_engine.analysis.outcomes import OUTCOME_STATES, Outcomes, score_outcomes
from ai_engine.analysis.reader import (
    STATUS_CODES,
    ModelRows,
    SampleSeen,
    Series,
    VersionSeen,
    Window,
)
from ai_engine.analysis.stats import (
    Share,
    TimeIndex,
    bootstrap_ece_brier,
    std_interval,
    trend_interval,
    wilson,
    wilson_by_time,
)

__all__ = ["ConfidenceStats", "Bucket", "Timeline", "ModelAnalysis", "analyze_model", "BUCKET_EDGES"]

BUCKET_EDGES = (1 / 3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the arg-max of 3 classes is >= 1/3
HIST_EDGES = tuple(round(0.05 * i, 2) for i in range(21))
TIMELINE_BINS = 24


@dataclass(frozen=True, slots=True)
class ConfidenceStats:
    n: int
    mean: float
    median: float
    std: float
    std_lo: float
    std_hi: float
    percentiles: tuple[float, float, float, float, float]  # P10, P25, P50, P75, P90
    minimum: float
    maximum: float
    distinct: int
    hist_counts: tuple[int, ...]  # over HIST_EDGES


@dataclass(frozen=True, slots=True)
class Bucket:
    """Scored predictions whose confidence is in [lo, hi); ``accuracy`` with its Wilson interval."""

    lo: float
    hi: float
    accuracy: Share
    mean_confidence: float
    qualifies: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    """Counts per time bin (``edges_ms`` has one more entry): actions (SELL, HOLD, BUY) and agreement."""

    edges_ms: tuple[int, ...]
    actions: tuple[tuple[int, int, int], ...]
    agree: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelAnalysis:
    model: str
    versions: tuple[VersionSeen, ...]
    n_rows: int
    n_valid: int
    n_late: int
    skipped: tuple[tuple[str, int], ...]
    unknown_actions: tuple[tuple[str, int], ...]
    actions: tuple[Share, Share, Share]  # CLASS_ORDER
    confidence: ConfidenceStats | None
    agreement: Share
    crosstab: tuple[tuple[int, int, int], ...]  # [model action][ensemble action], CLASS_ORDER
    labels_used: tuple[tuple[str, int], ...]
    n_scored: int
    n_pending: int
    unscorable: tuple[tuple[str, int], ...]
    band_fallback: int
    realised: tuple[Share, Share, Share]
    accuracy: Share
    buckets: tuple[Bucket, ...]
    n_calibrated: int  # scored rows with valid probabilities (ECE, Brier)
    ece: tuple[float, float, float]
    brier: tuple[float, float, float]
    timeline: Timeline
    gates: tuple[Gate, Gate, Gate, Gate]
    verdict: Verdict
    sample: SampleSeen | None = None  # a budgeted shadow: every figure is over the decisions it saw

    @property
    def role_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.versions:
            out[v.role] = out.get(v.role, 0) + v.n
        return out

    @property
    def gates_passed(self) -> int:
        return sum(g.status == "PASS" for g in self.gates)


def _skip_reasons(rows: ModelRows) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Valid-row mask and the count of every other row under its first failing reason."""
    conf = rows.confidence
    checks = [(rows.status == i, f"status {s}") for i, s in enumerate(STATUS_CODES) if s not in ("ok", "late")]
    checks += [
        (rows.status >= len(STATUS_CODES), "status unknown"),
        (rows.ensemble == -1, "no decision row for the prediction"),
        (rows.ensemble == -2, "decision action unknown"),
        ((rows.status == STATUS_CODES.index("late")) & (rows.action == -1), "status late, no result joined"),
        (rows.action == -1, "action is NULL"),
        (rows.action == -2, "unknown action string"),
        (~np.isfinite(conf), "confidence missing"),
        ((conf < 0) | (conf > 1), "confidence outside [0, 1]"),
    ]
    left = np.ones(rows.t.size, dtype=bool)
    reasons = []
    with np.errstate(invalid="ignore"):
        for bad, why in checks:
            hit = left & bad
            if hit.any():
                reasons.append((why, int(hit.sum())))
                left &= ~hit
    return left, reasons


def _confidence(conf: np.ndarray, ti: TimeIndex) -> ConfidenceStats | None:
    if conf.size == 0:
        return None
    std, lo, hi = std_interval(conf, ti)
    pct = np.percentile(conf, [10, 25, 50, 75, 90])
    hist = np.histogram(conf, bins=np.asarray(HIST_EDGES))[0]
    return ConfidenceStats(
        n=int(conf.size), mean=float(conf.mean()), median=float(pct[2]), std=std, std_lo=lo, std_hi=hi,
        percentiles=tuple(float(x) for x in pct), minimum=float(conf.min()), maximum=float(conf.max()),
        distinct=int(np.unique(conf).size), hist_counts=tuple(int(x) for x in hist),
    )


def _timeline(t: np.ndarray, action: np.ndarray, agree: np.ndarray, win: Window) -> Timeline:
    edges = np.linspace(win.start_ms, win.end_ms, TIMELINE_BINS + 1).round().astype(np.int64)
    b = np.clip(np.searchsorted(edges, t, side="left") - 1, 0, TIMELINE_BINS - 1)
    acts = np.bincount(b * 3 + action, minlength=3 * TIMELINE_BINS).reshape(TIMELINE_BINS, 3)
    ag = np.bincount(b, weights=agree, minlength=TIMELINE_BINS)
    return Timeline(tuple(int(e) for e in edges), tuple(tuple(int(x) for x in r) for r in acts),
                    tuple(int(round(x)) for x in ag))


def _status(n: int, th: Thresholds, ok: bool, bad: bool) -> tuple[str, str]:
    """PASS/FAIL on an interval clear of the threshold from ``MIN_JUDGED_N`` rows; ``min_gate_n``
    only explains an interval that straddles it (gates.py says why)."""
    floor = min(MIN_JUDGED_N, th.min_gate_n)
    if n < floor:
        return "INCONCLUSIVE", f"only {n} valid predictions (< {floor}: too few to judge)"
    if bad:
        return "FAIL", ""
    if ok:
        return "PASS", ""
    if n < th.min_gate_n:
        return "INCONCLUSIVE", f"95% interval straddles the threshold with only {n} valid predictions (< {th.min_gate_n})"
    return "INCONCLUSIVE", "95% interval straddles the threshold"


def _gates(m: dict, th: Thresholds, scored: tuple[np.ndarray, np.ndarray, TimeIndex]) -> tuple[Gate, Gate, Gate, Gate]:
    """Gates 1-4 from the window's figures; ``scored`` = (correct, bucket index, TimeIndex) of the
    scored rows, for gate 4's trend."""
    n = m["n_valid"]
    acts: tuple[Share, Share, Share] = m["actions"]
    top = max(range(3), key=lambda i: acts[i].count)
    thr = th.max_action_share
    status, why = _status(n, th, all(a.hi <= thr for a in acts), any(a.lo > thr for a in acts))
    detail = "; ".join(x for x in (f"largest share {('SELL', 'HOLD', 'BUY')[top]}", why) if x)
    g1 = Gate(1, "Action Diversity", "max action share", acts[top].p, acts[top].lo, acts[top].hi,
              f"≤ {thr:.1%}", status, detail)
    cs: ConfidenceStats | None = m["confidence"]
    if cs is None:
        g2 = Gate(2, "Confidence Spread", "Stddev", None, None, None, f"≥ {th.min_stddev:.4f}", "INCONCLUSIVE",
                  "no valid predictions")
    else:
        status, why = _status(n, th, cs.std_lo >= th.min_stddev, cs.std_hi < th.min_stddev)
        detail = "; ".join(x for x in (f"{cs.distinct} distinct values", why) if x)
        g2 = Gate(2, "Confidence Spread", "Stddev", cs.std, cs.std_lo, cs.std_hi, f"≥ {th.min_stddev:.4f}",
                  status, detail)
    ag: Share = m["agreement"]
    status, why = _status(n, th, ag.lo >= th.min_agreement, ag.hi < th.min_agreement)
    detail = "; ".join(x for x in ("agreement with the ensemble action", why) if x)
    g3 = Gate(3, "Shadow Correlation", "Agreement Rate", ag.p, ag.lo, ag.hi, f"≥ {th.min_agreement:.1%}",
              status, detail)
    return g1, g2, g3, _calibration_gate(m["buckets"], th, *scored)


def _calibration_gate(buckets: tuple[Bucket, ...], th: Thresholds, correct: np.ndarray, bidx: np.ndarray,
                      ti: TimeIndex) -> Gate:
    """PASS only on evidence that accuracy rises with confidence: the fitted trend of accuracy on
    the buckets' mean confidence (one Cochran–Armitage test over every qualifying bucket's rows,
    its variance robust to autocorrelation and to symbols at one timestamp), shown as the rise
    from the lowest to the highest of them, has a 95% interval above 0. Below 0 is a FAIL; an
    interval that straddles 0 is INCONCLUSIVE, as for the other gates. ``correct``, ``bidx``
    (bucket index) and ``ti`` describe the scored rows."""
    q = [b for b in buckets if b.qualifies]
    thr = f"fitted rise > 0 (95%), bucket n ≥ {th.min_bucket_n}"
    if len(q) < 2:
        return Gate(4, "Calibration", "accuracy vs confidence", None, None, None, thr, "INCONCLUSIVE",
                    f"{len(q)} confidence bucket(s) with ≥ {th.min_bucket_n} scored predictions; need 2")
    span = q[-1].mean_confidence - q[0].mean_confidence
    qual = np.array([b.qualifies for b in buckets])[bidx]
    score = np.array([b.mean_confidence for b in buckets])[bidx[qual]]
    slope, lo, hi = trend_interval(correct[qual], score, ti.sub(qual))
    path = " → ".join(f"{b.accuracy.p:.0%}" for b in q)
    detail = f"{len(q)} buckets {q[0].lo:.2f}–{q[-1].hi:.2f}: {path}"
    if not math.isfinite(slope):
        return Gate(4, "Calibration", "accuracy vs confidence", None, None, None, thr, "INCONCLUSIVE",
                    f"no trend can be fitted (every prediction right or every one wrong); {detail}")
    status = "PASS" if lo > 0 else "FAIL" if hi < 0 else "INCONCLUSIVE"
    if status == "INCONCLUSIVE":
        detail = f"95% interval straddles 0; {detail}"
    return Gate(4, "Calibration", "accuracy vs confidence", slope * span, lo * span, hi * span, thr, status, detail)


def analyze_model(rows: ModelRows, series: tuple[Series, ...], win: Window, th: Thresholds) -> ModelAnalysis:
    valid, skipped = _skip_reasons(rows)
    n_valid = int(valid.sum())
    act = rows.action[valid].astype(np.int64)
    ens = rows.ensemble[valid].astype(np.int64)
    conf = rows.confidence[valid]
    ti = TimeIndex.of(rows.t[valid])
    actions = tuple(wilson_by_time(act == i, ti) for i in range(3))
    agree = act == ens
    cross = np.bincount(act * 3 + ens, minlength=9).reshape(3, 3)

    out: Outcomes = score_outcomes(rows, series, valid)
    state = out.state[valid]
    scored = state == 0
    real = out.realised[valid][scored].astype(np.int64)
    pred = act[scored]
    sconf = conf[scored]
    correct = pred == real
    ti_s = ti.sub(scored)
    edges = np.asarray(BUCKET_EDGES)
    bidx = np.clip(np.searchsorted(edges, sconf, side="right") - 1, 0, len(BUCKET_EDGES) - 2)
    bn = np.bincount(bidx, minlength=len(BUCKET_EDGES) - 1)
    bc = np.bincount(bidx, weights=correct, minlength=len(BUCKET_EDGES) - 1)
    bconf = np.bincount(bidx, weights=sconf, minlength=len(BUCKET_EDGES) - 1)
    buckets = tuple(
        Bucket(BUCKET_EDGES[i], BUCKET_EDGES[i + 1], wilson(int(round(bc[i])), int(bn[i])),
               float(bconf[i] / bn[i]) if bn[i] else math.nan, bool(bn[i] >= th.min_bucket_n))
        for i in range(len(BUCKET_EDGES) - 1)
    )
    probs = rows.probs[valid][scored].astype(np.float64)
    with np.errstate(invalid="ignore"):
        pok = np.all(np.isfinite(probs) & (probs >= 0) & (probs <= 1), axis=1) & (np.abs(probs.sum(axis=1) - 1) <= 1e-3)
    onehot = np.eye(3)[real[pok]]
    brier = ((probs[pok] - onehot) ** 2).sum(axis=1)
    boot = bootstrap_ece_brier(sconf[pok], pred[pok], real[pok], brier, BUCKET_EDGES, ti_s.sub(pok),
                               samples=th.bootstrap_samples, seed=th.seed)
    n_bad_probs = int((~pok).sum())
    if n_bad_probs:
        skipped = skipped + [("probabilities missing or invalid (scored, left out of ECE/Brier)", n_bad_probs)]

    lab = rows.label[valid]
    labels_used = tuple((rows.labels[i].describe(), int((lab == i).sum())) for i in np.unique(lab))
    unscorable = tuple((OUTCOME_STATES[i], int((state == i).sum())) for i in range(2, len(OUTCOME_STATES))
                       if (state == i).any())
    m = {"n_valid": n_valid, "actions": actions, "confidence": _confidence(conf, ti),
         "agreement": wilson_by_time(agree, ti), "buckets": buckets}
    gates = _gates(m, th, (correct, bidx, ti_s))
    return ModelAnalysis(
        model=rows.model,
        versions=rows.versions,
        n_rows=int(rows.t.size),
        n_valid=n_valid,
        n_late=int(rows.joined_late[valid].sum()),
        skipped=tuple(skipped),
        unknown_actions=rows.unknown_actions,
        actions=actions,  # type: ignore[arg-type]
        confidence=m["confidence"],
        agreement=m["agreement"],
        crosstab=tuple(tuple(int(x) for x in r) for r in cross),
        labels_used=labels_used,
        n_scored=int(scored.sum()),
        n_pending=int((state == 1).sum()),
        unscorable=unscorable,
        band_fallback=int(out.band_fallback[valid][scored].sum()),
        realised=tuple(wilson_by_time(real == i, ti_s) for i in range(3)),  # type: ignore[arg-type]
        accuracy=wilson_by_time(correct, ti_s),
        buckets=buckets,
        n_calibrated=int(pok.sum()),
        ece=boot["ece"],
        brier=boot["brier"],
        timeline=_timeline(rows.t[valid], act, agree, win),
        gates=gates,
        verdict=verdict_for(gates),
        sample=rows.sample,
    )
