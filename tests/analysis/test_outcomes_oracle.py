"""Exact oracle for outcome scoring: a few candles whose realised classes are worked out by hand.

A prediction made at candle t is scored against log(close(t+h) / close(t)) and the band known at
t. The closes are 100·exp(x) with the log-prices x chosen in round units, so every log return is a
difference of two listed numbers, far from the band's edge. The expected states and classes are
literals; the code under test only produces the values compared with them. An off-by-one horizon
or a band read at t+h changes several of them.
"""

from __future__ import annotations

import math

from ai_engine.analysis.outcomes import OUTCOME_STATES, score_outcomes
from ai_engine.analysis.reader import read_snapshot
from ai_engine.enums import CLASS_ORDER, Action, ModelRole, ModelStatus
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import (
    INTERVAL_MS,
    Candle,
    DecisionRecord,
    EnsembleDecision,
    ModelResult,
    Prediction,
    event_id_for,
)

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
H1, M15 = INTERVAL_MS["1h"], INTERVAL_MS["15m"]
SCORED, PENDING, NO_CANDLES, NO_CANDLE_AT_T, GAP = range(5)
SELL, HOLD, BUY = (CLASS_ORDER.index(a) for a in (Action.SELL, Action.HOLD, Action.BUY))
NA = -1  # realised class of a row that is not scored


def _candles(symbol: str, interval: str, t0: int, x: list[float | None], unit: float) -> list[Candle]:
    """Close 100·exp(unit·x) per slot; ``None`` is a slot with no candle recorded (a gap)."""
    iv = INTERVAL_MS[interval]
    out = []
    for i, xi in enumerate(x):
        if xi is not None:
            c = 100.0 * math.exp(unit * xi)
            out.append(Candle(symbol, interval, t0 + i * iv, c, c, c, c, 1.0))
    return out


def _record(symbol: str, interval: str, t: int) -> DecisionRecord:
    """A HOLD decision with one voter and the shadow ``patchtst`` (always BUY: only outcomes matter)."""
    p = Prediction.from_probs((0.2, 0.2, 0.6))
    voter = ModelResult("lgbm", ModelRole.VOTER, ModelStatus.OK, 100.0, "v1", "ab" * 32, p)
    shadow = ModelResult("patchtst", ModelRole.SHADOW, ModelStatus.OK, 0.0, "v2", "cd" * 32, p)
    d = EnsembleDecision(Action.HOLD, 0.6, 1, 1, False, False, (0.2, 0.2, 0.6), (voter, shadow))
    return DecisionRecord(event_id_for("decision", symbol, interval, t), symbol, interval, t, t + 5, 100.0, d,
                          False, None, "cfg-oracle", 1.0)


def _score(path, label_config: dict, decisions: list[tuple[str, str, int]], candles: list[Candle]) -> dict:
    """Record, read back through the analysis reader, score; {(symbol, t): (state, realised, fallback)}."""
    store = TelemetryStore(path)
    store.record_config("cfg-oracle", "start", {"models": {
        "patchtst": {"role": "shadow", "weight": 0, "version": "v2", "sha256": "cd" * 32, "label_config": label_config},
        "lgbm": {"role": "voter", "weight": 100, "version": "v1"}}})
    store.record_decisions([_record(*d) for d in decisions], candles)
    store.close()
    snap = read_snapshot(path, 48.0, ("patchtst",))
    rows = snap.models[0]
    assert rows.t.size == len(decisions)
    out = score_outcomes(rows, snap.series, rows.status == 0)
    by_time = {t: s for s, _, t in decisions}
    got = {}
    for i in range(rows.t.size):
        s = int(rows.series[i])
        symbol = snap.series[s].symbol if s >= 0 else by_time[int(rows.t[i])]
        got[(symbol, int(rows.t[i]))] = (OUTCOME_STATES[out.state[i]], int(out.realised[i]), bool(out.band_fallback[i]))
    return got


