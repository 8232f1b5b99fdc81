"""Text and JSON forms of an AnalysisResult. Gate lines stay greppable as the spec shows them.

With ``--compare`` every section has one column per model. The spec's report ends with the
verdict line of the analysed model; the edge sections and the recommendation follow it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ai_engine.analysis.analyze import PLAN_HOURS, PLAN_PREDICTIONS, AnalysisResult
from ai_engine.analysis.challengers import render_lines as challenger_lines
from ai_engine.analysis.edge_render import edge_lines
from ai_engine.analysis.gates import VERDICT_LINES, Gate
from ai_engine.analysis.metrics import BUCKET_EDGES, HIST_EDGES, ModelAnalysis
from ai_engine.analysis.stats import Share

__all__ = ["render_text", "to_json", "verdict_line"]

ACTIONS = ("SELL", "HOLD", "BUY")
_BAR = 24


def _pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _share(s: Share) -> str:
    if s.n == 0:
        return "n/a (n=0)"
    return f"{s.p:6.1%} [{s.lo:.1%}, {s.hi:.1%}]  {s.count}/{s.n}"


def _f(x: float | None, nd: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _ci(t: tuple[float, float, float], nd: int = 4) -> str:
    return "n/a" if not math.isfinite(t[0]) else f"{t[0]:.{nd}f} [{t[1]:.{nd}f}, {t[2]:.{nd}f}]"


def verdict_line(m: ModelAnalysis) -> str:
    if m.verdict in VERDICT_LINES:
        return VERDICT_LINES[m.verdict]
    open_ = [g for g in m.gates if g.status == "INCONCLUSIVE"]
    why = "; ".join(f"{g.name}: {g.detail}" for g in open_)
    return f"⏳ INCONCLUSIVE ({m.gates_passed}/4 gates passed, {len(open_)} without enough evidence — {why})"


class _Table:
    """Rows of a label and one cell per model, padded into columns."""

    def __init__(self, models: tuple[ModelAnalysis, ...]) -> None:
        self.models = models
        self.lines: list[str | tuple[str, list[str]]] = []

    def title(self, text: str) -> None:
        self.lines += ["", f"── {text} ──"]

    def note(self, text: str) -> None:
        self.lines.append(text)

    def row(self, label: str, cell: Callable[[ModelAnalysis], str]) -> None:
        self.lines.append((label, [cell(m) for m in self.models]))

    def render(self) -> list[str]:
        """Each titled block gets its own column widths (and model names over its columns)."""
        blocks: list[list[str | tuple[str, list[str]]]] = [[]]
        for x in self.lines:
            if isinstance(x, str) and x.startswith("── "):
                blocks.append([])
            blocks[-1].append(x)
        out: list[str] = []
        k = len(self.models)
        for block in blocks:
            rows = [x for x in block if isinstance(x, tuple)]
            lw = max((len(r[0]) for r in rows), default=0) + 2
            cw = [max([len(r[1][i]) for r in rows] + [len(self.models[i].model)]) + 3 for i in range(k)]
            for x in block:
                if isinstance(x, str):
                    out.append(x)
                    if x.startswith("── ") and k > 1:
                        out.append((" " * lw + "".join(m.model.ljust(w) for m, w in zip(self.models, cw, strict=True))).rstrip())
                else:
                    cells = x[1][:k]
                    out.append((x[0].ljust(lw) + "".join(c.ljust(w) for c, w in zip(cells, cw, strict=True))).rstrip())
        return out


def _data_section(t: _Table) -> None:
    t.title("Data")
    t.row("Prediction rows in window", lambda m: str(m.n_rows))
    t.row("Valid predictions (n_shadow)", lambda m: str(m.n_valid))
    t.row("Role in window", lambda m: ", ".join(f"{r} {n}" for r, n in m.role_counts.items()) or "none")
    t.row("Versions", lambda m: ", ".join(
        f"{v.version or '?'}/{(v.sha256 or '?')[:8]}×{v.n}" for v in m.versions) or "none")
    t.row("Late results (joined after publish)", lambda m: str(m.n_late))
    if any(m.sample is not None for m in t.models):
        t.row("Sampled (SHADOW_SAMPLE)", lambda m: m.sample.describe() if m.sample else "every decision")
    t.row("Skipped rows", lambda m: str(sum(n for _, n in m.skipped)))
    reasons = dict.fromkeys(r for m in t.models for r, _ in m.skipped)
    for reason in reasons:
        t.row(f"  {reason}", lambda m, r=reason: str(dict(m.skipped).get(r, 0)))
    for m in t.models:
        if m.unknown_actions:
            t.note(f"  {m.model}: unknown action strings: " + ", ".join(f"{a!r}×{n}" for a, n in m.unknown_actions))
    if any(len({v.version for v in m.versions}) > 1 for m in t.models):
        t.note("  ⚠ model version changed inside the window: figures mix versions")


def _sections(t: _Table, hist_scale: dict[str, int]) -> None:
    t.title("1. Action Distribution")
    for i in (2, 0, 1):
        t.row(ACTIONS[i], lambda m, i=i: _share(m.actions[i]))

    t.title("2. Confidence Statistics")
    cs = lambda f: lambda m: "n/a" if m.confidence is None else f(m.confidence)  # noqa: E731
    t.row("Mean", cs(lambda c: _f(c.mean)))
    t.row("Median", cs(lambda c: _f(c.median)))
    t.row("Stddev", cs(lambda c: f"{c.std:.4f} [{c.std_lo:.4f}, {c.std_hi:.4f}]"))
    t.row("P10 / P25 / P50 / P75 / P90", cs(lambda c: " / ".join(f"{p:.3f}" for p in c.percentiles)))
    t.row("Min / Max", cs(lambda c: f"{c.minimum:.4f} / {c.maximum:.4f}"))
    t.row("Distinct values", cs(lambda c: str(c.distinct)))
    t.note("Histogram:")
    used = [i for i in range(len(HIST_EDGES) - 1)
            if any(m.confidence and m.confidence.hist_counts[i] for m in t.models)]
    for i in range(min(used), max(used) + 1) if used else ():
        def bar(m, i=i):
            if m.confidence is None:
                return ""
            c = m.confidence.hist_counts[i]
            return ("█" * round(_BAR * c / max(hist_scale[m.model], 1))).ljust(_BAR) + f" {c}"
        t.row(f"  {HIST_EDGES[i]:.2f}–{HIST_EDGES[i + 1]:.2f}", bar)

    t.title("3. Shadow vs Ensemble")
    t.row("Agreement Rate", lambda m: _share(m.agreement))
    t.row("Cross-table (model ↓, ensemble →)", lambda m: "".join(f"{a:>7}" for a in ACTIONS))
    for i in range(3):
        t.row(f"  {ACTIONS[i]}", lambda m, i=i: "".join(f"{x:>7}" for x in m.crosstab[i]))

    t.title("4. Outcomes (realised market return, not the ensemble)")
    labels = dict.fromkeys(d for m in t.models for d, _ in m.labels_used)
    for d in labels:
        t.row(f"Rule: {d}", lambda m, d=d: str(dict(m.labels_used).get(d, 0)))
    t.row("Scored", lambda m: str(m.n_scored))
    t.row("Pending (horizon not elapsed)", lambda m: str(m.n_pending))
    reasons = dict.fromkeys(r for m in t.models for r, _ in m.unscorable)
    for r in reasons:
        t.row(f"Not scorable: {r}", lambda m, r=r: str(dict(m.unscorable).get(r, 0)))
    if any(m.band_fallback for m in t.models):
        t.row("Vol band → fixed band (candles lack history)", lambda m: str(m.band_fallback))
    for i in (2, 0, 1):
        t.row(f"Realised {ACTIONS[i]}", lambda m, i=i: _share(m.realised[i]))
    t.row("Accuracy", lambda m: _share(m.accuracy))

    t.title("5. Calibration (accuracy by confidence bucket, market outcomes)")
    for i in range(len(BUCKET_EDGES) - 1):
        def cell(m, i=i):
            b = m.buckets[i]
            if b.accuracy.n == 0:
                return "—"
            mark = "" if b.qualifies else " (n<min)"
            return f"{_share(b.accuracy)} conf {b.mean_confidence:.3f}{mark}"
        t.row(f"  {BUCKET_EDGES[i]:.2f}–{BUCKET_EDGES[i + 1]:.2f}", cell)
    t.row("ECE [95% bootstrap]", lambda m: _ci(m.ece))
    t.row("Brier [95% bootstrap]", lambda m: _ci(m.brier) + f"  n={m.n_calibrated}")


def _gate_cell(g: Gate) -> str:
    if g.value is None or not math.isfinite(g.value):
        val = "n/a"
    elif g.number == 2:
        val = f"{g.value:.4f} [{g.lo:.4f}, {g.hi:.4f}]"
    elif g.number == 4:
        val = f"rise {g.value:+.1%} [{g.lo:+.1%}, {g.hi:+.1%}]"
    else:
        val = f"{g.value:.1%} [{g.lo:.1%}, {g.hi:.1%}]"
    return f"{val}  {g.status}"


def _gate_section(t: _Table) -> None:
    t.title("Evaluation Gates")
    for k in range(4):
        g0 = t.models[0].gates[k]
        t.row(f"Gate {k + 1}: {g0.name} ({g0.metric} {g0.threshold})", lambda m, k=k: _gate_cell(m.gates[k]))
        for m in t.models:
            t.note(f"    {m.model + ': ' if len(t.models) > 1 else ''}{m.gates[k].detail}")
    t.row("Gates passed", lambda m: f"{m.gates_passed}/4 → {m.verdict}")


def _bus_lines(skipped: dict[str, int] | None) -> list[str]:
    """What the bus copy left out (nothing when the store was read directly)."""
    if skipped is None:
        return []
    n = sum(skipped.values())
    lines = [f"Bus:      {n} unreadable stream entr{'y' if n == 1 else 'ies'} skipped (not analysed)"]
    lines += [f"            {k}× {why}" for why, k in list(skipped.items())[:5]]
    return lines


def _progress_lines(result: AnalysisResult) -> list[str]:
    """Progress against the 7-day plan and the prediction target, and where the current rate leads:
    2 symbols on 1h candles make 336 predictions in 7 days, so 10,000 is not a 7-day goal for them."""
    obs, n = result.observed_hours, result.primary.n_valid
    rate = n / obs if obs > 0 else 0.0
    at_plan = rate * PLAN_HOURS
    if rate <= 0:
        reach = "no predictions yet, no rate"
    elif n >= PLAN_PREDICTIONS:
        reach = "reached"
    else:
        reach = f"{(PLAN_PREDICTIONS - n) / rate / 24:,.0f} more days at this rate"
    return [
        f"Progress vs plan (7 days): {obs:.3g} h of {PLAN_HOURS} h observed ({min(obs / PLAN_HOURS, 1):.0%}); "
        f"{n:,} valid predictions at {rate:.3g}/h → ~{at_plan:,.0f} expected in 7 days",
        f"Progress vs target ({PLAN_PREDICTIONS:,} predictions): {n:,} ({min(n / PLAN_PREDICTIONS, 1):.0%}); {reach}",
    ]


def _selection_line(result: AnalysisResult) -> str:
    s = result.selection
    if s is None:
        return "Rows:     every row of the model in the window (all versions and roles)"
    left = (f"; {s.excluded:,} rows of other versions or roles in the window left out (--all-versions mixes them)"
            if s.excluded else "")
    return f"Rows:     {s.what}: {s.version or '?'} (sha256 {s.sha256[:12]}…) as {s.role}{left}"


def _voter_note(m: ModelAnalysis) -> str:
    """A compared model that voted in the window: its gates are no activation verdict."""
    if m.role_counts and set(m.role_counts) == {"voter"}:
        return " (a VOTER: it already votes, so this verdict is for reference, not activation)"
    return ""


def render_text(result: AnalysisResult) -> str:
    """The human report: the spec's sections, the verdict line of the analysed model, then the edge."""
    w = result.window
    m0 = result.primary
    head = f"Shadow metrics analysis — {m0.model}" + (f" vs {result.models[1].model}" if len(result.models) > 1 else "")
    ends = "--until" if w.until_given else "newest decision"
    da = result.decision_actions
    wj = w.to_json()
    lines = [
        head,
        "=" * len(head),
        f"Store:    {result.store_path}",
        *_bus_lines(result.bus_skipped),
        f"Window:   {wj['start']} → {wj['end']} ({w.hours:g} h, ends at {ends}; market time)",
        f"Decisions in window: {w.n_decisions} (BUY {da[2]}, SELL {da[0]}, HOLD {da[1]}; all decisions, "
        "HOLD included)" + (f", first {wj['first_decision']}, last {wj['last_decision']}" if w.n_decisions else ""),
        *_progress_lines(result),
        _selection_line(result),
    ]
    if m0.n_rows == 0:
        lines.append(f"⚠ no predictions of model {m0.model!r} in this window (is it recorded under another name?)")
    t = _Table(result.models)
    _data_section(t)
    hist_scale = {m.model: max(m.confidence.hist_counts) if m.confidence else 1 for m in result.models}
    _sections(t, hist_scale)
    _gate_section(t)
    lines += t.render()
    lines.append("")
    if result.synthetic_decisions:
        lines.append(f"⚠ SYNTHETIC candles: {result.synthetic_decisions:,} of the window's {w.n_decisions:,} decisions "
                     "were made (and their outcomes scored) on a generated market, not real prices; this verdict "
                     "says nothing about real trading")
    for m in result.models[1:]:
        lines.append(f"{m.model}{_voter_note(m)}: {verdict_line(m)}")
    lines.append(verdict_line(m0))
    lines += edge_lines(result)
    if result.challengers is not None:
        lines += challenger_lines(result.challengers)
    return "\n".join(lines) + "\n"


