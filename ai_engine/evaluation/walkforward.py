"""Walk-forward evaluation: every fold trains a fresh model on its window, calibrates on the next
part and is judged on the block after it, which it never saw (folds: ``evaluation.folds``).

One split of one period says little about a market whose regimes change; the spread of the
figures over folds says how much any one of them can be trusted. Per fold and pooled over all
test blocks it reports, for each model (and for the ensemble):

* **scores** of the probabilities: balanced accuracy, log loss and Brier score with their skill
  against the prior — the test rows' own class frequencies (sample climatology, the usual
  reference in forecast verification): ``skill = 1 - score / score_prior``, >= 0 means no worse
  than knowing only how often each class occurs — and top-label ECE;
* **decisions**: action shares, the share that trades, the confidence spread, the hit rate of
  trades against their label;
* **money** of the decisions alone after fees, through ``ai_engine.money`` (the one money view),
  against buy-and-hold of the same symbols over the same block.

Features are computed once per symbol over its whole history, exactly as serving computes them
(so recursive indicators at a fold's first rows carry their real past), and labelled once; the
folds only choose rows. The models are the agents of ``ai_engine.agents``, built as
``training.train_model`` builds them and fitted with their own ``fit`` (early stopping and
probability correction on the calibration part). ``ensemble`` trains the four per fold and decides
with the engine's rule through ``analysis.revote`` (bit-exact with ``EnsembleManager``); its
probability scores are those of the voters' weighted linear pool.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ai_engine.analysis.revote import Rule, revote
from ai_engine.config import DEFAULT_WEIGHTS
from ai_engine.enums import CLASS_ORDER, MODEL_NAMES, Action
from ai_engine.evaluation.folds import FoldPlan, Window, fold_rows, plan_folds
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.money import (
    Execution,
    PriceGrid,
    StrategyStats,
    buy_and_hold,
    simulate,
)
from ai_engine.training import (
    DEFAULT_SEQ_LEN,
    UNLABELLED,
    LabelConfig,
    check_degeneracy,
    evaluate,
    make_labels,
    parse_date,
)
from ai_engine.training.trainer import torch_threads
from ai_engine.types import INTERVAL_MS

__all__ = [
    "ENSEMBLE",
    "EVALUABLE",
    "WalkForwardConfig",
    "Scores",
    "Decisions",
    "Outcome",
    "ModelFit",
    "FoldResult",
    "WalkForwardResult",
    "load_series",
    "run_walkforward",
    "score_probs",
]

ENSEMBLE = "ensemble"
EVALUABLE: tuple[str, ...] = (*MODEL_NAMES, ENSEMBLE)
_HOLD = CLASS_ORDER.index(Action.HOLD)
_BUY = CLASS_ORDER.index(Action.BUY)


@dataclass(frozen=True, slots=True)
class WalkForwardConfig:
    """What to evaluate and how.

    Attributes:
        model: one of ``EVALUABLE`` (a model name or ``ensemble``).
        folds, window, train_blocks, cal_frac: the fold layout (``evaluation.folds.plan_folds``).
        label_config: labels; its horizon is the purge gap and the money view's holding period.
        fee_bps, slippage_bps, long_only: costs and direction of the money view (``money.Execution``).
        seed, balance, epochs: as ``ai-engine train`` (epochs: torch epochs / tree rounds, None = default).
        threads: torch threads and tree jobs (None: torch's current setting, all cores for trees).
        agent_params: extra constructor params per model name (e.g. a shorter seq_len in tests).
    """

    model: str
    folds: int = 5
    window: Window = "rolling"
    train_blocks: int = 3
    cal_frac: float = 0.2
    label_config: LabelConfig = field(default_factory=LabelConfig)
    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    long_only: bool = False
    seed: int = 0
    balance: str = "weights"
    epochs: int | None = None
    threads: int | None = None
    agent_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        """The models trained per fold."""
        return MODEL_NAMES if self.model == ENSEMBLE else (self.model,)

    @property
    def execution(self) -> Execution:
        return Execution(fee_bps=self.fee_bps, slippage_bps=self.slippage_bps,
                         hold_bars=self.label_config.horizon, long_only=self.long_only)

    def validate(self) -> WalkForwardConfig:
        if self.model not in EVALUABLE:
            raise ConfigError(f"unknown model {self.model!r}; expected one of {', '.join(EVALUABLE)}")
        self.label_config.validate()
        try:
            self.execution  # noqa: B018 -- Execution checks the costs
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        unknown = sorted(set(self.agent_params) - set(MODEL_NAMES))
        if unknown:
            raise ConfigError(f"agent_params for unknown models {unknown}")
        return self

    def to_json(self) -> dict:
        return {"model": self.model, "folds": self.folds, "window": self.window, "train_blocks": self.train_blocks,
                "cal_frac": self.cal_frac, "label_config": self.label_config.to_dict(), "seed": self.seed,
                "balance": self.balance, "epochs": self.epochs, "execution": self.execution.to_json(),
                "agent_params": {k: dict(v) for k, v in self.agent_params.items()}}


@dataclass(frozen=True, slots=True)
class Scores:
    """How good the probabilities are on the scored rows (labelled rows the model decided)."""

    n: int
    balanced_accuracy: float
    log_loss: float
    log_loss_prior: float
    log_loss_skill: float
    brier: float
    brier_prior: float
    brier_skill: float
    ece: float
    label_share: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Decisions:
    """What was decided: action shares (CLASS_ORDER), the share that trades (a single model trades
    every BUY/SELL; the ensemble only actionable ones), confidence spread, and the share of trades
    whose label has their direction."""

    n: int
    action_share: tuple[float, float, float]
    trade_share: float
    confidence_mean: float
    confidence_std: float
    trade_hit_rate: float

    @property
    def max_action_share(self) -> float:
        return max(self.action_share)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One model's (or the ensemble's) figures over one test block, or pooled over all of them."""

    name: str
    scores: Scores
    decisions: Decisions
    money: StrategyStats

    def figures(self) -> dict[str, float]:
        """Every figure by one flat name (what the summary, the plots and the tables use)."""
        s, d, m = self.scores, self.decisions, self.money
        out: dict[str, float] = {k: float(getattr(s, k)) for k in
                                 ("balanced_accuracy", "log_loss", "log_loss_prior", "log_loss_skill", "brier",
                                  "brier_prior", "brier_skill", "ece")}
        out.update({f"{a.value.lower()}_share": v for a, v in zip(CLASS_ORDER, d.action_share, strict=True)})
        out.update(max_action_share=d.max_action_share, trade_share=d.trade_share,
                   confidence_std=d.confidence_std, trade_hit_rate=d.trade_hit_rate)
        out.update({f"money_{k}": float(getattr(m, k)) for k in
                    ("net_return", "sharpe", "max_drawdown", "trades", "avg_trade", "hit_rate", "exposure",
                     "turnover")})
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "scores": _jsonable(self.scores), "decisions": _jsonable(self.decisions),
                "money": self.money.to_json()}


