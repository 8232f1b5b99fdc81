"""What a market source yields: candles that closed together, and how to acknowledge them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ai_engine.types import Candle

__all__ = ["MarketBatch", "CloseGrouper"]


def _noop() -> None:
    return None


@dataclass(frozen=True, slots=True)
class MarketBatch:
    """Closed candles with one open time (one per symbol). Call ``ack()`` once the decisions on
    them are recorded; a source that redelivers unacknowledged input (Redis) relies on it."""

    candles: tuple[Candle, ...]
    ack: Callable[[], None] = field(default=_noop)

    @property
    def open_time(self) -> int:
        return self.candles[0].open_time


class CloseGrouper:
    """Groups candles by open time; a group is ready when every symbol has reported, when a later
    candle arrives (the stragglers are late), or after ``grace_s`` seconds."""

    def __init__(self, symbols: tuple[str, ...], grace_s: float = 2.0) -> None:
        self.symbols = frozenset(symbols)
        self.grace_s = grace_s
        self._groups: dict[int, dict[str, Candle]] = {}
        self._first_seen: dict[int, float] = {}

    def add(self, candle: Candle, now: float) -> list[tuple[Candle, ...]]:
        group = self._groups.setdefault(candle.open_time, {})
        self._first_seen.setdefault(candle.open_time, now)
        group[candle.symbol] = candle
        ready = [t for t in self._groups if t < candle.open_time]
        if set(group) >= self.symbols:
            ready.append(candle.open_time)
        return self._pop(ready)

    def due(self, now: float) -> list[tuple[Candle, ...]]:
        return self._pop([t for t, first in self._first_seen.items() if now - first >= self.grace_s])

    def flush(self) -> list[tuple[Candle, ...]]:
        return self._pop(list(self._groups))

    def _pop(self, times: list[int]) -> list[tuple[Candle, ...]]:
        out = []
        for t in sorted(set(times)):
            group = self._groups.pop(t)
            self._first_seen.pop(t, None)
            out.append(tuple(group[s] for s in sorted(group)))
        return out
