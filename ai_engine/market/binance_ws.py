"""Live Binance klines over the websocket, with reconnect and a REST gap backfill.

``KlineFeed`` runs an asyncio loop on a background thread and hands the service ``MarketBatch``es
through a queue, so the service stays a plain loop: ``for batch in feed: ...``. After every
(re)connect it first fetches over REST the closed candles missed since the last one it delivered
(or since ``start_after``), delivers them in time order, then the live ones; candles at or before
the last delivered one are dropped, so nothing arrives twice or out of order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import websockets

from ai_engine.exceptions import DataError, TransientError
from ai_engine.market.batch import CloseGrouper, MarketBatch
from ai_engine.market.binance_rest import BINANCE_REST, fetch_klines, rows_to_candles
from ai_engine.types import INTERVAL_MS, Candle

__all__ = ["BINANCE_WS", "KlineFeed", "parse_kline_event", "stream_url"]

log = logging.getLogger("ai_engine.market")

BINANCE_WS = "wss://stream.binance.com:9443"
_STOP = object()


def stream_url(base: str, symbols: tuple[str, ...], interval: str) -> str:
    """``<base>/ws/<sym>@kline_<i>`` for one symbol, ``<base>/stream?streams=...`` for several."""
    names = [f"{s.lower()}@kline_{interval}" for s in symbols]
    base = base.rstrip("/")
    return f"{base}/ws/{names[0]}" if len(names) == 1 else f"{base}/stream?streams={'/'.join(names)}"


def parse_kline_event(event: Mapping) -> tuple[Candle, bool]:
    """(candle, closed) from a Binance kline event (``{"e": "kline", "k": {...}}``, optionally
    wrapped as ``{"stream": ..., "data": ...}``) or a bare kline object. Raises DataError."""
    data = event.get("data", event)
    k = data.get("k", data) if isinstance(data, Mapping) else None
    try:
        interval = str(k["i"])
        if interval not in INTERVAL_MS:
            raise ValueError(f"unknown interval {interval!r}")
        candle = Candle(str(k["s"]).upper(), interval, int(k["t"]), float(k["o"]), float(k["h"]), float(k["l"]),
                        float(k["c"]), float(k["v"]))
        closed = k["x"]
        if not isinstance(closed, bool):
            raise ValueError(f"'x' is {closed!r}, expected true/false")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed kline event ({type(exc).__name__}: {exc}): {json.dumps(event)[:200]}") from None
    return candle, closed


class KlineFeed:
    """Iterable of closed-candle batches from Binance's kline websocket.

    Args:
        symbols: symbols to follow (upper case).
        interval: kline interval, e.g. "1h".
        ws_url: websocket base (``wss://stream.binance.com:9443``).
        rest_url: REST base for the gap backfill.
        start_after: {symbol: open_time} last candle already handled (e.g. from the store); the
            first connect backfills from there. Without it the first connect starts live.
        grace_s: how long a batch waits for the other symbols' candles of the same open time.
        backoff_initial_s, backoff_max_s: reconnect backoff (doubles up to the maximum).
        clock_ms: wall clock in ms (tests).
    """

    def __init__(
        self,
        symbols: tuple[str, ...] | list[str],
        interval: str,
        *,
        ws_url: str = BINANCE_WS,
        rest_url: str = BINANCE_REST,
        start_after: Mapping[str, int] | None = None,
        grace_s: float = 2.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if interval not in INTERVAL_MS:
            raise DataError(f"interval {interval!r} is not supported; expected one of {', '.join(INTERVAL_MS)}")
        self.symbols = tuple(s.upper() for s in symbols)
        if not self.symbols:
            raise DataError("KlineFeed needs at least one symbol")
        self.interval = interval
        self.url = stream_url(ws_url, self.symbols, interval)
        self.rest_url = rest_url
        self.grace_s = grace_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.connects = 0
        self.backfilled = 0
        self._last: dict[str, int] = dict(start_after or {})
        self._grouper = CloseGrouper(self.symbols, grace_s)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- service side -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[MarketBatch]:
        self.start()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def get(self, timeout: float | None = None) -> MarketBatch | None:
        """Next batch, or None on timeout or after close."""
        self.start()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _STOP:
            self._queue.put(_STOP)
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="kline-feed", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._queue.put(_STOP)

    # -- feed side ----------------------------------------------------------------------------
    def _emit(self, groups: list[tuple[Candle, ...]]) -> None:
        for g in groups:
            self._queue.put(MarketBatch(g))

    def _accept(self, candle: Candle) -> bool:
        if candle.symbol not in self.symbols or candle.interval != self.interval:
            return False
        if candle.open_time <= self._last.get(candle.symbol, -1):
            return False  # already delivered (backfill overlap or a replayed message)
        self._last[candle.symbol] = candle.open_time
        return True

    async def _backfill(self) -> None:
        step = INTERVAL_MS[self.interval]
        now = self.clock_ms()
        missed: list[Candle] = []
        for sym in self.symbols:
            if sym not in self._last:
                continue
            rows = await asyncio.to_thread(fetch_klines, sym, self.interval, self._last[sym] + step,
                                           base_url=self.rest_url, now_ms=now, retries=2)
            missed.extend(rows_to_candles(sym, self.interval, rows))
        missed.sort(key=lambda c: (c.open_time, c.symbol))
        mono = time.monotonic()
        for c in missed:
            if self._accept(c):
                self.backfilled += 1
                self._emit(self._grouper.add(c, mono))
        self._emit(self._grouper.flush())
        if missed:
            log.info("backfilled %d closed candles over REST after (re)connect", len(missed))

    def _on_message(self, text: str | bytes) -> None:
        try:
            candle, closed = parse_kline_event(json.loads(text))
        except (DataError, json.JSONDecodeError) as exc:
            log.warning("ignored websocket message: %s", exc)
            return
        if closed and self._accept(candle):
            self._emit(self._grouper.add(candle, time.monotonic()))

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    async def _run(self) -> None:
        backoff = self.backoff_initial_s
        down_since: float | None = None
        while not self._stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=10, close_timeout=1, ping_interval=20) as ws:
                    self.connects += 1
                    await self._backfill()
                    if down_since is not None:
                        log.warning("kline websocket back after %.1fs: %s", time.monotonic() - down_since, self.url)
                        down_since = None
                    backoff = self.backoff_initial_s
                    while not self._stop.is_set():
                        try:
                            msg = await asyncio.wait_for(ws.recv(), timeout=min(self.grace_s, 0.5))
                        except TimeoutError:
                            self._emit(self._grouper.due(time.monotonic()))
                            continue
                        self._on_message(msg)
            except (OSError, TimeoutError, websockets.WebSocketException, TransientError, DataError) as exc:
                self._emit(self._grouper.flush())
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("kline websocket lost (%s: %s); reconnecting with backoff", type(exc).__name__, exc)
                else:
                    log.debug("kline websocket reconnect failed: %s", exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