@dataclass(frozen=True, slots=True)
class ModelFit:
    """One model trained in one fold: its rows, label shares, fit time and the degeneracy guard's
    objections on the calibration part (empty: it would pass ``ai-engine train``)."""

    name: str
    n_train: int
    n_cal: int
    train_label_share: tuple[float, float, float]
    seconds: float
    guard: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FoldResult:
    plan: FoldPlan
    fits: tuple[ModelFit, ...]
    outcomes: tuple[Outcome, ...]
    buy_and_hold: StrategyStats

    def outcome(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.name == name)


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Everything ``evaluate`` reports; ``to_json`` holds every figure."""

    config: WalkForwardConfig
    symbols: tuple[str, ...]
    interval: str
    synthetic: bool
    folds: tuple[FoldResult, ...]
    overall: tuple[Outcome, ...]
    overall_buy_and_hold: StrategyStats
    seconds: float

    @property
    def names(self) -> tuple[str, ...]:
        """Outcome names in display order: the ensemble first, then its members."""
        return tuple(o.name for o in self.overall)

    def per_fold(self, name: str) -> list[dict[str, float]]:
        rows = [f.outcome(name).figures() for f in self.folds]
        for row, f in zip(rows, self.folds, strict=True):
            row["buy_and_hold_return"] = f.buy_and_hold.net_return
        return rows

    def summary(self, name: str) -> dict[str, dict[str, float]]:
        """Mean, sample std ("spread"), min and max over folds of every figure of ``name``."""
        rows = self.per_fold(name)
        out = {}
        for key in rows[0]:
            v = np.array([r[key] for r in rows], dtype=np.float64)
            ok = v[np.isfinite(v)]
            out[key] = {"mean": float(ok.mean()) if ok.size else math.nan,
                        "std": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
                        "min": float(ok.min()) if ok.size else math.nan,
                        "max": float(ok.max()) if ok.size else math.nan}
        return out

    def to_json(self) -> dict:
        return _clean({
            "config": self.config.to_json(),
            "symbols": list(self.symbols),
            "interval": self.interval,
            "synthetic": self.synthetic,
            "seconds": round(self.seconds, 2),
            "prior": "the class frequencies of the rows scored (sample climatology)",
            "folds": [{**f.plan.to_json(), "fits": [_jsonable(x) for x in f.fits],
                       "outcomes": [o.to_json() for o in f.outcomes], "buy_and_hold": f.buy_and_hold.to_json()}
                      for f in self.folds],
            "overall": {"outcomes": [o.to_json() for o in self.overall],
                        "buy_and_hold": self.overall_buy_and_hold.to_json()},
            "summary": {name: self.summary(name) for name in self.names},
        })


# ---- data ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Symbol:
    """One symbol's candles with its features and labels over the whole history."""

    series: Any  # CandleSeries
    frame: Any  # FeatureFrame
    labels: np.ndarray


