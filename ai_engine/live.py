"""Streaming side of the decision path: validated candles in, decisions out, one candle at a time.

Used by the live service and by the paced file replay. Features come from one ``FeatureBank`` for
all symbols, whose values equal the batch features used in training and replay (tested on real
candles); the symbols of a closing time are validated and computed together.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ai_engine.data.validate import OK_VERDICT, CandleValidator, candle_arrays, iso_utc
from ai_engine.engine import DecisionEngine, DecisionInputs
from ai_engine.exceptions import TransientError
from ai_engine.features.streaming import DeferredArray, FeatureBank
from ai_engine.types import Candle, DecisionRecord

__all__ = ["CandleProcessor"]

log = logging.getLogger("ai_engine.live")

SCREEN_CANDLES = 16  # candles from which a closing time is validated in one numpy pass
PRIME_CHUNK = 8192  # history candles validated, then computed together (bounds the lists held at once)


class CandleProcessor:
    """Validates candles, keeps every symbol's streaming features in one :class:`FeatureBank` and
    feeds decidable rows to the engine."""

    def __init__(self, engine: DecisionEngine, interval: str) -> None:
        self.engine = engine
        self.interval = interval
        self.features = FeatureBank(interval)
        self.validator = CandleValidator(interval)
        self.quarantined: Counter = Counter()
        self.warmup = 0

    def forget(self, symbol: str) -> None:
        """Drop a symbol's features (its lease went to another instance): taken again, it is primed
        afresh from the history its owners recorded, not from a state that missed their candles."""
        self.features.forget(symbol)
        self.validator.forget(symbol)

    def prime(self, candles: Iterable[Candle]) -> int:
        """Feed history (no decisions) so the first live candle is decided on real context. The
        history is recorded in the store too: the analysis scores outcomes against a volatility
        band of the candles before each decision (168 bars by default), which a store holding only
        the live candles would lack for the whole first week."""
        taken: list[Candle] = []
        accepted: list[Candle] = []

        def compute() -> None:  # each symbol's run of bars in one pass
            got, refused = self.features.extend(accepted)
            for err in refused:
                log.warning("history candle skipped: %s", err)
            taken.extend(got)
            accepted.clear()

        for c in candles:
            if self.validator.check(c).accept:
                accepted.append(c)
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
        arrays = None
        if len(candles) >= SCREEN_CANDLES:  # check_many itself checks a backfilled run one candle at a time
            with contextlib.suppress(TypeError, ValueError, OverflowError):  # check() names the bad field
                arrays = candle_arrays(candles)
            verdicts = self.validator.check_many(candles, arrays)
        else:  # a few candles (numpy's per-call cost would dominate) or a backfilled run
            verdicts = [self.validator.check(c) for c in candles]
        if all(v is OK_VERDICT for v in verdicts):  # the usual closing time: every candle passed as it is
            accepted = list(candles)
        else:
            arrays = None
            accepted = []
            for c, verdict in zip(candles, verdicts, strict=True):
                if not verdict.accept:
                    self.quarantined[verdict.kind] += 1
                    log.warning("rejected candle %s %s: %s", c.symbol, iso_utc(c.open_time), verdict.reason)
                    continue
                if verdict.reason:
                    log.warning("%s %s: %s", c.symbol, iso_utc(c.open_time), verdict.reason)
                accepted.append(c)
        taken, tabular, windows, decide = self._features_of(accepted, arrays)
        self.warmup += int(len(decide) - decide.sum())
        rows = np.flatnonzero(decide)
        records: list[DecisionRecord] = []
        if len(rows) == len(taken):  # every candle past warm-up (the usual case): the arrays as they are
            inputs = DecisionInputs(taken, tabular, windows, arrived_at)
        else:
            inputs = DecisionInputs(
                candles=[taken[i] for i in rows.tolist()],
                tabular=tabular.take(rows) if isinstance(tabular, DeferredArray) else tabular[rows],
                windows=windows[rows] if windows is not None else None,
                arrived_at=arrived_at,
            )
        if len(rows):
            records = self.engine.decide(inputs)  # records the decided candles with their decisions
        undecided = [taken[i] for i in np.flatnonzero(~decide).tolist()]
        if undecided:  # warm-up candles: recorded after the decision, off its critical path
            try:
                self.engine.store.record_candles(undecided)
            except TransientError as exc:
                log.error("candles not recorded yet: %s", exc)
        return records

    def _features_of(self, candles: list[Candle], arrays: tuple[np.ndarray, np.ndarray] | None = None,
                     ) -> tuple[list[Candle], np.ndarray, np.ndarray | None, np.ndarray]:
        """The bank's rows for the accepted candles (``arrays``: theirs, when built for a closing
        time): (candles taken, tabular, windows or None, which rows can be decided). A backfilled
        run (a symbol more than once) is fed in passes, each symbol once per pass, each pass's
        windows cut before the next."""
        seq, need = self.engine.state.seq_len, self.engine.state.decide_len
        passes: list[list[Candle]] = []
        seen: dict[str, int] = {}
        for c in candles:
            k = seen[c.symbol] = seen.get(c.symbol, -1) + 1
            if k == len(passes):
                passes.append([])
            passes[k].append(c)
        parts = []
        for p in passes or [[]]:
            one = len(passes) == 1  # a closing time: its tabular rows computed in the tabular voters' lane
            step = self.features.update(p, arrays if one else None, defer_tabular=one)
            for _, err in step.refused:  # the validator should have caught it; never feed it to a model
                self.quarantined["invalid"] += 1
                log.warning("rejected candle: %s", err)
            windows = self.features.windows(step.slots, seq) if seq else None
            decide = step.ready
            if need and windows is not None:  # enough real history for the voting sequence models
                decide = decide & np.isfinite(windows[:, seq - need :]).all(axis=(1, 2))
            parts.append((step.candles, step.tabular, windows, decide))
        if len(parts) == 1:
            return parts[0]
        return ([c for p in parts for c in p[0]], np.concatenate([p[1] for p in parts]),
                None if seq == 0 else np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]))
