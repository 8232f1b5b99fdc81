"""Candle validation shared by the CSV loader and the live stream.

A bad candle is never repaired: it is quarantined (dropped) and the reason is logged with the
symbol and the candle's UTC time, so a human can find the row. Gaps are legal but recorded,
because features computed across a gap span more wall time than their names suggest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat

import numpy as np

from ai_engine.exceptions import ConfigError
from ai_engine.types import INTERVAL_MS, Candle

__all__ = [
    "candle_arrays",
    "Gap",
    "ValidationReport",
    "Verdict",
    "OK_VERDICT",
    "CandleValidator",
    "check_values",
    "values_pass",
    "check_open_time",
    "iso_utc",
    "MIN_OPEN_TIME_MS",
    "MAX_OPEN_TIME_MS",
]

# Plausible open_time range in ms: catches seconds or microseconds passed as milliseconds.
MIN_OPEN_TIME_MS = 1_230_768_000_000  # 2009-01-01T00:00:00Z
MAX_OPEN_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def iso_utc(ms: int) -> str:
    """``1618880400000`` → ``2021-04-20T01:00:00Z``; an out-of-range value is shown as raw ms."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def check_open_time(open_time: int, interval: str) -> tuple[str, str] | None:
    """Return ``(kind, message)`` when ``open_time`` is implausible or off the interval grid."""
    if not MIN_OPEN_TIME_MS <= open_time < MAX_OPEN_TIME_MS:
        return (
            "time_range",
            f"open_time {open_time} is outside 2009..2100 (expected UTC milliseconds)",
        )
    step = INTERVAL_MS[interval]
    if open_time % step:
        return (
            "misaligned",
            f"open_time {open_time} is not a multiple of the {interval} interval ({step} ms)",
        )
    return None


def check_values(o: float, h: float, low: float, c: float, v: float) -> tuple[str, str] | None:
    """Return ``(kind, message)`` for the first rule an OHLCV tuple breaks, else None."""
    for name, x in (("open", o), ("high", h), ("low", low), ("close", c), ("volume", v)):
        if not math.isfinite(x):
            return "non_finite", f"{name} is {x}"
    for name, x in (("open", o), ("high", h), ("low", low), ("close", c)):
        if x <= 0:
            return "non_positive_price", f"{name} {x} <= 0"
    if h < max(o, c):
        return "high_below_body", f"high {h} < max(open, close) {max(o, c)}"
    if low > min(o, c):
        return "low_above_body", f"low {low} > min(open, close) {min(o, c)}"
    if v < 0:
        return "negative_volume", f"volume {v} < 0"
    return None