def load_series(data_dir, symbols: tuple[str, ...], interval: str, *, synthetic: bool = False,
                synthetic_bars: int = 4000, seed: int = 0, start: str | None = None,
                end: str | None = None) -> dict[str, Any]:
    """Candles per symbol from ``<data_dir>/<SYMBOL>-<interval>.csv`` or a seeded synthetic market,
    cut to ``[start, end)`` (dates as ``ai-engine train`` takes them)."""
    from ai_engine.data import load_dir, synthetic_market

    lo, hi = parse_date(start, "start"), parse_date(end, "end")
    if lo is not None and hi is not None and lo >= hi:
        raise ConfigError(f"start {start} must be before end {end}")
    if synthetic:
        market = synthetic_market(list(symbols), interval=interval, n_bars=synthetic_bars, seed=seed)
        return {s: v.time_slice(lo, hi) for s, v in market.items()}
    if data_dir is None:
        raise ConfigError("no data: pass --data DIR (or --synthetic for a generated market)")
    return load_dir(data_dir, list(symbols), interval, start_ms=lo, end_ms=hi)


def _prepare(series: Mapping[str, Any], cfg: LabelConfig) -> dict[str, _Symbol]:
    from ai_engine.features import compute_features

    out = {}
    for sym, s in series.items():
        y = make_labels(s.close, cfg, open_time=s.open_time, interval_ms=INTERVAL_MS[s.interval])
        out[sym] = _Symbol(s, compute_features(s), y)
    return out


def _usable(d: _Symbol, seq_len: int | None) -> np.ndarray:
    """Rows the model can be fed: valid features (and, for sequence models, a valid window)."""
    return d.frame.valid if seq_len is None else d.frame.valid_windows(seq_len)


def _inputs(d: _Symbol, rows: np.ndarray, seq_len: int | None) -> np.ndarray:
    from ai_engine.features import sequence_windows

    if seq_len is None:
        return np.asarray(d.frame.tabular[rows], dtype=np.float64)
    return sequence_windows(d.frame.sequence, rows, seq_len)


# ---- models ----------------------------------------------------------------------------------

def _agent(name: str, cfg: WalkForwardConfig):
    """The agent ``train_model`` would build for these options."""
    from ai_engine.agents import AGENT_CLASSES

    cls = AGENT_CLASSES[name]
    params: dict[str, Any] = {"seed": cfg.seed, "balance": cfg.balance, **cfg.agent_params.get(name, {})}
    if cls.input_kind == "sequence":
        params.setdefault("seq_len", DEFAULT_SEQ_LEN[name])
        params.setdefault("verbose", False)
        if cfg.epochs is not None:
            params["epochs"] = cfg.epochs
    else:
        params.setdefault("n_jobs", cfg.threads or os.cpu_count() or 1)
        if cfg.epochs is not None:
            params["n_estimators"] = cfg.epochs
    agent = cls(**params)
    agent.validate_params()
    return agent