def _model_json(m: ModelAnalysis) -> dict:
    cs = m.confidence
    return {
        "model": m.model,
        "n_rows": m.n_rows,
        "n_shadow": m.n_valid,
        "n_late": m.n_late,
        "roles": m.role_counts,
        "voter": bool(m.role_counts) and set(m.role_counts) == {"voter"},
        "versions": [{"role": v.role, "version": v.version, "sha256": v.sha256, "n": v.n,
                      "first_ms": v.first_ms, "last_ms": v.last_ms} for v in m.versions],
        "skipped": dict(m.skipped),
        "unknown_actions": dict(m.unknown_actions),
        "action_distribution": {ACTIONS[i]: m.actions[i].to_json() for i in range(3)},
        "confidence": None if cs is None else {
            "n": cs.n, "mean": cs.mean, "median": cs.median, "stddev": cs.std, "stddev_lo": cs.std_lo,
            "stddev_hi": cs.std_hi, "percentiles": dict(zip(("p10", "p25", "p50", "p75", "p90"), cs.percentiles, strict=True)),
            "min": cs.minimum, "max": cs.maximum, "distinct": cs.distinct,
            "histogram": {"edges": list(HIST_EDGES), "counts": list(cs.hist_counts)},
        },
        "agreement": m.agreement.to_json(),
        "crosstab": {ACTIONS[i]: dict(zip(ACTIONS, m.crosstab[i], strict=True)) for i in range(3)},
        "outcomes": {
            "labels": dict(m.labels_used), "n_scored": m.n_scored, "n_pending": m.n_pending,
            "unscorable": dict(m.unscorable), "band_fallback": m.band_fallback,
            "realised": {ACTIONS[i]: m.realised[i].to_json() for i in range(3)},
            "accuracy": m.accuracy.to_json(),
        },
        "calibration": {
            "buckets": [{"lo": b.lo, "hi": b.hi, "mean_confidence": None if not math.isfinite(b.mean_confidence)
                         else b.mean_confidence, "qualifies": b.qualifies, **b.accuracy.to_json()} for b in m.buckets],
            "n": m.n_calibrated,
            "ece": dict(zip(("value", "lo", "hi"), (None if not math.isfinite(x) else x for x in m.ece), strict=True)),
            "brier": dict(zip(("value", "lo", "hi"), (None if not math.isfinite(x) else x for x in m.brier), strict=True)),
        },
        "timeline": {"edges_ms": list(m.timeline.edges_ms),
                     "actions": [dict(zip(ACTIONS, r, strict=True)) for r in m.timeline.actions],
                     "agree": list(m.timeline.agree)},
        "n_scored": m.n_scored,
        "gates": {g.name.lower().replace(" ", "_"): g.to_json() for g in m.gates},
        "gates_passed": m.gates_passed,
        "verdict": m.verdict,
        "verdict_line": verdict_line(m),
    } | ({"sample": m.sample.to_json()} if m.sample is not None else {})