def values_pass(ohlcv: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows of an (n, 5) OHLCV array that ``check_values`` passes, in one pass."""
    o, h, low, c, v = ohlcv.T
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(ohlcv).all(axis=1)
            & (np.minimum(np.minimum(o, h), np.minimum(low, c)) > 0)
            & (h >= np.maximum(o, c))
            & (low <= np.minimum(o, c))
            & (v >= 0)
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing bars between two consecutive accepted candles."""

    symbol: str
    interval: str
    after_ms: int  # open_time of the last bar before the gap
    next_ms: int  # open_time of the first bar after it
    missing: int

    def __str__(self) -> str:
        bars = "bar" if self.missing == 1 else "bars"
        return f"gap {self.symbol} after {iso_utc(self.after_ms)}: {self.missing} missing {bars}"


@dataclass(slots=True)
class ValidationReport:
    """What validation did to one file: rows read and kept, quarantines by kind, gaps.

    Filled in by :func:`ai_engine.data.load_csv` when passed as ``report=``.
    """

    source: str = ""
    symbol: str = ""
    interval: str = ""
    rows_read: int = 0
    rows_kept: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def n_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def missing_bars(self) -> int:
        return sum(g.missing for g in self.gaps)

    def __str__(self) -> str:
        lines = [
            f"{self.symbol} {self.interval} ({self.source}): {self.rows_read} rows read, "
            f"{self.rows_kept} kept, {self.n_quarantined} quarantined, "
            f"{len(self.gaps)} gaps ({self.missing_bars} missing bars)"
        ]
        lines += [f"  quarantined {kind}: {n}" for kind, n in sorted(self.quarantined.items())]
        lines += [f"  {g}" for g in self.gaps]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of checking one live candle.

    ``accept`` False: drop the candle; ``reason`` (``"<kind>: <message>"``) says why.
    ``accept`` True with a reason (kind ``"gap"``): use the candle, but bars are missing before it.
    """

    accept: bool
    reason: str | None = None
    kind: str | None = None

    @property
    def warning(self) -> bool:
        return self.accept and self.reason is not None


_OK = OK_VERDICT = Verdict(True)  # the one verdict of a candle that passed with nothing to say


def _reject(kind: str, message: str) -> Verdict:
    return Verdict(False, f"{kind}: {message}", kind)


def candle_arrays(candles: Sequence[Candle]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5) float64 OHLCV and (n,) int64 open times of candles, built once per closing time for
    the validator and the features.

    Raises:
        TypeError, ValueError, OverflowError: a field that is not a number.
    """
    n = len(candles)
    ohlcv = np.array([(c.open, c.high, c.low, c.close, c.volume) for c in candles], dtype=np.float64)
    return ohlcv.reshape(n, 5), np.fromiter((c.open_time for c in candles), dtype=np.int64, count=n)


class CandleValidator:
    """Streaming form of the CSV rules, with per-(symbol, interval) memory of the last accepted bar.

    Args:
        interval: when given, candles of any other interval are rejected.

    ``check`` records an accepted candle, so call it exactly once per incoming candle.
    """

    def __init__(self, interval: str | None = None) -> None:
        if interval is not None and interval not in INTERVAL_MS:
            raise ConfigError(
                f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MS)}"
            )
        self.interval = interval
        self._last: dict[tuple[str, str], int] = {}

    def forget(self, symbol: str) -> None:
        """Drop what is remembered of ``symbol`` (its next candle is checked as a first one)."""
        for key in [k for k in self._last if k[0] == symbol]:
            del self._last[key]

    def last_open_time(self, symbol: str, interval: str) -> int | None:
        return self._last.get((symbol, interval))

    def check(self, candle: Candle) -> Verdict:
        if candle.interval not in INTERVAL_MS or (
            self.interval and candle.interval != self.interval
        ):
            allowed = self.interval or ", ".join(INTERVAL_MS)
            return _reject("interval", f"interval {candle.interval!r} is not {allowed}")
        try:
            problem = check_open_time(int(candle.open_time), candle.interval) or check_values(
                float(candle.open),
                float(candle.high),
                float(candle.low),
                float(candle.close),
                float(candle.volume),
            )
        except (TypeError, ValueError) as exc:
            return _reject("non_numeric", str(exc))
        if problem is not None:
            return _reject(*problem)
        key = (candle.symbol, candle.interval)
        last = self._last.get(key)
        if last is not None and candle.open_time <= last:
            kind = "duplicate" if candle.open_time == last else "out_of_order"
            return _reject(
                kind, f"open_time {iso_utc(candle.open_time)} <= last accepted {iso_utc(last)}"
            )
        self._last[key] = candle.open_time
        if last is not None:
            missing = (candle.open_time - last) // INTERVAL_MS[candle.interval] - 1
            if missing > 0:
                gap = Gap(candle.symbol, candle.interval, last, candle.open_time, missing)
                return Verdict(True, str(gap), "gap")
        return _OK

    def check_many(self, candles: Sequence[Candle],
                   arrays: tuple[np.ndarray, np.ndarray] | None = None) -> list[Verdict]:
        """``[check(c) for c in candles]`` for candles of distinct symbols (a closing time),
        screened in one numpy pass: only a suspect candle goes through ``check`` itself.
        ``arrays``: their :func:`candle_arrays`, when the caller has them."""
        keys = [(c.symbol, c.interval) for c in candles]
        if not self.interval or len(set(keys)) != len(keys) or any(k[1] != self.interval for k in keys):
            return [self.check(c) for c in candles]
        if arrays is None:
            try:
                arrays = candle_arrays(candles)
            except (TypeError, ValueError, OverflowError):
                return [self.check(c) for c in candles]
        ohlcv, times = arrays
        last = np.fromiter(map(self._last.get, keys, repeat(MIN_OPEN_TIME_MS - 1)), dtype=np.int64, count=len(keys))
        step = INTERVAL_MS[self.interval]
        fine = (values_pass(ohlcv.reshape(-1, 5)) & (times >= MIN_OPEN_TIME_MS) & (times < MAX_OPEN_TIME_MS)
                & (times % step == 0) & (times > last))
        missing = np.where(last >= MIN_OPEN_TIME_MS, (times - last) // step - 1, 0)
        if fine.all() and not missing.any():  # the usual closing time: every candle as expected
            self._last.update(zip(keys, times.tolist(), strict=True))
            return [_OK] * len(keys)
        out: list[Verdict] = []
        rows = zip(candles, keys, fine.tolist(), times.tolist(), last.tolist(), missing.tolist(), strict=True)
        for c, k, ok, t, before, gap in rows:
            if not ok:
                out.append(self.check(c))
            elif gap > 0:
                out.append(Verdict(True, str(Gap(c.symbol, c.interval, before, t, gap)), "gap"))
                self._last[k] = t
            else:
                out.append(_OK)
                self._last[k] = t
        return out