@dataclass(frozen=True, slots=True)
class _Block:
    """Decisions over rows of the test blocks, all symbols concatenated (time order per symbol).

    ``votes[:, j]`` says model ``j`` predicted the row (it had a valid input); where it did not,
    its probabilities are NaN and its action HOLD."""

    sym: np.ndarray  # (N,) symbol index
    t: np.ndarray  # (N,) open time
    y: np.ndarray  # (N,) label, UNLABELLED where unknown
    probs: np.ndarray  # (N, M, 3)
    action: np.ndarray  # (N, M) CLASS_ORDER index
    conf: np.ndarray  # (N, M)
    votes: np.ndarray  # (N, M) bool

    @staticmethod
    def concat(blocks: list[_Block]) -> _Block:
        return _Block(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _Block.__slots__))


def _fit_fold(name: str, data: dict[str, _Symbol], plan: FoldPlan, cfg: WalkForwardConfig,
              decide: dict[str, np.ndarray]) -> tuple[ModelFit, list[tuple[np.ndarray, np.ndarray]]]:
    """Train ``name`` on the fold's train part, calibrate on its calibration part and predict the
    decision rows of each symbol: per symbol, the mask of the decision rows it could predict and
    one row (probabilities, action, confidence) per prediction, from ``agent.predict`` (the
    engine's own reading of the model's output)."""
    agent = _agent(name, cfg)
    seq_len = getattr(agent, "seq_len", None) if agent.input_kind == "sequence" else None
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "cal": []}
    for sym, d in data.items():
        rows = fold_rows(d.frame.open_time, plan, gap=cfg.label_config.horizon, what=sym)
        ok = _usable(d, seq_len) & (d.labels != UNLABELLED)
        for part in parts:
            r = getattr(rows, part)
            r = r[ok[r]]
            parts[part].append((_inputs(d, r, seq_len), d.labels[r]))
    (X, y), (Xc, yc) = ((np.concatenate([p[0] for p in parts[k]]), np.concatenate([p[1] for p in parts[k]]))
                        for k in ("train", "cal"))
    for what, n in (("training", len(y)), ("calibration", len(yc))):
        if n < 3:
            raise DataError(f"fold {plan.index + 1}: {n} usable {what} rows for {name} (after the "
                            f"{cfg.label_config.horizon}-bar labels and feature warm-up); give more history or fewer folds")
    t0 = time.perf_counter()
    agent.fit(X, y, X_val=Xc, y_val=yc)
    seconds = time.perf_counter() - t0
    guard = check_degeneracy(agent.predict_proba(Xc)).reasons
    share = np.bincount(y, minlength=3)[:3] / len(y)
    fit = ModelFit(name, int(len(y)), int(len(yc)), tuple(float(v) for v in share), round(seconds, 2), guard)  # type: ignore[arg-type]
    out_masks, out_preds = [], []
    for sym, d in data.items():
        rows = decide[sym]
        mask = _usable(d, seq_len)[rows]
        preds = agent.predict(_inputs(d, rows[mask], seq_len)) if mask.any() else []
        out_masks.append(mask)
        out_preds.append(np.array([(*p.probs, CLASS_ORDER.index(p.action), p.confidence) for p in preds],
                                  dtype=np.float64).reshape(-1, 5))
    return fit, list(zip(out_masks, out_preds, strict=True))


def _fold_block(data: dict[str, _Symbol], plan: FoldPlan, cfg: WalkForwardConfig,
                progress: Callable[[str], None]) -> tuple[list[ModelFit], _Block]:
    """Train every model of ``cfg`` for one fold and collect their decisions on its test block."""
    decide = {}
    for sym, d in data.items():
        test = fold_rows(d.frame.open_time, plan, gap=cfg.label_config.horizon, what=sym).test
        decide[sym] = test[d.frame.valid[test]]  # the rows the engine would decide (any model ready)
    n = sum(r.size for r in decide.values())
    m = len(cfg.models)
    probs = np.full((n, m, 3), np.nan)
    action = np.full((n, m), _HOLD, dtype=np.int64)
    conf = np.zeros((n, m))
    votes = np.zeros((n, m), dtype=bool)
    fits = []
    for j, name in enumerate(cfg.models):
        fit, per_symbol = _fit_fold(name, data, plan, cfg, decide)
        progress(f"fold {plan.index + 1}/{cfg.folds} {name}: {fit.n_train} train / {fit.n_cal} calibration rows, "
                 f"{fit.seconds:.1f} s" + (f"; guard: {'; '.join(fit.guard)}" if fit.guard else ""))
        fits.append(fit)
        off = 0
        for (mask, pred), rows in zip(per_symbol, decide.values(), strict=True):
            idx = off + np.flatnonzero(mask)
            probs[idx, j] = pred[:, :3]
            action[idx, j] = pred[:, 3].astype(np.int64)
            conf[idx, j] = pred[:, 4]
            votes[idx, j] = True
            off += rows.size
    syms = list(data)
    block = _Block(
        sym=np.concatenate([np.full(r.size, syms.index(s)) for s, r in decide.items()]).astype(np.int64),
        t=np.concatenate([np.asarray(data[s].frame.open_time)[r] for s, r in decide.items()]),
        y=np.concatenate([data[s].labels[r] for s, r in decide.items()]),
        probs=probs, action=action, conf=conf, votes=votes,
    )
    return fits, block


