"""Streaming side of the decision path: validated candles in, decisions out, one candle at a time.

Used by the live service and by the paced file replay. Features come from ``StreamingFeatures``,
whose values equal the batch features used in training and replay (tested on real candles).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ai_engine.data.validate import iso_utc
from ai_engine.engine import DecisionEngine, DecisionInputs
from ai_engine.exceptions import DataError, TransientError
from ai_engine.features.streaming import update_many
from ai_engine.types import Candle, DecisionRecord

__all__ = ["CandleProcessor"]

log = logging.getLogger("ai_engine.live")

PRIME_CHUNK = 8192  # history candles validated, then computed together (bounds the lists held at once)


def _window(history: np.ndarray, seq_len: int) -> np.ndarray:
    """The last ``seq_len`` rows, front-padded with NaN when less history is held (a warming-up
    shadow model then reports an error for the row; it never delays the voters)."""
    if len(history) >= seq_len:
        return history[-seq_len:]
    pad = np.full((seq_len - len(history), history.shape[1]), np.nan, dtype=history.dtype)
    return np.concatenate([pad, history])


def _features_of(states: list, candles: list[Candle]) -> list:
    """``update_many`` over the candles in order: the symbols closing together in one pass, a
    symbol that appears again (a backfilled run of bars) in the next pass."""
    out: list = []
    start = 0
    while start < len(candles):
        seen: set[int] = set()
        end = start
        while end < len(candles) and id(states[end]) not in seen:
            seen.add(id(states[end]))
            end += 1
        out.extend(update_many(states[start:end], candles[start:end]))
        start = end
    return out


class CandleProcessor:
    """Validates candles, keeps per-symbol streaming features and feeds decidable rows to the engine."""

    def __init__(self, engine: DecisionEngine, interval: str) -> None:
        self.engine = engine
        self.interval = interval
        self._features: dict[str, object] = {}
        self._validators: dict[str, object] = {}
        self.quarantined: Counter = Counter()
        self.warmup = 0

    def _feat(self, symbol: str):
        from ai_engine.data import CandleValidator
        from ai_engine.features import StreamingFeatures

        if symbol not in self._features:
            self._features[symbol] = StreamingFeatures(symbol, self.interval)
            self._validators[symbol] = CandleValidator(self.interval)
        return self._features[symbol], self._validators[symbol]

    def forget(self, symbol: str) -> None:
        """Drop a symbol's features (its lease went to another instance): taken again, it is primed
        afresh from the history its owners recorded, not from a state that missed their candles."""
        self._features.pop(symbol, None)
        self._validators.pop(symbol, None)

    def prime(self, candles: Iterable[Candle]) -> int:
        """Feed history (no decisions) so the first live candle is decided on real context. The
        history is recorded in the store too: the analysis scores outcomes against a volatility
        band of the candles before each decision (168 bars by default), which a store holding only
        the live candles would lack for the whole first week."""
        taken: list[Candle] = []
        accepted: list[Candle] = []
        states: list = []

        def compute() -> None:  # the symbols of a closing time in one pass
            for a, row in zip(accepted, _features_of(states, accepted), strict=True):
                if isinstance(row, DataError):
                    log.warning("history candle skipped: %s", row)
                else:
                    taken.append(a)
            accepted.clear()
            states.clear()

        for c in candles:
            feats, validator = self._feat(c.symbol)
            if validator.check(c).accept:
                accepted.append(c)
                states.append(feats)
            if len(accepted) >= PRIME_CHUNK:
                compute()
        compute()
        if taken:
            try:
                self.engine.store.record_candles(taken)
            except TransientError as exc:
                log.error("history candles not recorded (the analysis falls back to the fixed band "
                          "where it lacks them): %s", exc)
        return len(taken)

    def process(self, candles: Sequence[Candle], arrived_at: float | None = None) -> list[DecisionRecord]:
        """Decide on candles that closed together (one per symbol). Rejected candles are logged
        with symbol and time and never reach a model."""
        arrived_at = time.perf_counter() if arrived_at is None else arrived_at
        rows, accepted, states = [], [], []
        seq, need = self.engine.state.seq_len, self.engine.state.decide_len
        for c in candles:
            feats, validator = self._feat(c.symbol)
            verdict = validator.check(c)
            if not verdict.accept:
                self.quarantined[verdict.kind] += 1
                log.warning("rejected candle %s %s: %s", c.symbol, iso_utc(c.open_time), verdict.reason)
                continue
            if verdict.reason:
                log.warning("%s %s: %s", c.symbol, iso_utc(c.open_time), verdict.reason)
            accepted.append(c)
            states.append(feats)
        taken = []
        for c, row in zip(accepted, _features_of(states, accepted), strict=True):
            if isinstance(row, DataError):  # the validator should have caught it; never feed it to a model
                self.quarantined["invalid"] += 1
                log.warning("rejected candle: %s", row)
                continue
            taken.append(c)
            if row is None:
                self.warmup += 1
                continue
            if need and (len(row.history) < need or not np.isfinite(row.history[-need:]).all()):
                self.warmup += 1  # not enough real history yet for the voting sequence models
                continue
            rows.append((c, row.tabular, _window(row.history, seq) if seq else None))
        accepted = taken
        records: list[DecisionRecord] = []
        if rows:
            inputs = DecisionInputs(
                candles=[c for c, _, _ in rows],
                tabular=np.stack([t for _, t, _ in rows]),
                windows=np.stack([w for _, _, w in rows]) if seq else None,
                arrived_at=arrived_at,
            )
            records = self.engine.decide(inputs)  # records the decided candles with their decisions
        decided = {id(c) for c, _, _ in rows}  # by identity: a set, not a scan of rows per candle (400 symbols)
        undecided = [c for c in accepted if id(c) not in decided]
        if undecided:  # warm-up candles: recorded after the decision, off its critical path
            try:
                self.engine.store.record_candles(undecided)
            except TransientError as exc:
                log.error("candles not recorded yet: %s", exc)
        return records