def to_json(result: AnalysisResult) -> dict:
    """Machine form: the analysed model's figures at top level, every model under ``models``."""
    w = result.window
    per = [_model_json(m) for m in result.models]
    return _finite({
        "store": result.store_path,
        "bus_skipped": None if result.bus_skipped is None else {"total": sum(result.bus_skipped.values()),
                                                                "reasons": result.bus_skipped},
        "window": w.to_json(),
        "n_decisions": w.n_decisions,
        "decision_actions": dict(zip(ACTIONS, result.decision_actions, strict=True)),
        "progress": {"plan_hours": PLAN_HOURS, "plan_predictions": PLAN_PREDICTIONS,
                     "hours_share": min(w.hours / PLAN_HOURS, 1.0), "observed_share": min(result.observed_hours / PLAN_HOURS, 1.0),
                     "predictions_share": min(result.primary.n_valid / PLAN_PREDICTIONS, 1.0),
                     "observed_hours": result.observed_hours,
                     "expected_in_plan": (result.primary.n_valid / result.observed_hours * PLAN_HOURS
                                          if result.observed_hours > 0 else 0.0)},
        "selection": result.selection.to_json() if result.selection else None,
        "synthetic_decisions": result.synthetic_decisions,
        "thresholds": result.thresholds.to_json(),
        "compare": result.models[1].model if len(result.models) > 1 else None,
        **per[0],
        "exit_code": result.exit_code,
        "models": {p["model"]: p for p in per},
        "edge": result.edge.to_json() if result.edge else None,
        "edge_error": result.edge_error,
        "recommendation": result.recommendation.to_json() if result.recommendation else None,
        "challengers": result.challengers.to_json() if result.challengers else None,
    })


def _finite(x):
    """JSON has no NaN: undefined figures become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x
