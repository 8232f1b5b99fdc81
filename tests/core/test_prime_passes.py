"""Priming computes the symbols of a closing time in one pass: the same feature state as a candle
at a time, rejected and refused candles included."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

from ai_engine.data import CandleValidator, synthetic_market, time_batches
from ai_engine.exceptions import DataError
from ai_engine.features import StreamingFeatures
from ai_engine.live import CandleProcessor


class Store:
    def __init__(self) -> None:
        self.candles = []

    def record_candles(self, candles) -> None:
        self.candles.extend(candles)


def test_prime_in_passes_equals_a_candle_at_a_time(monkeypatch):
    market = synthetic_market([f"S{i}USDT" for i in range(5)], interval="1h", n_bars=120, seed=3)
    history = [c for step in time_batches(market) for c in step]
    bad = dataclasses.replace(history[42], high=history[42].low - 1.0)  # the validator rejects it
    history[42] = bad
    history.insert(300, history[299])  # a duplicate: the features refuse it
    monkeypatch.setattr("ai_engine.live.PRIME_CHUNK", 7)  # passes that split a closing time
    proc = CandleProcessor(SimpleNamespace(store=Store()), "1h")
    taken = proc.prime(iter(history))

    feats, validators, want = {}, {}, []
    for c in history:
        f = feats.setdefault(c.symbol, StreamingFeatures(c.symbol, "1h"))
        if validators.setdefault(c.symbol, CandleValidator("1h")).check(c).accept:
            try:
                f.update(c)
            except DataError:
                continue
            want.append(c)
    assert taken == len(want) == len(history) - 2 and proc.engine.store.candles == want
    bank = proc.features
    for s, f in feats.items():
        assert bank.bars_seen(s) == f.bars_seen
        np.testing.assert_array_equal(bank.history(s)[-f.seq_len_max:], f._bank.history(s))
    nxt = synthetic_market(list(feats), interval="1h", n_bars=121, seed=3)
    step = bank.update([nxt[s].candle(120) for s in feats])  # the same state: the same next rows
    for k, (s, f) in enumerate(feats.items()):
        np.testing.assert_array_equal(step.tabular[k], f.update(nxt[s].candle(120)).tabular)
