"""The money view: decisions → positions → equity after costs. One module for the analysis, the
backtest, the walk-forward evaluation and the dashboard, so every figure of money means the same.

Execution model (docs/analysis.md, "The money view"):

* a decision on the candle that opens at grid bar ``g`` is known at that candle's close, so it acts
  at the **next candle's open** (bar ``g + 1``);
* an actionable BUY goes long, an actionable SELL goes short (``long_only``: SELL only closes a
  long); the position is held for ``hold_bars`` bars (the label horizon) after the latest signal
  in its direction — a new signal in the same direction renews it, an opposite one reverses it at
  the next open — and is flat otherwise;
* every change of position pays ``fee_bps + slippage_bps`` per unit traded (one side: entering,
  exiting; a reversal trades two units). Default 10 bps per side, Binance spot taker, no slippage;
* capital is split equally across the symbols and each sleeve is fully invested while in a
  position; the portfolio's return over a bar is the mean of the sleeves' returns;
* prices between two opens move by ``open[b+1] / open[b] - 1``; a missing candle carries the last
  open forward, so a gap's move lands on the bar where trading resumes. Positions are closed at
  the last open of the grid.

No fills, partial fills, funding, borrow costs or market impact are modelled: a figure here is
what the decisions would have earned under these rules, not a promise of what an exchange pays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Execution",
    "PriceGrid",
    "StrategyStats",
    "StrategyResult",
    "simulate",
    "buy_and_hold",
    "flat",
    "positions",
    "strategy_stats",
    "probabilistic_sharpe",
    "MS_PER_YEAR",
]

MS_PER_YEAR = 365.25 * 24 * 3_600_000  # crypto trades every day of the year


@dataclass(frozen=True, slots=True)
class Execution:
    """How decisions become trades (module docstring). Costs in basis points of notional per side."""

    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    hold_bars: int = 4
    long_only: bool = False

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v < 10_000):
                raise ValueError(f"{name}={v!r} must be a number of basis points in [0, 10000)")
        if not (isinstance(self.hold_bars, int) and not isinstance(self.hold_bars, bool) and self.hold_bars >= 1):
            raise ValueError(f"hold_bars={self.hold_bars!r} must be an integer >= 1")

    @property
    def cost(self) -> float:
        """Cost of trading one unit of capital once (one side), as a fraction."""
        return (self.fee_bps + self.slippage_bps) / 10_000

    def to_json(self) -> dict:
        return {"fee_bps": self.fee_bps, "slippage_bps": self.slippage_bps, "hold_bars": self.hold_bars,
                "long_only": self.long_only, "entry": "next candle's open"}


@dataclass(frozen=True, slots=True)
class PriceGrid:
    """Opens of ``symbols`` on one regular time grid: ``opens[s, b]`` is the open of bar ``b``
    (``times[b]``, ms UTC) of symbol ``s``, NaN where no candle is known."""

    symbols: tuple[str, ...]
    times: np.ndarray  # (T,) int64
    opens: np.ndarray  # (S, T) float64
    interval_ms: int

    @property
    def periods_per_year(self) -> float:
        return MS_PER_YEAR / self.interval_ms

    def bar_returns(self) -> np.ndarray:
        """(S, T) return from each bar's open to the next one's; 0 for the last bar and before a
        symbol's first known open (last open carried forward over gaps)."""
        o = self.opens
        s, t = o.shape
        if t == 0:
            return np.zeros((s, 0))
        idx = np.where(np.isfinite(o) & (o > 0), np.arange(t), -1)
        np.maximum.accumulate(idx, axis=1, out=idx)
        filled = np.where(idx >= 0, np.take_along_axis(o, np.maximum(idx, 0), axis=1), np.nan)
        r = np.zeros((s, t))
        with np.errstate(invalid="ignore", divide="ignore"):
            r[:, :-1] = filled[:, 1:] / filled[:, :-1] - 1.0
        return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)

    def index_of(self, times_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid bar of each time and whether it lies on the grid."""
        t = np.asarray(times_ms, dtype=np.int64)
        if self.times.size == 0:
            return np.zeros(t.size, dtype=np.int64), np.zeros(t.size, dtype=bool)
        off = t - self.times[0]
        g = off // self.interval_ms
        ok = (off % self.interval_ms == 0) & (g >= 0) & (g < self.times.size)
        return np.where(ok, g, 0), ok


@dataclass(frozen=True, slots=True)
class StrategyStats:
    """Figures of one strategy over the grid; rates are fractions (0.01 = 1%), NaN when undefined.

    Attributes:
        net_return: compounded return after costs over the whole grid.
        sharpe: annualised Sharpe ratio of the bar returns (risk-free rate 0).
        psr: probabilistic Sharpe ratio, P(true Sharpe > 0) given skew and kurtosis
            (Bailey & López de Prado 2012).
        max_drawdown: largest fall of equity from a previous peak.
        turnover: capital traded over the grid, in multiples of the capital (a round trip of all
            of it is 2).
        trades: positions opened (per symbol, a run of one direction counts once).
        hit_rate: share of trades whose return after costs is above 0.
        avg_trade: mean return per trade after costs (on the sleeve's capital).
        exposure: share of symbol-bars spent in a position.
    """

    periods: int
    net_return: float
    sharpe: float
    psr: float
    max_drawdown: float
    turnover: float
    trades: int
    hit_rate: float
    avg_trade: float
    exposure: float

    def to_json(self) -> dict:
        return {k: _num(getattr(self, k)) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class StrategyResult:
    """One strategy: its per-bar portfolio returns after costs, equity (starting at 1) and figures."""

    name: str
    returns: np.ndarray  # (T,)
    equity: np.ndarray  # (T,) after each bar
    stats: StrategyStats
    trade_returns: np.ndarray  # (n_trades,) after costs


def _num(x):
    if isinstance(x, int | np.integer):
        return int(x)
    return None if x is None or not math.isfinite(x) else round(float(x), 8)


def positions(signals: np.ndarray, hold_bars: int, long_only: bool = False) -> np.ndarray:
    """(S, T) int8 position held over each bar from (S, T) signals in {-1, 0, 1} (module docstring):
    the latest signal before the bar, if it is at most ``hold_bars`` bars old. The last bar is flat."""
    sig = np.asarray(signals, dtype=np.int8)
    s, t = sig.shape
    pos = np.zeros((s, t), dtype=np.int8)
    if t < 2:
        return pos
    idx = np.where(sig != 0, np.arange(t), -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    last = idx[:, :-1]  # latest signal at or before b-1, for bars b = 1..T-1
    age = np.arange(1, t)[None, :] - last
    held = (last >= 0) & (age <= hold_bars)
    pos[:, 1:] = np.where(held, np.take_along_axis(sig, np.maximum(last, 0), axis=1), 0)
    pos[:, -1] = 0
    if long_only:
        np.maximum(pos, 0, out=pos)
    return pos


def _trades(pos: np.ndarray, r: np.ndarray, cost: float) -> np.ndarray:
    """Return after costs of every run of one nonzero position (entry and exit cost one side each)."""
    s, t = pos.shape
    flat_pos = np.concatenate([pos, np.zeros((s, 1), dtype=pos.dtype)], axis=1).ravel()
    flat_r = np.concatenate([r, np.zeros((s, 1))], axis=1).ravel()
    change = np.flatnonzero(np.diff(flat_pos, prepend=0) != 0)
    starts = change[flat_pos[change] != 0]
    if starts.size == 0:
        return np.zeros(0)
    # a run ends where the position next changes (the separators keep symbols apart)
    ends = change[np.searchsorted(change, starts, side="right")] if change.size else starts
    with np.errstate(invalid="ignore", divide="ignore"):
        lg = np.log1p(np.maximum(flat_pos * flat_r, -1 + 1e-12))
    csum = np.concatenate([[0.0], np.cumsum(lg)])
    gross = np.expm1(csum[ends] - csum[starts])
    return gross - 2 * cost


def probabilistic_sharpe(returns: np.ndarray, benchmark: float = 0.0) -> float:
    """P(true per-period Sharpe > ``benchmark``): Bailey & López de Prado's PSR, which widens the
    Sharpe ratio's standard error for skew and fat tails."""
    from scipy.stats import kurtosis, norm, skew

    x = np.asarray(returns, dtype=np.float64)
    n = x.size
    if n < 3:
        return math.nan
    sd = float(x.std(ddof=1))
    if not sd > 0:
        return math.nan
    sr = float(x.mean()) / sd
    g3 = float(skew(x))
    g4 = float(kurtosis(x, fisher=False))
    var = 1 - g3 * sr + (g4 - 1) / 4 * sr * sr
    if not var > 0:
        return math.nan
    return float(norm.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(var)))


def strategy_stats(returns: np.ndarray, pos: np.ndarray, trade_returns: np.ndarray,
                   periods_per_year: float) -> StrategyStats:
    p = np.asarray(returns, dtype=np.float64)
    n = p.size
    equity = np.cumprod(1 + p)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    sd = float(p.std(ddof=1)) if n > 1 else math.nan
    sharpe = float(p.mean()) / sd * math.sqrt(periods_per_year) if n > 1 and sd > 0 else math.nan
    dpos = np.abs(np.diff(pos.astype(np.int16), axis=1, prepend=0)).sum(axis=1)
    tr = trade_returns
    return StrategyStats(
        periods=n,
        net_return=float(equity[-1] - 1) if n else 0.0,
        sharpe=sharpe,
        psr=probabilistic_sharpe(p),
        max_drawdown=float((1 - equity / peak).max()) if n else 0.0,
        turnover=float(dpos.mean()) if pos.size else 0.0,
        trades=int(tr.size),
        hit_rate=float((tr > 0).mean()) if tr.size else math.nan,
        avg_trade=float(tr.mean()) if tr.size else math.nan,
        exposure=float((pos != 0).mean()) if pos.size else 0.0,
    )


def simulate(name: str, grid: PriceGrid, signals: np.ndarray, execution: Execution,
             *, pos: np.ndarray | None = None) -> StrategyResult:
    """Trade ``signals`` (S, T) on ``grid`` under ``execution``; ``pos`` gives positions directly."""
    if pos is None:
        pos = positions(signals, execution.hold_bars, execution.long_only)
    r = grid.bar_returns()
    c = execution.cost
    dpos = np.abs(np.diff(pos.astype(np.int16), axis=1, prepend=0))
    net = pos * r - c * dpos
    p = net.mean(axis=0) if net.shape[0] else np.zeros(grid.times.size)
    tr = _trades(pos, r, c)
    stats = strategy_stats(p, pos, tr, grid.periods_per_year)
    return StrategyResult(name, p, np.cumprod(1 + p), stats, tr)


def buy_and_hold(grid: PriceGrid, execution: Execution, start_bar: int = 0) -> StrategyResult:
    """Long every symbol from its first known open at or after ``start_bar`` to the end."""
    s, t = grid.opens.shape
    pos = np.zeros((s, t), dtype=np.int8)
    known = np.isfinite(grid.opens) & (grid.opens > 0)
    known[:, :start_bar] = False
    first = np.where(known.any(axis=1), known.argmax(axis=1), t) if t else np.zeros(s, dtype=np.int64)
    pos[np.arange(t)[None, :] >= first[:, None]] = 1
    if t:
        pos[:, -1] = 0
    return simulate("buy-and-hold", grid, np.zeros((s, t), dtype=np.int8), execution, pos=pos)


def flat(grid: PriceGrid, execution: Execution) -> StrategyResult:
    s, t = grid.opens.shape
    return simulate("flat", grid, np.zeros((s, t), dtype=np.int8), execution)
