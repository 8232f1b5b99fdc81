"""The money view against an equity curve computed by hand, fees and slippage included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ai_engine.money import (
    Execution,
    PriceGrid,
    buy_and_hold,
    flat,
    positions,
    probabilistic_sharpe,
    simulate,
)

H = 3_600_000
OPENS = [100.0, 102.0, 101.0, 103.0, 104.0, 100.0, 99.0, 101.0]
# BUY on bar 0, BUY again on bar 2 (renews the hold), SELL on bar 4
SIGNALS = [1, 0, 1, 0, -1, 0, 0, 0]
C = 0.0015  # 10 bps fee + 5 bps slippage per side


def _grid(opens=OPENS) -> PriceGrid:
    return PriceGrid(("BTCUSDT",), np.arange(len(opens), dtype=np.int64) * H, np.array([opens]), H)


def test_positions_enter_at_the_next_open_hold_renew_and_reverse():
    # bar b holds the latest signal at or before b-1 if it is at most 2 bars old; the last bar is flat
    assert positions(np.array([SIGNALS]), 2).tolist() == [[0, 1, 1, 1, 1, -1, -1, 0]]
    assert positions(np.array([SIGNALS]), 2, long_only=True).tolist() == [[0, 1, 1, 1, 1, 0, 0, 0]]
    assert positions(np.array([[1, 0, 0, 0, 0, 0]]), 2).tolist() == [[0, 1, 1, 0, 0, 0]]


def test_equity_after_costs_matches_the_hand_computation():
    res = simulate("s", _grid(), np.array([SIGNALS]), Execution(fee_bps=10, slippage_bps=5, hold_bars=2))
    # bar returns open->next open: 102/100-1, 101/102-1, 103/101-1, 104/103-1, 100/104-1, 99/100-1, 101/99-1, 0
    # positions 0, 1, 1, 1, 1, -1, -1, 0; traded units 0, 1, 0, 0, 0, 2 (reversal), 0, 1 (exit)
    want = [
        0.0,
        (101 / 102 - 1) - C,
        103 / 101 - 1,
        104 / 103 - 1,
        100 / 104 - 1,
        -(99 / 100 - 1) - 2 * C,
        -(101 / 99 - 1),
        -C,
    ]
    np.testing.assert_allclose(res.returns, want, rtol=0, atol=1e-15)
    assert res.equity[-1] == pytest.approx(math.prod(1 + x for x in want), abs=1e-15)
    assert res.stats.net_return == pytest.approx(math.prod(1 + x for x in want) - 1, abs=1e-15)
    # long 102->100 over four bars; short 100->99->101 over two (+1%, then -2/99); each pays one side in and one out
    np.testing.assert_allclose(res.trade_returns, [100 / 102 - 1 - 2 * C, (1 + 0.01) * (1 - 2 / 99) - 1 - 2 * C],
                               atol=1e-12)
    assert res.stats.trades == 2
    assert res.stats.hit_rate == 0.0
    assert res.stats.turnover == 4.0  # 1 in, 2 to reverse, 1 out
    assert res.stats.exposure == 6 / 8
    eq = np.cumprod(1 + np.array(want))
    assert res.stats.max_drawdown == pytest.approx(float((1 - eq / np.maximum.accumulate(np.r_[1.0, eq])[1:]).max()))


def test_long_only_sell_only_exits():
    res = simulate("s", _grid(), np.array([SIGNALS]), Execution(fee_bps=10, slippage_bps=5, hold_bars=2,
                                                                   long_only=True))
    want = [0.0, (101 / 102 - 1) - C, 103 / 101 - 1, 104 / 103 - 1, 100 / 104 - 1, -C, 0.0, 0.0]
    np.testing.assert_allclose(res.returns, want, atol=1e-15)


def test_buy_and_hold_and_flat():
    x = Execution(fee_bps=10, slippage_bps=5)
    bh = buy_and_hold(_grid(), x, start_bar=1)
    # long from bar 1's open (102) to the last open (101): the entry's cost on bar 1, the exit's on bar 7
    want = (101 / 102 - C) * (103 / 101) * (104 / 103) * (100 / 104) * (99 / 100) * (101 / 99) * (1 - C)
    assert bh.equity[-1] == pytest.approx(want, abs=1e-14)
    assert bh.stats.trades == 1
    f = flat(_grid(), x)
    assert f.stats.net_return == 0.0 and f.stats.trades == 0 and f.stats.turnover == 0.0


def test_two_symbols_split_the_capital_equally():
    grid = PriceGrid(("A", "B"), np.arange(4, dtype=np.int64) * H, np.array([[100.0, 110, 121, 121],
                                                                             [100.0, 90, 81, 81]]), H)
    res = simulate("s", grid, np.array([[1, 0, 0, 0], [1, 0, 0, 0]]), Execution(fee_bps=0, hold_bars=2))
    # A +10% then +10%, B -10% then -10%: the portfolio's bar returns are their means
    np.testing.assert_allclose(res.returns, [0.0, 0.0, 0.0, 0.0], atol=1e-15)


def test_a_gap_carries_the_last_open():
    res = simulate("s", _grid([100.0, 100.0, math.nan, 110.0, 110.0]), np.array([[1, 0, 0, 0, 0]]),
                   Execution(fee_bps=0, hold_bars=3))
    np.testing.assert_allclose(res.returns, [0.0, 0.0, 0.1, 0.0, 0.0], atol=1e-15)


def test_execution_refuses_nonsense():
    with pytest.raises(ValueError, match="fee_bps"):
        Execution(fee_bps=-1)
    with pytest.raises(ValueError, match="hold_bars"):
        Execution(hold_bars=0)


def test_probabilistic_sharpe_for_normal_returns():
    # for normal returns skew is 0 and kurtosis 3, so PSR = Phi(SR sqrt(n-1) / sqrt(1 + SR^2 / 2))
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    x = rng.normal(0.001, 0.01, 20_000)
    sr = x.mean() / x.std(ddof=1)
    want = norm.cdf(sr * math.sqrt(x.size - 1) / math.sqrt(1 + sr * sr / 2))
    assert probabilistic_sharpe(x) == pytest.approx(want, abs=0.01)
    assert probabilistic_sharpe(-x) == pytest.approx(1 - want, abs=0.01)
    # fat left tail lowers the PSR of the same Sharpe ratio
    skewed = np.where(rng.random(20_000) < 0.02, -0.08, 0.0025)
    normal = rng.normal(skewed.mean(), skewed.std(), 20_000)
    assert probabilistic_sharpe(skewed) < probabilistic_sharpe(normal)


def test_an_empty_grid_trades_nothing():
    grid = PriceGrid(("A",), np.zeros(0, dtype=np.int64), np.zeros((1, 0)), H)
    for res in (buy_and_hold(grid, Execution()), flat(grid, Execution()),
                simulate("s", grid, np.zeros((1, 0), dtype=np.int8), Execution())):
        assert res.stats.trades == 0 and res.stats.net_return == 0.0 and res.returns.size == 0
