"""Is the challenger better than what trades now? The counterfactual activation, the money view
and the paired comparison with the champion, from the recorded predictions alone (no inference).

* **Counterfactual.** Every decision of the window is re-voted (``revote``) as if the challenger
  had voted: option A (its configured weight, the others as they are), option B (5, with the
  spec's 27.5/27.5/40 or the given rebalance) and any weights the operator names. Re-voting the
  recorded configuration must reproduce the recorded decisions; mismatches are counted.
* **Governor.** A counterfactual decision trades only where the governor let the champion's
  actionable decisions through: the state is known at each recorded actionable decision (blocked
  or not) and carried to the decisions between them (the nearest earlier one, else the next).
* **Money.** ``ai_engine.money`` turns each strategy's actionable, allowed decisions into
  positions and equity after costs, on one grid of opens.
* **Paired comparison.** Per scored prediction, log loss and Brier score of the challenger against
  each voter and the class prior (the window's realised class frequencies), and of the ensemble's
  pooled forecast with the challenger (option A weights) against without it; per bar, option A's
  and B's returns minus the champion's. Differences are averaged over the symbols of one
  timestamp, then tested with ``inference.paired_test`` (Diebold–Mariano with Newey–West and the
  HLN correction, a stationary bootstrap, and a confidence sequence over daily block means).
* **Edge verdict.** BETTER when the challenger's log loss beats the class prior's (skill of its
  own), the pooled forecast with it beats the pool without it, and option A's money is not worse;
  WORSE when any of the three is worse; otherwise NOT DISTINGUISHABLE YET. The anytime-valid verdict applies the same rule to the confidence sequences, which keep
  their error rate however often the analysis is run.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ai_engine.analysis.decisions import READ_THREADS, DecisionTable
from ai_engine.analysis.inference import PairedTest, anytime_verdict, edge_verdict, paired_test
from ai_engine.analysis.outcomes import score_outcomes
from ai_engine.analysis.reader import ROLE_CODES, ModelRows, SampleSeen, Series
from ai_engine.analysis.revote import Rule, Vote, revote
from ai_engine.exceptions import ConfigError
from ai_engine.money import Execution, PriceGrid, StrategyResult, buy_and_hold, flat, simulate

__all__ = ["Scenario", "ScoreComparison", "EdgeAnalysis", "EdgeVerdict", "analyze_edge", "counterfactual",
           "option_b_weights", "SPEC_OPTION_B"]

EdgeVerdict = Literal["BETTER", "WORSE", "NOT DISTINGUISHABLE YET"]
SPEC_OPTION_B = {"xgb": 27.5, "lgbm": 27.5, "nhits": 40.0, "patchtst": 5.0}
OPTION_B_WEIGHT = 5.0
EPS = 1e-12
BOOTSTRAP_SAMPLES = 500  # for the four tests the verdict reads; the other comparisons show HAC and anytime only
DAY_MS = 86_400_000
PLAN_DAYS = 7  # the spec's observation plan: the confidence sequence is narrowest at 7 daily blocks
_VOTER = ROLE_CODES.index("voter")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One re-vote of the window: weights of the voters and what changed against the record."""

    name: str
    weights: dict[str, float]
    decisions: int
    actions_changed: int
    actionable: int
    actionable_recorded: int
    consensus: dict[int, int]  # consensus count -> decisions
    boosted: int
    money: StrategyResult
    vs_champion: PairedTest | None  # per-bar return minus the champion's

    def to_json(self) -> dict:
        return {"name": self.name, "weights": self.weights, "decisions": self.decisions,
                "actions_changed": self.actions_changed, "actionable": self.actionable,
                "actionable_recorded": self.actionable_recorded,
                "consensus": {str(k): v for k, v in sorted(self.consensus.items())}, "boosted": self.boosted,
                "money": self.money.stats.to_json(),
                "vs_champion": self.vs_champion.to_json() if self.vs_champion else None}