# ---- scoring ---------------------------------------------------------------------------------

def _share(v: np.ndarray) -> tuple[float, float, float]:
    c = np.bincount(v, minlength=3)[:3].astype(np.float64)
    return tuple(float(x) for x in (c / c.sum() if c.sum() else c))  # type: ignore[return-value]


def _skill(score: float, reference: float) -> float:
    return 1.0 - score / reference if reference > 0 else math.nan


def score_probs(probs: np.ndarray, y: np.ndarray) -> Scores:
    """Scores of probabilities (n, 3) against labels (n,); the prior is these labels' frequencies."""
    y = np.asarray(y, dtype=np.int64)
    prior = np.asarray(_share(y))
    if y.size == 0:
        nan = math.nan
        return Scores(0, nan, nan, nan, nan, nan, nan, nan, nan, (0.0, 0.0, 0.0))
    m = evaluate(probs, y, prior)  # the training report's scores, climatology = these labels' shares
    clim = m.baseline("climatology")
    return Scores(n=int(y.size), balanced_accuracy=m.balanced_accuracy, log_loss=m.log_loss,
                  log_loss_prior=clim.log_loss, log_loss_skill=_skill(m.log_loss, clim.log_loss), brier=m.brier,
                  brier_prior=clim.brier, brier_skill=_skill(m.brier, clim.brier), ece=m.ece,
                  label_share=m.label_share)


def _decisions(action: np.ndarray, conf: np.ndarray, trade: np.ndarray, y: np.ndarray) -> Decisions:
    labelled = trade & (y != UNLABELLED)
    hit = float(np.mean(action[labelled] == y[labelled])) if labelled.any() else math.nan
    n = int(action.size)
    return Decisions(n=n, action_share=_share(action), trade_share=float(trade.mean()) if n else 0.0,
                     confidence_mean=float(conf.mean()) if n else math.nan,
                     confidence_std=float(conf.std()) if n else math.nan, trade_hit_rate=hit)


