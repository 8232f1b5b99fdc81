"""Text of the edge sections, printed after the spec's report and its verdict line."""

from __future__ import annotations

import math

from ai_engine.analysis.analyze import AnalysisResult
from ai_engine.analysis.edge import EdgeAnalysis, ScoreComparison
from ai_engine.analysis.inference import PairedTest

__all__ = ["edge_lines"]


def _p(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.{nd}%}"


def _f(x: float, nd: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _test(t: PairedTest | None, scale: float = 1.0, nd: int = 4) -> str:
    if t is None or not math.isfinite(t.mean):
        return "n/a (too few periods)"
    g = lambda x: "n/a" if not math.isfinite(x) else f"{x * scale:+.{nd}f}"  # noqa: E731
    boot = f"bootstrap [{g(t.boot_lo)}, {g(t.boot_hi)}]; " if math.isfinite(t.block) else ""
    return (f"{g(t.mean)} [{g(t.lo)}, {g(t.hi)}] HAC/HLN p={t.p_value:.3f}; {boot}"
            f"anytime [{g(t.cs_lo)}, {g(t.cs_hi)}]; {t.n} periods")


def _weights(w: dict[str, float]) -> str:
    return ", ".join(f"{m} {v:g}" for m, v in w.items())


def _score_line(s: ScoreComparison) -> list[str]:
    return [f"  {s.challenger} vs {s.reference} (n={s.n}): log loss {_f(s.log_loss[0], 4)} vs {_f(s.log_loss[1], 4)} "
            f"(skill {_p(s.skill, 1)}), Brier {_f(s.brier[0], 4)} vs {_f(s.brier[1], 4)}",
            f"      Δ log loss {_test(s.log_loss_test)}",
            f"      Δ Brier    {_test(s.brier_test)}"]


def _money_table(e: EdgeAnalysis) -> list[str]:
    head = (f"  {'strategy':<28} {'net return':>10} {'Sharpe':>7} {'PSR':>5} {'max DD':>7} {'turnover':>8} "
            f"{'trades':>6} {'hit rate':>8} {'avg trade':>9}")
    out = [head]
    for s in e.strategies:
        st = s.stats
        out.append(f"  {s.name:<28} {_p(st.net_return):>10} {_f(st.sharpe):>7} {_f(st.psr):>5} "
                   f"{_p(-st.max_drawdown):>7} {_f(st.turnover, 1):>8} {st.trades:>6} "
                   f"{'n/a' if not math.isfinite(st.hit_rate) else f'{st.hit_rate:.1%}':>8} {_p(st.avg_trade, 3):>9}")
    return out


def edge_lines(result: AnalysisResult) -> list[str]:
    """The edge verdict, counterfactual A/B, the money table, the paired comparison, the recommendation."""
    e = result.edge
    model = result.primary.model
    lines = ["", f"── Edge: would activating {model} have done better than what trades now? ──"]
    if e is None:
        lines.append(f"No edge analysis: {result.edge_error}")
    else:
        x = e.execution
        side = "long-only" if x.long_only else "long/short"
        lines.append(f"Counterfactual activation: {e.decisions:,} recorded decisions re-voted from the recorded "
                     f"predictions (no new inference); re-voting the record reproduces "
                     f"{e.decisions - e.revote_mismatches:,} of {e.decisions:,}")
        lines.append(f"  {'scenario':<10} {'weights':<44} {'changed':>7} {'actionable':>10} {'boosted':>7}  consensus")
        for s in e.scenarios:
            cons = " ".join(f"{k}:{v}" for k, v in sorted(s.consensus.items()))
            lines.append(f"  {s.name:<10} {_weights(s.weights):<44} {s.actions_changed:>7,} "
                         f"{s.actionable:>10,} {s.boosted:>7,}  {cons}")
        lines.append(f"  (as recorded: {e.scenarios[0].actionable_recorded:,} actionable; the governor blocked "
                     f"{e.governor_blocked:,} of them, and blocks the counterfactual at the same times)")
        lines.append("")
        lines.append(f"Money view: act at the next candle's open, hold {x.hold_bars} bars or until an opposite "
                     f"signal, {x.fee_bps:g} bps fee + {x.slippage_bps:g} bps slippage per side, {side}; "
                     f"{len(e.symbols)} symbol(s) {', '.join(e.symbols)}, {e.bars:,} bars of {e.interval}"
                     + ("; SYNTHETIC candles" if e.synthetic else ""))
        lines += _money_table(e)
        lines.append("")
        lines.append("Paired comparison (challenger minus reference, per timestamp; 95% intervals):")
        for s in e.scores:
            lines += _score_line(s)
        if e.forecast_edge is not None:
            lines += _score_line(e.forecast_edge)
        for s in e.scenarios:
            lines.append(f"  {s.name} minus champion, return per bar (bps): {_test(s.vs_champion, 1e4, 2)}")
        lines.append("")
        lines.append(f"Edge verdict: {e.verdict} (anytime-valid: {e.anytime}) — {e.reason}")
        for n in e.notes:
            lines.append(f"  note: {n}")
    r = result.recommendation
    if r is not None:
        lines.append(f"Recommendation: option {r.option} — {r.reason}")
    return lines