@dataclass(frozen=True, slots=True)
class ScoreComparison:
    """Mean proper scores of the challenger (or a pooled forecast) and a reference on the same
    scored predictions; tests are of challenger minus reference (below 0: the challenger is better)."""

    challenger: str
    reference: str
    n: int
    log_loss: tuple[float, float]  # challenger, reference
    brier: tuple[float, float]
    log_loss_test: PairedTest | None
    brier_test: PairedTest | None

    @property
    def skill(self) -> float:
        """Log-loss skill score against the reference: 1 - LL / LL_ref (above 0: better)."""
        a, b = self.log_loss
        return 1 - a / b if b > 0 else math.nan

    def to_json(self) -> dict:
        f = lambda x: None if not math.isfinite(x) else round(float(x), 8)  # noqa: E731
        return {"challenger": self.challenger, "reference": self.reference, "n": self.n,
                "log_loss": [f(x) for x in self.log_loss], "brier": [f(x) for x in self.brier],
                "log_loss_skill": f(self.skill),
                "log_loss_test": self.log_loss_test.to_json() if self.log_loss_test else None,
                "brier_test": self.brier_test.to_json() if self.brier_test else None}


@dataclass(frozen=True, slots=True)
class EdgeAnalysis:
    challenger: str
    execution: Execution
    interval: str | None
    symbols: tuple[str, ...]
    bars: int
    decisions: int
    synthetic: bool  # the outcomes were scored on synthetic candles
    revote_mismatches: int  # recorded decisions the re-vote of their own config does not reproduce
    governor_blocked: int  # recorded actionable decisions the governor stopped
    scenarios: tuple[Scenario, ...]
    strategies: tuple[StrategyResult, ...]  # champion, A, B, custom, challenger alone, voters, buy-and-hold, flat
    scores: tuple[ScoreComparison, ...]
    forecast_edge: ScoreComparison | None  # pooled forecast with the challenger vs without
    money_edge: PairedTest | None  # option A minus champion, per bar
    verdict: EdgeVerdict
    anytime: EdgeVerdict
    reason: str
    notes: tuple[str, ...]
    sample: SampleSeen | None = None  # a budgeted challenger: compared on the decisions it saw only

    def to_json(self) -> dict:
        return {
            "challenger": self.challenger, "execution": self.execution.to_json(), "interval": self.interval,
            "symbols": list(self.symbols), "bars": self.bars, "decisions": self.decisions,
            "synthetic": self.synthetic, "revote_mismatches": self.revote_mismatches,
            "governor_blocked": self.governor_blocked,
            "scenarios": [s.to_json() for s in self.scenarios],
            "strategies": {s.name: s.stats.to_json() for s in self.strategies},
            "scores": [s.to_json() for s in self.scores],
            "forecast_edge": self.forecast_edge.to_json() if self.forecast_edge else None,
            "money_edge": self.money_edge.to_json() if self.money_edge else None,
            "verdict": self.verdict, "anytime_verdict": self.anytime, "reason": self.reason,
            "notes": list(self.notes),
        } | ({"sample": self.sample.to_json()} if self.sample is not None else {})


def option_b_weights(models: tuple[str, ...], weights: dict[str, float], challenger: str,
                     rebalance: dict[str, float] | None, kind: str | None = None) -> dict[str, float]:
    """Option B: the challenger at 5; the others as ``rebalance`` says, else the spec's 27.5/27.5/40
    when the voters are the spec's and the challenger is a PatchTST (``kind``), else scaled to sum
    to 95."""
    others = [m for m in models if m != challenger and weights.get(m, 0) > 0]
    if rebalance:
        out = {m: float(rebalance.get(m, weights.get(m, 0.0))) for m in others}
    elif (kind or challenger) == "patchtst" and set(others) == {"xgb", "lgbm", "nhits"}:
        out = {m: SPEC_OPTION_B[m] for m in others}
    else:
        total = sum(weights[m] for m in others)
        out = {m: weights[m] * (100 - OPTION_B_WEIGHT) / total for m in others} if total > 0 else {}
    out[challenger] = OPTION_B_WEIGHT
    return out


