"""Several challengers judged against the champion at once, with the multiplicity counted.

Each challenger's edge verdict is an intersection of three one-sided claims (it forecasts better
than the class prior, the ensemble forecasts better with it, option A earns no less than the
champion): the intersection–union p-value of "better" is the largest of the three one-sided
p-values (Berger 1982). With k challengers, the chance that some no-better one looks better grows
with k, so their p-values go through Holm's step-down procedure (Holm 1979), which holds the
family-wise error rate at alpha under any dependence between the challengers (they are judged on
the same decisions, so they are dependent). The best challenger is named only if it survives.

The best one's option-A Sharpe is also deflated for every challenger ever trialled for its model
(the registry's staged versions, at least the ones compared here): the Deflated Sharpe Ratio of
Bailey & López de Prado (2014) is the PSR against the Sharpe ratio the best of N no-skill trials
would reach by luck, E[max SR] ~ sqrt(V) * ((1 - g) z(1 - 1/N) + g z(1 - 1/(N e))), g the
Euler–Mascheroni constant, V the variance of the trials' Sharpe ratios (those compared here; with
one, the estimator's variance under no skill, 1/T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ai_engine.analysis.edge import EdgeAnalysis
from ai_engine.analysis.inference import PairedTest
from ai_engine.analysis.reader import SampleSeen
from ai_engine.money import probabilistic_sharpe

__all__ = ["ChallengerRow", "ChallengerComparison", "compare_challengers", "holm", "expected_max_sharpe",
           "one_sided_p", "render_lines"]

EULER_GAMMA = 0.5772156649015329


def one_sided_p(t: PairedTest | None, *, higher_is_better: bool) -> float:
    """P-value of "the mean difference is on the better side of 0" from the HLN statistic
    against Student t(n-1), as the two-sided test uses; 1 without a test."""
    if t is None or math.isnan(t.stat):
        return 1.0
    stat = t.stat if higher_is_better else -t.stat
    return float(stats.t.sf(stat, max(t.n - 1, 1)))


def holm(pvalues: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections: sorted p_(i) rejected while p_(i) <= alpha / (k - i)."""
    k = len(pvalues)
    reject = [False] * k
    for rank, i in enumerate(sorted(range(k), key=lambda i: pvalues[i])):
        if pvalues[i] > alpha / (k - rank):
            break
        reject[i] = True
    return reject


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The per-period Sharpe ratio the best of ``trials`` no-skill strategies reaches by luck."""
    if trials <= 1 or not variance > 0:
        return 0.0
    z = stats.norm.ppf
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * z(1 - 1 / trials) + EULER_GAMMA * z(1 - 1 / (trials * math.e)))


@dataclass(frozen=True, slots=True)
class ChallengerRow:
    """One challenger: its own edge verdict, the p-value of "better" and whether Holm keeps it."""

    model: str
    verdict: str
    p_better: float  # intersection–union: the largest of the three one-sided p-values
    survives: bool
    money_edge_bps: float  # option A minus champion, mean per bar
    sharpe: float  # option A's per-period Sharpe ratio
    sample: SampleSeen | None = None  # a budgeted challenger: judged on the decisions it saw

    def to_json(self) -> dict:
        return {"model": self.model, "verdict": self.verdict, "p_better": self.p_better, "survives_holm": self.survives,
                "option_a_minus_champion_bps_per_bar": self.money_edge_bps, "option_a_sharpe_per_bar": self.sharpe
                } | ({"sample": self.sample.to_json()} if self.sample is not None else {})


@dataclass(frozen=True, slots=True)
class ChallengerComparison:
    rows: tuple[ChallengerRow, ...]
    alpha: float
    best: str | None  # only a challenger that survives the correction
    trialled: int  # challengers ever trialled for the best's model (registry), at least those compared
    deflated_sharpe: float | None  # of the best: P(true Sharpe > the luck of ``trialled`` trials)
    reason: str

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "correction": "Holm on intersection-union p-values", "best": self.best,
                "trialled": self.trialled, "deflated_sharpe_ratio": self.deflated_sharpe, "reason": self.reason,
                "challengers": [r.to_json() for r in self.rows]}


def _sharpe(x: np.ndarray) -> float:
    sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return float(x.mean()) / sd if sd > 0 else math.nan


def compare_challengers(edges: dict[str, EdgeAnalysis], trialled: dict[str, int] | None = None,
                        alpha: float = 0.05) -> ChallengerComparison:
    """Holm over the challengers' p-values of "better"; ``trialled`` counts per challenger how many
    versions its model ever had in trial (the registry), for the best one's Deflated Sharpe."""
    rows = []
    for model, e in edges.items():
        skill = next((s.log_loss_test for s in e.scores if s.reference == "class prior"), None)  # as the verdict reads
        forecast = e.forecast_edge.log_loss_test if e.forecast_edge else None
        p = max(one_sided_p(skill, higher_is_better=False), one_sided_p(forecast, higher_is_better=False),
                one_sided_p(e.money_edge, higher_is_better=True))
        option_a = e.scenarios[0].money
        rows.append([model, e.verdict, p, e.money_edge.mean * 1e4 if e.money_edge else math.nan,
                     _sharpe(np.asarray(option_a.returns, dtype=np.float64))])
    keep = holm([r[2] for r in rows], alpha)
    out = tuple(ChallengerRow(m, v, p, s and v == "BETTER", bps, sr, edges[m].sample)
                for (m, v, p, bps, sr), s in zip(rows, keep, strict=True))
    survivors = [r for r in out if r.survives]
    if not survivors:
        why = (f"no challenger survives Holm's correction for {len(out)} comparisons at alpha {alpha:g}"
               if out else "no challenger to compare")
        return ChallengerComparison(out, alpha, None, max(len(out), 0), None, why)
    best = max(survivors, key=lambda r: r.money_edge_bps)
    n_trials = max(len(out), (trialled or {}).get(best.model, 0))
    returns = np.asarray(edges[best.model].scenarios[0].money.returns, dtype=np.float64)
    srs = np.array([r.sharpe for r in out if math.isfinite(r.sharpe)])
    var = float(srs.var(ddof=1)) if srs.size > 1 else 1.0 / max(returns.size, 1)
    dsr = probabilistic_sharpe(returns, expected_max_sharpe(n_trials, var))
    return ChallengerComparison(out, alpha, best.model, n_trials, dsr,
                                f"{best.model} survives Holm's correction for {len(out)} comparisons and earns the "
                                f"most over the champion; its Sharpe deflated for {n_trials} trials")


def render_lines(c: ChallengerComparison) -> list[str]:
    """The text report's section."""
    head = f"Challengers against the champion (Holm's correction over {len(c.rows)}, alpha {c.alpha:g})"
    lines = ["", head, "-" * len(head),
             f"  {'model':<16} {'edge verdict':<24} {'p(better)':>9}  {'survives':<8}  {'A - champion':>14}  {'Sharpe/bar':>10}"]
    for r in c.rows:
        lines.append(f"  {r.model:<16} {r.verdict:<24} {r.p_better:>9.4f}  {'yes' if r.survives else 'no':<8}  "
                     f"{r.money_edge_bps:>+10.3f} bps  {r.sharpe:>+10.4f}"
                     + (f"  ({r.sample.describe()})" if r.sample is not None else ""))
    if c.best is None:
        lines.append(f"Best challenger: none ({c.reason})")
    else:
        dsr = "n/a" if c.deflated_sharpe is None or math.isnan(c.deflated_sharpe) else f"{c.deflated_sharpe:.3f}"
        lines.append(f"Best challenger: {c.best} (Deflated Sharpe Ratio {dsr} for {c.trialled} trials ever: {c.reason})")
    return lines
