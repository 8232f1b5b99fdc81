"""Several symbols' candles as one time-ordered stream, as the engine sees them live."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping

from ai_engine.data.candles import CandleSeries
from ai_engine.types import Candle

__all__ = ["merge_stream", "time_batches"]


def _candles(series: CandleSeries) -> Iterator[Candle]:
    return (series.candle(i) for i in range(len(series)))


def merge_stream(series: Mapping[str, CandleSeries]) -> Iterator[Candle]:
    """Candles of every series in ``(open_time, symbol)`` order: a deterministic replay order."""
    return heapq.merge(
        *(_candles(s) for s in series.values()), key=lambda c: (c.open_time, c.symbol)
    )


def time_batches(series: Mapping[str, CandleSeries]) -> Iterator[list[Candle]]:
    """Lists of candles sharing one open_time (symbols in name order), oldest first.

    A symbol missing a bar (a gap) is simply absent from that batch.
    """
    for _, group in itertools.groupby(merge_stream(series), key=lambda c: c.open_time):
        yield list(group)