def _governor_allowed(table: DecisionTable) -> np.ndarray:
    """Whether the governor would have let an actionable decision through at each decision time."""
    known = table.actionable
    n = table.n
    if not known.any():
        return np.ones(n, dtype=bool)
    idx = np.where(known, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    nxt = np.where(known, np.arange(n), n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    src = np.where(idx >= 0, idx, nxt)
    return ~table.blocked[np.clip(src, 0, n - 1)]


def _grid(table: DecisionTable, series: tuple[Series, ...], hold: int) -> tuple[PriceGrid, np.ndarray, np.ndarray, list[str]]:
    """The grid of opens over the decisions' series (one interval: the one most decisions use),
    and each decision's (grid row, grid bar), -1 where it is off the grid."""
    notes: list[str] = []
    ok = table.series >= 0
    if not ok.any():
        return PriceGrid((), np.zeros(0, dtype=np.int64), np.zeros((0, 0)), 3_600_000), \
            np.full(table.n, -1), np.full(table.n, -1), ["no candles recorded for the decisions' symbols"]
    used = np.unique(table.series[ok])
    intervals = [series[i].interval for i in used]
    per_series = np.bincount(table.series[ok], minlength=len(series))
    counts = {iv: int(sum(per_series[i] for i in used if series[i].interval == iv)) for iv in set(intervals)}
    interval = max(counts, key=counts.get)
    keep = [int(i) for i in used if series[i].interval == interval]
    if len(counts) > 1:
        notes.append(f"money view on {interval} only; {sum(v for k, v in counts.items() if k != interval)} "
                     "decisions of other intervals left out")
    iv = series[keep[0]].interval_ms
    t_dec = table.t[np.isin(table.series, keep)]
    start = int(t_dec.min())
    last_open = max((s.t0 + (s.close.size - 1) * iv for s in (series[i] for i in keep) if s.close.size), default=start)
    end = min(int(t_dec.max()) + (hold + 1) * iv, max(last_open, int(t_dec.max())))
    times = np.arange(start, end + iv, iv, dtype=np.int64)
    opens = np.full((len(keep), times.size), np.nan)
    for r, si in enumerate(keep):
        s = series[si]
        src = s.open if s.open is not None else np.concatenate([[np.nan], s.close[:-1]])
        g = (times - s.t0) // iv
        inside = (g >= 0) & (g < src.size)
        opens[r, inside] = src[g[inside]]
    grid = PriceGrid(tuple(series[i].symbol for i in keep), times, opens, iv)
    row_of = np.full(max(len(series), 1), -1)
    row_of[keep] = np.arange(len(keep))
    rows = np.where(table.series >= 0, row_of[np.maximum(table.series, 0)], -1)
    bar, on = grid.index_of(table.t)
    rows = np.where(on, rows, -1)
    return grid, rows, np.where(rows >= 0, bar, -1), notes


def _signals(grid: PriceGrid, rows: np.ndarray, bars: np.ndarray, action: np.ndarray, trade: np.ndarray) -> np.ndarray:
    sig = np.zeros(grid.opens.shape, dtype=np.int8)
    sel = trade & (rows >= 0) & (action != 1) & (action >= 0)
    sig[rows[sel], bars[sel]] = np.where(action[sel] == 2, 1, -1)
    return sig


def _per_time(t: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Mean of ``d`` over the rows of each timestamp, in time order (pooled symbols move together)."""
    if t.size == 0:
        return np.zeros(0)
    u, inv = np.unique(t, return_inverse=True)
    return np.bincount(inv, weights=d, minlength=u.size) / np.bincount(inv, minlength=u.size)


def _losses(probs: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: log loss and Brier score of ``probs`` (n, 3) for the realised class (one class
    column at a time: no (n, 3) float64 temporaries)."""
    ll = -np.log(np.clip(probs[np.arange(real.size), real].astype(np.float64), EPS, 1.0))
    br = np.zeros(real.size)
    for c in range(3):
        d = probs[:, c].astype(np.float64) - (real == c)
        br += d * d
    return ll, br


def _probs_ok(p: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.all(np.isfinite(p) & (p >= 0) & (p <= 1), axis=-1) & (np.abs(p.sum(axis=-1) - 1) <= 1e-3)


def _compare(name: str, ref: str, t: np.ndarray, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
             horizon: int, block: int, seed: int, samples: int = 0) -> ScoreComparison:
    """Per-row (log loss, Brier) of ``a`` against ``b`` on the same rows; the log-loss test gets
    ``samples`` bootstrap resamples (the verdict reads it), the Brier test none."""
    (la, ba), (lb, bb) = a, b
    n = int(t.size)
    if n < 2:
        nan = (math.nan, math.nan)
        return ScoreComparison(name, ref, n, nan, nan, None, None)
    dl, db = _per_time(t, la - lb), _per_time(t, ba - bb)
    tests = [paired_test(x, horizon=horizon, cs_block=block, tightest_at=PLAN_DAYS, seed=seed, samples=k) if x.size >= 3 else None
             for x, k in ((dl, samples), (db, 0))]
    return ScoreComparison(name, ref, n, (float(la.mean()), float(lb.mean())), (float(ba.mean()), float(bb.mean())),
                           tests[0], tests[1])


def _pool(table: DecisionTable, votes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ensemble's forecast as a linear opinion pool: the voters' probabilities averaged with
    their weights (rows where nobody votes get NaN)."""
    w = np.where(votes, weights, 0.0)
    acc = np.zeros((table.n, 3))
    for j in range(w.shape[1]):  # one model at a time: no (N, M, 3) float64 temporary
        acc += np.nan_to_num(table.pred_probs[:, j].astype(np.float64)) * w[:, j, None]
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return acc / tot[:, None]


def _combine(skill: PairedTest | None, forecast: PairedTest | None, money: PairedTest | None, judge) -> EdgeVerdict:
    """BETTER needs all three: the challenger forecasts better than the class prior (it has skill
    of its own: a model that only sharpens or softens the ensemble's forecast has none), the
    ensemble forecasts better with it, and option A earns no less. Any of them worse is WORSE."""
    verdicts = [judge(t, higher_is_better=hib) if t is not None else "NOT DISTINGUISHABLE YET"
                for t, hib in ((skill, False), (forecast, False), (money, True))]
    if "WORSE" in verdicts:
        return "WORSE"
    return "BETTER" if verdicts[0] == verdicts[1] == "BETTER" else "NOT DISTINGUISHABLE YET"


def analyze_edge(
    table: DecisionTable,
    series: tuple[Series, ...],
    primary: ModelRows,
    challenger: str,
    *,
    execution: Execution | None = None,
    rebalance: dict[str, float] | None = None,
    custom: tuple[dict[str, float], ...] = (),
    seed: int = 0,
) -> EdgeAnalysis:
    """Counterfactual activation of ``challenger``, money table and paired comparison (module docstring).

    ``primary`` gives the challenger's label specs (indexed by config, as its rows are) for scoring.
    """
    if challenger not in table.models:
        raise ConfigError(f"{challenger!r} has no predictions beside the decisions of this window")
    j = table.column(challenger)
    # per decision: the weights the engine recorded with each prediction, and who voted
    w_rec = table.pred_weight
    voter_rec = table.pred_role == _VOTER
    hold = execution.hold_bars if execution else int(np.median([s.horizon for s in primary.labels]) if primary.labels else 4)
    execution = execution or Execution(hold_bars=hold)

    base_w = {mod: float(np.median(w_rec[voter_rec[:, k], k])) if voter_rec[:, k].any() else 0.0
              for k, mod in enumerate(table.models)}
    configured = w_rec[table.pred_role[:, j] >= 0, j]
    a_weight = float(configured[-1]) if configured.size and configured[-1] > 0 else 20.0
    voters = [mod for k, mod in enumerate(table.models) if k != j and voter_rec[:, k].any()]
    kind = next((c.kinds[j] for c in reversed(table.configs) if c.kinds and c.kinds[j] != challenger), challenger)
    if kind != challenger and kind in voters:  # a new version beside its champion: activating replaces it
        voters.remove(kind)
        a_weight = base_w[kind]
    option_a = {mod: base_w[mod] for mod in voters} | {challenger: a_weight}
    option_b = option_b_weights(tuple(voters + [challenger]), base_w, challenger, rebalance, kind)
    named = [("option A", option_a), ("option B", option_b)] + [(f"custom {i + 1}", c) for i, c in enumerate(custom)]
    for _, wts in named:
        unknown = set(wts) - set(table.models)
        if unknown:
            raise ConfigError(f"weights name {', '.join(sorted(unknown))}, not models of this store "
                              f"({', '.join(table.models)})")
    # numpy releases the GIL: independent parts run side by side, this thread and the pool's one per
    # other core (each part holds temporaries of the window's size, so not more)
    with ThreadPoolExecutor(max(1, READ_THREADS - 1)) as pool:
        return _edge(pool, table, series, primary, challenger, j, execution, named, option_a, seed)


def _edge(pool, table, series, primary, challenger, j, execution, named, option_a, seed) -> EdgeAnalysis:
    """``analyze_edge``'s work, its independent parts on ``pool``; results in a fixed order."""
    m = len(table.models)
    w_rec = table.pred_weight
    voter_rec = table.pred_role == _VOTER
    valid = table.pred_valid
    votes_rec = valid & voter_rec
    f_check = pool.submit(_revote_check, table, votes_rec, w_rec)
    allowed = _governor_allowed(table)
    grid, rows, bars, notes = _grid(table, series, execution.hold_bars)
    champion = simulate("champion (as recorded)", grid,
                        _signals(grid, rows, bars, table.action, table.actionable & ~table.blocked), execution)
    results: list[StrategyResult] = [champion]
    block = max(1, int(round(DAY_MS / grid.interval_ms)))

    def scenario(name: str, wts: dict[str, float]) -> Scenario:
        vote = counterfactual(table, wts)
        money = simulate(name, grid, _signals(grid, rows, bars, vote.action, vote.actionable & allowed), execution)
        diff = money.returns - champion.returns
        test = (paired_test(diff, horizon=execution.hold_bars, cs_block=block, tightest_at=PLAN_DAYS, seed=seed, samples=BOOTSTRAP_SAMPLES)
                if diff.size >= 3 else None)
        cons = np.bincount(vote.consensus, minlength=m + 1)
        return Scenario(
            name, {k: v for k, v in wts.items() if v > 0}, table.n, int((vote.action != table.action).sum()),
            int(vote.actionable.sum()), int(table.actionable.sum()), {k: int(c) for k, c in enumerate(cons) if c},
            int(vote.boosted.sum()), money, test)

    f_scenarios = [pool.submit(scenario, name, wts) for name, wts in named]
    f_alone = []
    for k, mod in enumerate(table.models):
        if k == j or voter_rec[:, k].any():
            label = f"{mod} alone" + (" (challenger)" if k == j else "")
            f_alone.append(pool.submit(lambda label, k: simulate(
                label, grid, _signals(grid, rows, bars, table.pred_action[:, k], valid[:, k] & allowed), execution),
                label, k))
    start_bar = 1 if grid.times.size > 1 else 0

    # scores on realised outcomes, with the challenger's label config
    rows_like = dataclasses.replace(primary, t=table.t, series=table.series,
                                    label=np.where(table.config >= 0, table.config,
                                                   len(primary.labels) - 1).astype(np.int16))
    out = score_outcomes(rows_like, series, np.ones(table.n, dtype=bool))
    scored = out.state == 0
    real = out.realised.astype(np.int64)
    horizon = int(max((s.horizon for s in primary.labels), default=1))
    probs_ok = _probs_ok(table.pred_probs)
    real0 = np.where(scored, real, 0)  # rows not scored are never selected below
    f_forecast = pool.submit(_forecast_edge, table, option_a, valid, votes_rec, probs_ok, w_rec, scored, real, horizon,
                             block, seed)
    scores = _model_scores(table, j, challenger, valid, voter_rec, probs_ok, scored, real, real0, horizon, block, seed)
    forecast, sel_n = f_forecast.result()
    mismatches, check_notes = f_check.result()
    scenarios = [f.result() for f in f_scenarios]
    results += [x.money for x in scenarios] + [f.result() for f in f_alone]
    results += [buy_and_hold(grid, execution, start_bar), flat(grid, execution)]
    notes = check_notes + notes
    money_edge = scenarios[0].vs_champion
    f_test = forecast.log_loss_test if forecast else None
    skill = scores[0].log_loss_test if scores else None
    verdict = _combine(skill, f_test, money_edge, edge_verdict)
    anytime = _combine(skill, f_test, money_edge, anytime_verdict)
    synthetic = bool(table.synthetic[scored].any()) if scored.any() else bool(table.synthetic.any())
    return EdgeAnalysis(
        challenger=challenger, execution=execution, interval=_interval_name(series, grid), symbols=grid.symbols,
        bars=int(grid.times.size), decisions=table.n, synthetic=synthetic, revote_mismatches=mismatches,
        governor_blocked=int((table.actionable & table.blocked).sum()), scenarios=tuple(scenarios),
        strategies=tuple(results), scores=tuple(scores), forecast_edge=forecast, money_edge=money_edge,
        verdict=verdict, anytime=anytime, reason=_reason(verdict, skill, f_test, money_edge, sel_n),
        notes=tuple(notes),
    )


def _rows(mask: np.ndarray) -> slice | np.ndarray | None:
    """``mask`` as an index: every row as a slice (a view, not a copy of the (N, M) columns), none as None."""
    if mask.all():
        return slice(None)
    return mask if mask.any() else None


def _revote_check(table: DecisionTable, votes_rec: np.ndarray, w_rec: np.ndarray) -> tuple[int, list[str]]:
    """The record must be reproducible from its own configuration: decisions it does not reproduce."""
    mismatches = 0
    for ci, info in enumerate(table.configs):
        sel = _rows(table.config == ci)
        if sel is not None:
            v = revote(table.pred_action[sel], table.pred_conf[sel], votes_rec[sel], w_rec[sel], info.rule)
            mismatches += int(((v.action != table.action[sel]) | (v.actionable != table.actionable[sel])
                               | (v.confidence != table.confidence[sel]) | (v.consensus != table.consensus[sel])
                               | (v.boosted != table.boosted[sel])).sum())
    notes = []
    if (table.config < 0).any():
        notes.append(f"{int((table.config < 0).sum())} decisions of a configuration the store does not hold: "
                     "not re-voted")
    if mismatches:
        notes.append(f"re-voting the recorded configuration does not reproduce {mismatches} decisions "
                     "(predictions missing or edited?)")
    return mismatches, notes


def _model_scores(table: DecisionTable, j: int, challenger: str, valid, voter_rec, probs_ok, scored, real, real0,
                  horizon: int, block: int, seed: int) -> list[ScoreComparison]:
    """The challenger against the class prior, then against each voter, on the rows both scored."""
    scores: list[ScoreComparison] = []
    # each model's per-row scores once, however many comparisons read them
    losses = {k: _losses(table.pred_probs[:, k], real0) for k in range(len(table.models))
              if k == j or voter_rec[:, k].any()}

    def pick(pair: tuple[np.ndarray, np.ndarray], sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pair[0][sel], pair[1][sel]

    ch_ok = scored & valid[:, j] & probs_ok[:, j]
    if ch_ok.any():
        freq = np.bincount(real[ch_ok], minlength=3) / ch_ok.sum()
        prior = _losses(np.broadcast_to(freq, (table.n, 3)), real0)
        scores.append(_compare(challenger, "class prior", table.t[ch_ok], pick(losses[j], ch_ok), pick(prior, ch_ok),
                               horizon, block, seed, BOOTSTRAP_SAMPLES))
        for k, mod in enumerate(table.models):
            if k == j or k not in losses:
                continue
            sel = ch_ok & valid[:, k] & probs_ok[:, k]
            if sel.sum() >= 2:
                scores.append(_compare(challenger, mod, table.t[sel], pick(losses[j], sel), pick(losses[k], sel),
                                       horizon, block, seed))
    return scores


def _forecast_edge(table: DecisionTable, option_a: dict[str, float], valid, votes_rec, probs_ok, w_rec, scored, real,
                   horizon: int, block: int, seed: int) -> tuple[ScoreComparison | None, int]:
    """The ensemble's pooled forecast with the challenger at option A against the recorded one."""
    wa = np.array([option_a.get(mod, 0.0) for mod in table.models])
    pool_a = _pool(table, valid & (wa > 0)[None, :] & probs_ok, wa)
    pool_c = _pool(table, votes_rec & probs_ok, w_rec)
    sel = scored & _probs_ok(pool_a) & _probs_ok(pool_c)
    forecast = (_compare("ensemble with challenger (option A)", "ensemble as recorded", table.t[sel],
                         _losses(pool_a[sel], real[sel]), _losses(pool_c[sel], real[sel]), horizon, block, seed,
                         BOOTSTRAP_SAMPLES) if sel.sum() >= 2 else None)
    return forecast, int(sel.sum())


def counterfactual(table: DecisionTable, weights: dict[str, float]) -> Vote:
    """Every decision re-voted with ``weights`` (a model votes where its weight is above 0 and its
    prediction is valid), under each decision's own ensemble rule."""
    wvec = np.array([float(weights.get(mod, 0.0)) for mod in table.models])
    cfg = np.where(table.config >= 0, table.config, len(table.configs))
    infos = table.configs
    return _vote_by_config(table, table.pred_valid & (wvec > 0)[None, :], wvec, cfg,
                           lambda ci: infos[ci].rule if ci < len(infos) else Rule())


def _vote_by_config(table: DecisionTable, votes: np.ndarray, w: np.ndarray, cfg: np.ndarray, rule_for) -> Vote:
    n = table.n
    out = Vote(np.full(n, 1, dtype=np.int8), np.zeros(n), np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.int16),
               np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    for ci in np.unique(cfg):
        sel = _rows(cfg == ci)
        v = revote(table.pred_action[sel], table.pred_conf[sel], votes[sel], w, rule_for(int(ci)))
        for f in Vote.__slots__:
            getattr(out, f)[sel] = getattr(v, f)
    return out


def _interval_name(series: tuple[Series, ...], grid: PriceGrid) -> str | None:
    for s in series:
        if s.interval_ms == grid.interval_ms:
            return s.interval
    return None


def _reason(verdict: EdgeVerdict, skill: PairedTest | None, forecast: PairedTest | None, money: PairedTest | None,
            n: int) -> str:
    def ci(t: PairedTest | None, scale: float, unit: str) -> str:
        if t is None:
            return "n/a"
        return f"{t.mean * scale:+.4f}{unit} [{t.lo * scale:+.4f}, {t.hi * scale:+.4f}]"

    k = f"log loss minus the class prior's {ci(skill, 1, '')}"
    f = f"the ensemble's log loss with it minus without {ci(forecast, 1, '')} over {n} scored predictions"
    m = f"option A minus champion {ci(money, 1e4, ' bps/bar')}"
    lead = {"BETTER": "it has skill, the ensemble forecasts better with it and does not earn less",
            "WORSE": "it forecasts worse than the class prior, or the ensemble forecasts or earns worse with it",
            "NOT DISTINGUISHABLE YET": "no difference the data can tell apart yet"}[verdict]
    return f"{lead}: {k}; {f}; {m}"