def test_fixed_band_horizon_3_on_two_grids_with_a_gap_and_pending_rows(tmp_path):
    """h = 3, fixed band 0.01, log-prices in units of 0.02: a return of 0 is HOLD, ±1 unit BUY/SELL.
    BTC on 1 h (slot 7 missing), ETH on 15 m starting half an hour later, SOL with no candles."""
    btc_x = [0, 1, -1, 1, 0, 2, 0, None, 1, 1]  # slots 0..9; the newest candle is slot 9
    eth_t0 = T0 + 2 * M15
    eth_x = [0, 0, -2, -1, 1, 0, 0]  # slots 0..6
    candles = _candles("BTCUSDT", "1h", T0, btc_x, 0.02) + _candles("ETHUSDT", "15m", eth_t0, eth_x, 0.02)
    decisions = ([("BTCUSDT", "1h", T0 + i * H1) for i in range(10)]
                 + [("ETHUSDT", "15m", eth_t0 + i * M15) for i in range(5)]
                 + [("SOLUSDT", "1h", T0 + 7 * M15)])
    lc = {"horizon": 3, "mode": "fixed", "fee_band": 0.01, "band": 0.01, "k": 0.5, "vol_window": 168}
    got = _score(tmp_path / "fixed.sqlite", lc, decisions, candles)

    btc = lambda i: ("BTCUSDT", T0 + i * H1)  # noqa: E731
    eth = lambda i: ("ETHUSDT", eth_t0 + i * M15)  # noqa: E731
    s, p, g = OUTCOME_STATES[SCORED], OUTCOME_STATES[PENDING], OUTCOME_STATES[GAP]
    expected = {
        # BTC: realised = x[t+3] - x[t] (units); h-1 / h+1 would give the values in brackets
        btc(0): (s, BUY, False),   # x3-x0 = 1-0 = +1          [x2-x0 = -1 SELL, x4-x0 = 0 HOLD]
        btc(1): (s, SELL, False),  # x4-x1 = 0-1 = -1          [x3-x1 = 0 HOLD, x5-x1 = +1 BUY]
        btc(2): (s, BUY, False),   # x5-x2 = 2+1 = +3
        btc(3): (s, SELL, False),  # x6-x3 = 0-1 = -1          [x5-x3 = +1 BUY, x7 gap]
        btc(4): (g, NA, False),    # slot 7 has no candle      [x6-x4 = 0 HOLD, x8-x4 = +1 BUY]
        btc(5): (s, SELL, False),  # x8-x5 = 1-2 = -1          [x7 gap]
        btc(6): (s, BUY, False),   # x9-x6 = 1-0 = +1          [slot 10 not recorded]
        btc(7): (OUTCOME_STATES[NO_CANDLE_AT_T], NA, False),  # no candle at slot 7 itself
        btc(8): (p, NA, False),    # slot 11 is after the newest candle (slot 9)
        btc(9): (p, NA, False),    # slot 12 likewise
        # ETH on its own 15 m grid
        eth(0): (s, SELL, False),  # x3-x0 = -1-0 = -1         [x2-x0 = -2 SELL, x4-x0 = +1 BUY]
        eth(1): (s, BUY, False),   # x4-x1 = 1-0 = +1          [x3-x1 = -1 SELL, x5-x1 = 0 HOLD]
        eth(2): (s, BUY, False),   # x5-x2 = 0+2 = +2
        eth(3): (s, BUY, False),   # x6-x3 = 0+1 = +1          [slot 7 not recorded]
        eth(4): (p, NA, False),    # slot 7 is after the newest candle (slot 6)
        ("SOLUSDT", T0 + 7 * M15): (OUTCOME_STATES[NO_CANDLES], NA, False),
    }
    assert got == expected


def test_vol_band_is_the_band_known_at_decision_time(tmp_path):
    """h = 2, vol band over the last 2 one-bar returns, k = 0.5, fee band 0.001, fixed band 0.005.

    With two returns a and b the sample std is |a-b|/√2; times √h = √2 that is |a-b|, times k:
    band_t = max(0.001, |r_t - r_(t-1)| / 2). Log-prices in units of 0.01; r_t = x_t - x_(t-1).
    Slots 0 and 1 have fewer than 2 returns behind them: the fixed band (0.5 units) is used."""
    x = [0, 0, 4, 4, 5, 5, 5, 8, 8, 6]  # slots 0..9, one candle per hour
    # r_t:      -  0  4  0  1  0  0  3  0 -2
    # band_t:   -  -  2  2  .5 .5 .1 1.5 1.5 1   (units; slots 0-1 fall back to 0.5)
    decisions = [("BTCUSDT", "1h", T0 + i * H1) for i in range(10)]
    lc = {"horizon": 2, "mode": "vol", "fee_band": 0.001, "band": 0.005, "k": 0.5, "vol_window": 2}
    got = _score(tmp_path / "vol.sqlite", lc, decisions, _candles("BTCUSDT", "1h", T0, x, 0.01))

    s, p = OUTCOME_STATES[SCORED], OUTCOME_STATES[PENDING]
    realised = {  # R = x[t+2] - x[t] against band_t; [the band at t+2 would give]
        0: (s, BUY, True),    # R = 4-0 = 4 > 0.5 (fixed band, fallback)
        1: (s, BUY, True),    # R = 4-0 = 4 > 0.5 (fixed band, fallback)
        2: (s, HOLD, False),  # R = 5-4 = 1 within ±2          [band_4 = 0.5: BUY]
        3: (s, HOLD, False),  # R = 5-4 = 1 within ±2          [band_5 = 0.5: BUY]
        4: (s, HOLD, False),  # R = 5-5 = 0
        5: (s, BUY, False),   # R = 8-5 = 3 > 0.5
        6: (s, BUY, False),   # R = 8-5 = 3 > 0.1
        7: (s, SELL, False),  # R = 6-8 = -2 < -1.5
        8: (p, NA, False),    # slot 10 is after the newest candle
        9: (p, NA, False),
    }
    assert got == {("BTCUSDT", T0 + i * H1): v for i, v in realised.items()}