def _grid(data: dict[str, _Symbol], start: int, end: int, interval_ms: int) -> PriceGrid:
    """Opens of every symbol on the bars ``[start, end)``."""
    times = np.arange(start, end, interval_ms, dtype=np.int64)
    opens = np.full((len(data), times.size), np.nan)
    for r, d in enumerate(data.values()):
        t = np.asarray(d.series.open_time)
        inside = (t >= start) & (t < end)
        opens[r, (t[inside] - start) // interval_ms] = np.asarray(d.series.open)[inside]
    return PriceGrid(tuple(data), times, opens, interval_ms)


def _outcome(name: str, block: _Block, j: int | None, grid: PriceGrid, execution: Execution) -> Outcome:
    """Figures of model ``j`` of the block (None: the ensemble over all of them) on ``grid``."""
    if j is None:
        w = np.array([DEFAULT_WEIGHTS[m] for m in MODEL_NAMES], dtype=np.float64)
        vote = revote(block.action, block.conf, block.votes, w, Rule())
        decided = block.votes.any(axis=1)
        wv = np.where(block.votes, w, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = (np.nan_to_num(block.probs) * wv[..., None]).sum(axis=1) / wv.sum(axis=1)[:, None]
        action, conf, trade = vote.action.astype(np.int64), vote.confidence, vote.actionable
    else:
        decided = block.votes[:, j]
        probs, action, conf = block.probs[:, j], block.action[:, j], block.conf[:, j]
        trade = action != _HOLD
    trade = trade & decided
    scored = decided & (block.y != UNLABELLED)
    signals = np.zeros(grid.opens.shape, dtype=np.int8)
    bar, on = grid.index_of(block.t)
    sel = trade & on
    signals[block.sym[sel], bar[sel]] = np.where(action[sel] == _BUY, 1, -1)
    return Outcome(
        name=name,
        scores=score_probs(probs[scored], block.y[scored]),
        decisions=_decisions(action[decided], conf[decided], trade[decided], block.y[decided]),
        money=simulate(name, grid, signals, execution).stats,
    )


def _outcomes(cfg: WalkForwardConfig, block: _Block, grid: PriceGrid) -> tuple[Outcome, ...]:
    ex = cfg.execution
    members = tuple(_outcome(m, block, j, grid, ex) for j, m in enumerate(cfg.models))
    return ((_outcome(ENSEMBLE, block, None, grid, ex),) if cfg.model == ENSEMBLE else ()) + members


# ---- the run ---------------------------------------------------------------------------------

def run_walkforward(series: Mapping[str, Any], cfg: WalkForwardConfig,
                    progress: Callable[[str], None] | None = None) -> WalkForwardResult:
    """Walk-forward evaluation of ``cfg.model`` on ``series`` (symbol → CandleSeries, one interval).

    Raises:
        ConfigError: bad options. DataError: too little history for the folds asked for.
    """
    cfg = cfg.validate()
    say = progress or (lambda _msg: None)
    if not series:
        raise DataError("no candle series to evaluate on")
    intervals = {s.interval for s in series.values()}
    if len(intervals) > 1:
        raise DataError(f"series mix intervals {sorted(intervals)}; evaluate one interval at a time")
    interval = intervals.pop()
    iv = INTERVAL_MS[interval]
    nonempty = [s for s in series.values() if len(s)]
    if not nonempty:
        raise DataError("the candle series are empty")
    first = min(int(s.open_time[0]) for s in nonempty)
    last = max(int(s.open_time[-1]) for s in nonempty)
    plans = plan_folds(first, last, iv, folds=cfg.folds, window=cfg.window, train_blocks=cfg.train_blocks,
                       cal_frac=cfg.cal_frac)
    t0 = time.perf_counter()
    data = _prepare(series, cfg.label_config)
    say(f"features and labels for {len(data)} symbol(s): {time.perf_counter() - t0:.1f} s")
    folds, blocks = [], []
    with torch_threads(cfg.threads):
        for plan in plans:
            fits, block = _fold_block(data, plan, cfg, say)
            grid = _grid(data, plan.test_start, plan.test_end, iv)
            folds.append(FoldResult(plan, tuple(fits), _outcomes(cfg, block, grid),
                                    buy_and_hold(grid, cfg.execution).stats))
            blocks.append(block)
            say(_fold_line(folds[-1]))
    whole = _grid(data, plans[0].test_start, plans[-1].test_end, iv)
    return WalkForwardResult(
        config=cfg,
        symbols=tuple(data),
        interval=interval,
        synthetic=any(bool(getattr(s, "synthetic", False)) for s in series.values()),
        folds=tuple(folds),
        overall=_outcomes(cfg, _Block.concat(blocks), whole),
        overall_buy_and_hold=buy_and_hold(whole, cfg.execution).stats,
        seconds=time.perf_counter() - t0,
    )


def _fold_line(f: FoldResult) -> str:
    """One progress line with the fold's headline figures, so a long run says what it found as it goes."""
    parts = [f"{o.name} bal.acc {o.scores.balanced_accuracy:.3f} LL skill {o.scores.log_loss_skill:+.2%} "
             f"Brier skill {o.scores.brier_skill:+.2%} ECE {o.scores.ece:.3f} max action "
             f"{o.decisions.max_action_share:.0%} conf std {o.decisions.confidence_std:.3f} "
             f"net {o.money.net_return:+.1%}" for o in f.outcomes]
    return (f"fold {f.plan.index + 1} test from {f.plan.to_json()['test_start'][:10]}: " + "; ".join(parts)
            + f"; buy-and-hold {f.buy_and_hold.net_return:+.1%}")


# ---- JSON ------------------------------------------------------------------------------------

def _jsonable(obj) -> dict:
    return {k: getattr(obj, k) for k in obj.__slots__}


def _clean(x):
    """NaN and inf become null; tuples lists; numpy scalars Python numbers."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.integer | int) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, np.floating | float):
        return float(x) if math.isfinite(x) else None
    return x
