"""Streaming features for serving: O(1) work per bar, values equal to the batch features.

A :class:`FeatureBank` holds the streaming state of every symbol of one interval in arrays, so the
symbols that close a bar together are computed in one pass:

* the recursive indicators (EMA, Wilder RSI/ATR/ADX, TRIX, MACD) carry their whole history in a
  few numbers per symbol, one row per quantity with a column per slot (``recursive.py``), and
  advance every symbol of a closing time in one pass of numpy operations, the same ``step`` that
  batch runs over its bars;
* every other feature reads at most the last ``_CONTEXT + 1`` bars, which the bank keeps for all
  symbols in one array and hands to the same ``_rows`` that batch runs, for all symbols at once;
* the sequence rows of the last ``seq_len_max`` bars sit in a mirrored ring (each row written
  twice), so any window of any symbol is one contiguous slice and a batch of windows one gather.

A stream primed with ``PRIME_BARS`` candles of history equals batch over a longer history to
within ``SLOWEST_DECAY ** (PRIME_BARS - WARMUP_BARS)`` (~1e-31, below float64 precision): that is
what a recursive indicator still remembers of where it started. Fed from a series' first bar, a
stream equals batch over that series exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ai_engine.data.validate import candle_arrays, check_values, iso_utc, values_pass
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.features.indicators import (
    _CONTEXT,
    _RECURSIVE,
    FEATURE_NAMES,
    SEQUENCE_CHANNELS,
    SLOWEST_DECAY,
    WARMUP_BARS,
    _sequence_rows,
    _tabular_rows,
    price_scale,
)
from ai_engine.features.recursive import FIELDS, OUTPUTS, SEED_BARS, advance, seed
from ai_engine.types import Candle

__all__ = [
    "PRIME_BARS",
    "DeferredArray",
    "FeatureBank",
    "FeatureRow",
    "FeatureStep",
    "StreamingFeatures",
]

# Candles of history a stream is primed with: its recursive indicators then remember their
# starting point by less than SLOWEST_DECAY ** (PRIME_BARS - WARMUP_BARS) ~ 1e-31 (relative).
PRIME_BARS: int = 1000
assert SLOWEST_DECAY ** (PRIME_BARS - WARMUP_BARS) < 1e-30

_KEEP = _CONTEXT + 1  # bars of each symbol kept for the windowed features
assert _KEEP >= SEED_BARS  # a symbol's recursive state is seeded on bars still kept
_ROWS_PER_PASS = 1 << 16  # symbol-rows per _rows call when priming (bounds its temporaries)
_NEVER = np.iinfo(np.int64).min  # the last open time of a symbol with no bar yet


class DeferredArray:
    """An array computed on first read, by whichever thread reads it first, and kept.

    Serving defers a closing time's tabular features this way: the sequence voters start on the
    windows at once, on their own CPU, while the tabular voters' lane computes the rows it needs
    before its first forward (docs/performance.md).
    """

    __slots__ = ("_fn", "_lock", "_value")

    def __init__(self, fn: Callable[[], np.ndarray]) -> None:
        self._fn, self._lock, self._value = fn, threading.Lock(), None

    def get(self) -> np.ndarray:
        with self._lock:
            if self._value is None:
                self._value, self._fn = self._fn(), None  # what it was computed from goes with fn
            return self._value

    def take(self, rows: np.ndarray) -> DeferredArray:
        """The rows ``rows``, still deferred."""
        return DeferredArray(lambda: self.get()[rows])

    def __getitem__(self, key) -> np.ndarray:
        return self.get()[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.get(), dtype=dtype)


@dataclass(frozen=True, slots=True)
class FeatureStep:
    """What one :meth:`FeatureBank.update` computed.

    Attributes:
        candles: the candles taken, in input order (refused ones left out).
        slots: (n,) the bank slots of their symbols.
        tabular: (n, len(FEATURE_NAMES)) float64, equal to the batch rows of the same bars; a
            :class:`DeferredArray` of them when asked for (``update(defer_tabular=True)``).
        ready: (n,) bool, past warm-up with every value finite (the others are warming up); when
            the tabular rows are deferred, every sequence value (a tabular row that is not finite
            then is never fed to a model: ``model_calls.model_rows``).
        refused: (input index, error) of each candle the bank refused; its symbol is unchanged.
    """

    candles: list[Candle]
    slots: np.ndarray
    tabular: np.ndarray | DeferredArray
    ready: np.ndarray
    refused: list[tuple[int, DataError]]


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """Features of the latest bar of one symbol.

    Attributes:
        symbol, open_time: which bar.
        tabular: (len(FEATURE_NAMES),) float64, equal to the batch row of the same bar.
        history: (n, len(SEQUENCE_CHANNELS)) float32 sequence rows ending at this bar (read-only).
    """

    symbol: str
    open_time: int
    tabular: np.ndarray
    history: np.ndarray

    def sequence_window(self, seq_len: int) -> np.ndarray:
        """The last ``seq_len`` sequence rows (seq_len, C), built from real candle history.

        Raises:
            DataError: fewer than ``seq_len`` bars seen, or the window reaches into warm-up rows.
        """
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if seq_len > len(self.history):
            raise DataError(
                f"{self.symbol} {iso_utc(self.open_time)}: sequence window of {seq_len} bars requested, "
                f"only {len(self.history)} bars of history held"
            )
        window = self.history[-seq_len:]
        if not np.isfinite(window).all():
            raise DataError(
                f"{self.symbol} {iso_utc(self.open_time)}: the last {seq_len} bars include warm-up "
                f"or undefined rows; feed at least {seq_len + WARMUP_BARS} candles first"
            )
        return window.copy()


class FeatureBank:
    """Streaming features of every symbol of one interval, equal to :func:`compute_features`.

    Args:
        interval: the only interval this bank accepts.
        seq_len_max: longest sequence window it can serve.
    """

    def __init__(self, interval: str, seq_len_max: int = 512) -> None:
        if seq_len_max < 1:
            raise ConfigError(f"seq_len_max must be >= 1, got {seq_len_max}")
        self.interval = interval
        self.seq_len_max = seq_len_max
        self._slot: dict[str, int] = {}
        self._free: list[int] = []
        self._cap = 0
        self._grow(8)

    # -- slots ---------------------------------------------------------------------------------
    def _grow(self, cap: int) -> None:
        """Room for ``cap`` symbols, the state of those held kept."""
        old, self._cap = self._cap, cap

        def grown(name: str, shape: tuple, fill, dtype, axis: int = 0) -> np.ndarray:
            out = np.full(shape, fill, dtype=dtype)
            if old:
                out[(slice(None),) * axis + (slice(0, old),)] = getattr(self, name)
            return out

        self._bars = grown("_bars", (5, cap, _KEEP), np.nan, np.float64, axis=1)
        self._seq = grown("_seq", (cap, 2 * self.seq_len_max, len(SEQUENCE_CHANNELS)), np.nan, np.float32)
        self._seen = grown("_seen", (cap,), 0, np.int64)
        self._last = grown("_last", (cap,), _NEVER, np.int64)
        self._scale = grown("_scale", (cap,), np.nan, np.float64)
        self._state = grown("_state", (len(FIELDS), cap), np.nan, np.float64, axis=1)  # recursive.FIELDS
        self._seeded = grown("_seeded", (cap,), False, bool)
        self._free.extend(range(cap - 1, old - 1, -1))

    def slot(self, symbol: str) -> int:
        """The slot of ``symbol``, given one if it has none."""
        s = self._slot.get(symbol)
        if s is None:
            if not self._free:
                self._grow(2 * self._cap)
            s = self._slot[symbol] = self._free.pop()
        return s

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._slot

    def __len__(self) -> int:
        return len(self._slot)

    def bars_seen(self, symbol: str) -> int:
        s = self._slot.get(symbol)
        return 0 if s is None else int(self._seen[s])

    def forget(self, symbol: str) -> None:
        """Drop a symbol's state; fed again, it starts afresh."""
        s = self._slot.pop(symbol, None)
        if s is None:
            return
        self._bars[:, s] = np.nan
        self._seq[s] = np.nan
        self._seen[s], self._last[s], self._scale[s] = 0, _NEVER, np.nan
        self._state[:, s], self._seeded[s] = np.nan, False
        self._free.append(s)

    # -- reading -------------------------------------------------------------------------------
    def windows(self, slots: np.ndarray, seq_len: int) -> np.ndarray:
        """(len(slots), seq_len, C) float32: the last ``seq_len`` sequence rows of each slot's
        symbol, NaN where it has fewer rows, a row was warming up, or the window is longer than
        ``seq_len_max`` (a model with such a window then reports an error for the row)."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        L = self.seq_len_max
        if seq_len > L:
            out = np.full((len(slots), seq_len, len(SEQUENCE_CHANNELS)), np.nan, dtype=np.float32)
            out[:, -L:] = self.windows(slots, L)
            return out
        first = (self._seen[slots] - 1) % L + L - seq_len + 1  # the mirror makes it contiguous
        seq = self._seq
        starts = np.lib.stride_tricks.as_strided(  # every window of every slot, as a view
            seq, (len(seq), 2 * L - seq_len + 1, seq_len, seq.shape[2]),
            (seq.strides[0], seq.strides[1], seq.strides[1], seq.strides[2]), writeable=False)
        return starts[slots, first]

    def history(self, symbol: str) -> np.ndarray:
        """The symbol's sequence rows held (the last min(bars seen, seq_len_max)), oldest first."""
        s = self._slot[symbol]
        n = int(min(self._seen[s], self.seq_len_max))
        return self.windows(np.array([s]), n)[0] if n else np.empty((0, len(SEQUENCE_CHANNELS)), np.float32)

    # -- feeding -------------------------------------------------------------------------------
    def update(self, candles: Sequence[Candle], arrays: tuple[np.ndarray, np.ndarray] | None = None,
               defer_tabular: bool = False) -> FeatureStep:
        """The next closed candle of each of several symbols (each at most once): their rows.
        ``arrays``: the candles' :func:`candle_arrays`, when the caller has them;
        ``defer_tabular``: the tabular rows as a :class:`DeferredArray`, computed on first read.

        Refused candles (another interval, not after the symbol's last bar, invalid values) are
        reported in ``refused`` and leave their symbol unchanged; the others are taken.

        Raises:
            ValueError: a symbol appears twice (feed a backfilled run with :meth:`extend`).
        """
        slots, ohlcv, times = self._slots_and_arrays(candles, arrays)
        once = np.zeros(self._cap, dtype=bool)
        once[slots] = True
        if np.count_nonzero(once) != len(slots):
            raise ValueError("a symbol appears twice in one update; feed a run of bars with extend()")
        ok, refused = self._screen(candles, ohlcv, times, self._last[slots])
        if refused:
            candles = [c for c, k in zip(candles, ok, strict=True) if k]
            slots, ohlcv, times = slots[ok], ohlcv[ok], times[ok]
        tab, ready = self._advance(slots, ohlcv[:, None, :], times, rows=1, defer=defer_tabular)
        tab = tab.take(np.s_[:, 0]) if defer_tabular else tab[:, 0]
        return FeatureStep(list(candles), slots, tab, ready[:, 0], refused)

    def extend(self, candles: Iterable[Candle]) -> tuple[list[Candle], list[DataError]]:
        """Feed history (candles of any symbols, each symbol's in time order) without computing
        tabular rows: the state and the last ``seq_len_max`` sequence rows end as if each candle
        had been given to :meth:`update` in turn, a symbol's run of bars in one pass.

        Returns:
            (the candles taken, in input order; the errors of the ones refused, in input order).
        """
        candles = list(candles)
        if not candles:
            return [], []
        slots, ohlcv, times = self._slots_and_arrays(candles)
        order = np.argsort(slots, kind="stable")  # each symbol's candles together, in input order
        starts = np.flatnonzero(np.diff(slots[order], prepend=-1))
        runs = np.split(order, starts[1:])
        # the last open time before each candle: its symbol's last, then the latest before it
        # among its valid candles (one that comes too early does not move it)
        prev = np.empty(len(candles), dtype=np.int64)
        fine = self._fine(candles, ohlcv)
        for run in runs:
            t = np.where(fine[run], times[run], _NEVER)
            prev[run] = np.maximum.accumulate(np.concatenate([[self._last[slots[run[0]]]], t[:-1]]))
        ok, refused = self._screen(candles, ohlcv, times, prev, fine)
        by_len: dict[int, list[np.ndarray]] = {}
        for run in runs:
            run = run[ok[run]]
            if len(run):
                by_len.setdefault(len(run), []).append(run)
        for n, group in by_len.items():
            rows = min(n, self.seq_len_max)
            per_pass = max(1, _ROWS_PER_PASS // rows)
            for i in range(0, len(group), per_pass):
                index = np.stack(group[i : i + per_pass])  # (S, n) candle indexes
                self._advance(slots[index[:, 0]], ohlcv[index], times[index[:, -1]], rows=rows)
        return [c for c, k in zip(candles, ok, strict=True) if k], [e for _, e in refused]

    def _slots_and_arrays(
        self, candles: Sequence[Candle], arrays: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each candle's slot (given one if new), (n, 5) float64 OHLCV and (n,) int64 open time."""
        n = len(candles)
        symbols = [c.symbol for c in candles]
        try:  # every symbol held: one C-level pass over the dict
            slots = np.fromiter(map(self._slot.__getitem__, symbols), dtype=np.int64, count=n)
        except KeyError:
            slots = np.fromiter(map(self.slot, symbols), dtype=np.int64, count=n)
        ohlcv, times = candle_arrays(candles) if arrays is None else arrays
        return slots, ohlcv, times

    def _fine(self, candles: Sequence[Candle], ohlcv: np.ndarray) -> np.ndarray:
        """(n,) bool: the interval is this bank's and the values pass ``check_values``'s rules."""
        same = np.fromiter((c.interval == self.interval for c in candles), dtype=bool, count=len(candles))
        return values_pass(ohlcv) & same

    def _screen(
        self, candles: Sequence[Candle], ohlcv: np.ndarray, times: np.ndarray, prev: np.ndarray,
        fine: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[tuple[int, DataError]]]:
        """Which candles are taken (fine and after ``prev``, their symbol's last open time), and why
        each other one is refused, worked out only for those."""
        ok = (self._fine(candles, ohlcv) if fine is None else fine) & (times > prev)
        return ok, [(i, self._problem(candles[i], int(prev[i]))) for i in np.flatnonzero(~ok).tolist()]

    def _problem(self, c: Candle, last: int) -> DataError:
        """Why the bank refuses ``c`` after its symbol's last bar ``last``."""
        if c.interval != self.interval:
            return DataError(f"candle {c.symbol} {c.interval} fed to the {self.interval} features")
        if c.open_time <= last:
            return DataError(
                f"{c.symbol} {iso_utc(c.open_time)}: not after the last candle "
                f"{iso_utc(last)} (duplicate or out of order)"
            )
        problem = check_values(c.open, c.high, c.low, c.close, c.volume)
        return DataError(f"{c.symbol} {iso_utc(c.open_time)}: invalid candle: {problem and problem[1]}")

    def _advance(
        self, slots: np.ndarray, new: np.ndarray, times: np.ndarray, rows: int, defer: bool = False
    ) -> tuple[np.ndarray | DeferredArray, np.ndarray]:
        """Advance ``slots`` by their ``n`` new bars ``new`` ((S, n, 5), each symbol's next bars)
        and compute the features of the last ``rows`` of them (the tabular ones on first read
        when ``defer``: the state has moved on by then, they read only their own scratch).

        Returns:
            tabular (S, rows, F) and ready (S, rows).
        """
        n_sym, n = new.shape[:2]
        if n_sym == 0:
            return np.empty((0, rows, len(FEATURE_NAMES))), np.zeros((0, rows), dtype=bool)
        seen = self._seen[slots]
        fresh = seen == 0
        if fresh.any():
            self._scale[slots[fresh]] = price_scale(new[fresh, 0, 3])
        ta = np.empty((len(_RECURSIVE), n_sym, rows))
        scaled = new[..., 1:4] * self._scale[slots][:, None, None]  # high, low, close as the indicators see them
        ta[-1] = scaled[:, -rows:, 2]
        ta[:-1] = self._recursive(slots, seen, scaled.transpose(2, 0, 1), rows)
        # the windowed features: the kept bars before the new ones, then the new ones
        bars = np.concatenate([self._bars[:, slots, 1:], new.transpose(2, 0, 1)], axis=2)  # (5, S, _CONTEXT + n)
        end = bars.shape[2]
        seq = np.empty((n_sym, rows, len(SEQUENCE_CHANNELS)), dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            scratch = _sequence_rows(list(bars), end - rows, end, ta, seq)

        def tabular() -> np.ndarray:
            out = np.empty((n_sym, rows, len(FEATURE_NAMES)))
            with np.errstate(divide="ignore", invalid="ignore"):
                _tabular_rows(scratch, out)
            return out

        index = seen[:, None] + (n - rows) + np.arange(rows)  # each row's bar index in its symbol
        ready = (index >= WARMUP_BARS) & np.isfinite(seq).all(axis=2)
        if defer:
            tab = DeferredArray(tabular)
        else:
            tab = tabular()
            ready &= np.isfinite(tab).all(axis=2)
        seq[~ready] = np.nan  # windows may span valid rows only, as in batch valid_windows
        L = self.seq_len_max
        pos = index % L
        self._seq[slots[:, None], pos] = seq
        self._seq[slots[:, None], pos + L] = seq
        self._bars[:, slots] = bars[:, :, -_KEEP:]
        self._seen[slots] += n
        self._last[slots] = times
        return tab, ready

    def _recursive(self, slots: np.ndarray, seen: np.ndarray, scaled: np.ndarray, rows: int) -> np.ndarray:
        """Advance the recursive state of ``slots`` (``seen`` bars before these) by their scaled
        (3, S, n) high/low/close; their outputs for the last ``rows`` bars: (len(OUTPUTS), S, rows),
        NaN inside the seed. Seeded symbols step together (a closing time: one pass); a symbol
        not yet seeded is seeded on its first SEED_BARS bars (all still kept) with the others that
        have seen as many, then steps on."""
        n = scaled.shape[2]
        out = np.full((len(OUTPUTS), len(slots), rows), np.nan)
        seeded = self._seeded[slots]
        if seeded.all():  # a closing time of running symbols: one group
            groups = [np.arange(len(slots))]
        else:
            groups = [np.flatnonzero(seeded)] + [np.flatnonzero(~seeded & (seen == k)) for k in np.unique(seen[~seeded])]
        for idx in groups:
            if not len(idx):
                continue
            s, (h, low, c) = slots[idx], scaled[:, idx]
            if self._seeded[s[0]]:
                state = self._state[:, s]
            else:
                k = int(seen[idx[0]])
                if k + n < SEED_BARS:
                    continue
                kept = self._bars[1:4, s, _KEEP - k :] * self._scale[s][:, None]
                h, low, c = (np.concatenate([old, x], axis=1) for old, x in zip(kept, (h, low, c), strict=True))
                state = seed(h, low, c)
                h, low, c = h[:, SEED_BARS:], low[:, SEED_BARS:], c[:, SEED_BARS:]
            keep = min(rows, c.shape[1])
            if c.shape[1]:
                out[:, idx, rows - keep :] = advance(state, h, low, c, keep)
            self._state[:, s], self._seeded[s] = state, True
        return out


class StreamingFeatures:
    """One symbol's streaming features (a :class:`FeatureBank` of one), for callers that feed a
    candle at a time.

    Args:
        symbol, interval: the only candles this instance accepts.
        seq_len_max: longest sequence window a FeatureRow can serve.
    """

    def __init__(self, symbol: str, interval: str, seq_len_max: int = 512) -> None:
        self.symbol = symbol
        self.interval = interval
        self._bank = FeatureBank(interval, seq_len_max)
        self.seq_len_max = seq_len_max

    @property
    def bars_seen(self) -> int:
        return self._bank.bars_seen(self.symbol)

    def update(self, candle: Candle) -> FeatureRow | None:
        """Append the next closed candle; return its features, or None while warming up.

        Raises:
            DataError: the candle is for another symbol/interval, not after the last one, or invalid.
        """
        if (candle.symbol, candle.interval) != (self.symbol, self.interval):
            raise DataError(
                f"candle {candle.symbol} {candle.interval} fed to the features of {self.symbol} {self.interval}"
            )
        step = self._bank.update([candle])
        if step.refused:
            raise step.refused[0][1]
        if not step.ready[0]:
            return None
        tabular = step.tabular[0].copy()
        tabular.setflags(write=False)
        history = self._bank.history(self.symbol)
        history.setflags(write=False)
        return FeatureRow(self.symbol, candle.open_time, tabular, history)

