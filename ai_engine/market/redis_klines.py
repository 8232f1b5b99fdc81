"""Closed candles from ``<prefix>:stream:market.klines`` through a Redis consumer group.

Entry layout: one field ``payload`` holding a Binance kline event as JSON
(``{"e": "kline", "E": ..., "s": "BTCUSDT", "k": {"t": ..., "s": ..., "i": "1h", "o": "...",
"h": ..., "l": ..., "c": ..., "v": ..., "x": true}}``; a bare ``k`` object is accepted too).

Entries are acknowledged (XACK) only when the batch's ``ack()`` is called, i.e. after the decisions
on them are recorded. On start the consumer first re-reads its own pending entries and claims
(XAUTOCLAIM) entries other consumers left pending longer than ``claim_idle_ms``, so a crash between
reading and recording never loses a candle (decision ids are deterministic, so a redelivered candle
is never decided twice). Open (``x: false``) candles, other symbols/intervals and malformed
entries are acknowledged at once and logged (malformed ones with the entry id and the reason).
With sharding each shard uses its own group (the default group name includes the shard).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import redis

from ai_engine.exceptions import DataError, TransientError
from ai_engine.market.batch import CloseGrouper, MarketBatch
from ai_engine.market.binance_ws import parse_kline_event
from ai_engine.telemetry.redis_streams import redact_url, redis_client, stream_key
from ai_engine.types import Candle

__all__ = ["RedisKlineSource", "kline_entry"]

log = logging.getLogger("ai_engine.market")


def kline_entry(candle: Candle, closed: bool = True) -> dict[str, str]:
    """The stream entry for ``candle`` in the layout this source reads (for producers and tests)."""
    k = {"t": candle.open_time, "T": candle.close_time - 1, "s": candle.symbol, "i": candle.interval,
         "o": repr(candle.open), "h": repr(candle.high), "l": repr(candle.low), "c": repr(candle.close),
         "v": repr(candle.volume), "x": closed}
    return {"payload": json.dumps({"e": "kline", "E": candle.close_time, "s": candle.symbol, "k": k})}


class RedisKlineSource:
    """Iterable of ``MarketBatch``es read from the klines stream by one consumer of a group.

    Args:
        url: Redis URL.
        prefix: key prefix (stream ``<prefix>:stream:market.klines``).
        symbols: symbols this instance decides on; others are acknowledged and skipped.
        interval: the engine's interval; others are acknowledged and skipped.
        group: consumer group (default ``ai-engine``; give each shard its own).
        consumer: consumer name, stable across restarts so own pending entries are re-read.
        block_ms: how long one read blocks waiting for entries.
        claim_idle_ms: pending entries of other consumers idle this long are claimed.
        grace_ms: how long a batch waits for the other symbols of the same open time.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        symbols: tuple[str, ...] | list[str],
        interval: str,
        *,
        group: str = "ai-engine",
        consumer: str | None = None,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        grace_ms: int = 500,
        count: int = 100,
    ) -> None:
        self.url = url
        self.stream = stream_key(prefix, "market.klines")
        self.symbols = tuple(s.upper() for s in symbols)
        self.interval = interval
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{group}"
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.grace_ms = grace_ms
        self.count = count
        self.skipped = 0
        self._redis = redis_client(url, socket_timeout=max(5.0, block_ms / 1000 + 5), socket_connect_timeout=5)
        self._grouper = CloseGrouper(self.symbols, grace_ms / 1000)
        self._ids: dict[tuple[str, int], bytes] = {}
        self._recovered = False
        self._stopped = False
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise DataError(f"cannot create consumer group {self.group} on {self.stream}: {exc}") from None
        except redis.RedisError as exc:
            raise TransientError(f"Redis {redact_url(self.url)} unreachable: {exc}") from None

    # -- reading ------------------------------------------------------------------------------
    def _recover(self) -> list[tuple[bytes, dict]]:
        """Own pending entries (after a restart), then entries other consumers left pending."""
        mine = self._redis.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=10_000)
        entries = [e for e in (mine[0][1] if mine else []) if e[1]]
        start = "0-0"
        while True:
            start, claimed, *_ = self._redis.xautoclaim(self.stream, self.group, self.consumer,
                                                        self.claim_idle_ms, start_id=start, count=1000)
            entries += [e for e in claimed if e[1]]
            if start in (b"0-0", "0-0"):
                break
        entries.sort(key=lambda e: tuple(int(x) for x in e[0].split(b"-")))
        if entries:
            log.warning("recovered %d unacknowledged kline entries from %s (group %s)", len(entries), self.stream, self.group)
        return entries

    def _read(self, block_ms: int | None) -> list[tuple[bytes, dict]]:
        res = self._redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self.count, block=block_ms)
        return list(res[0][1]) if res else []

    def _take(self, entries: list[tuple[bytes, dict]]) -> list[tuple[Candle, ...]]:
        ready, skip = [], []
        now = time.monotonic()
        for entry_id, fields in entries:
            try:
                raw = fields.get(b"payload")
                if raw is None:
                    raise DataError(f"entry has no 'payload' field (fields: {sorted(k.decode() for k in fields)})")
                candle, closed = parse_kline_event(json.loads(raw))
            except (DataError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                log.error("kline entry %s of %s skipped: %s", entry_id.decode(), self.stream, exc)
                skip.append(entry_id)
                continue
            if not closed or candle.symbol not in self.symbols or candle.interval != self.interval:
                skip.append(entry_id)
                continue
            key = (candle.symbol, candle.open_time)
            if key in self._ids:
                skip.append(self._ids[key])  # a second copy of the same candle: keep the later one
            self._ids[key] = entry_id
            ready += self._grouper.add(candle, now)
        if skip:
            self.skipped += len(skip)
            self._redis.xack(self.stream, self.group, *skip)
        return ready

    def _batch(self, group: tuple[Candle, ...]) -> MarketBatch:
        ids = [self._ids.pop((c.symbol, c.open_time)) for c in group]
        return MarketBatch(group, ack=lambda: self._redis.xack(self.stream, self.group, *ids))

    def next_batches(self) -> list[MarketBatch]:
        """Read what is there (blocking up to ``block_ms``) and return the batches now complete."""
        try:
            if not self._recovered:
                ready = self._take(self._recover()) + self._grouper.flush()
                self._recovered = True
                if ready:
                    return [self._batch(g) for g in ready]
            ready = self._take(self._read(self.block_ms))
            if not ready and self._ids:  # part of a close arrived: give the other symbols a moment
                ready = self._take(self._read(self.grace_ms))
            ready += self._grouper.due(time.monotonic())
            return [self._batch(g) for g in ready]
        except redis.RedisError as exc:
            raise TransientError(f"Redis {redact_url(self.url)} unreachable while reading {self.stream}: {exc}") from None

    def __iter__(self) -> Iterator[MarketBatch]:
        """Batches until ``close()``; Redis trouble is retried with backoff, logged once per outage."""
        backoff, down_since = 0.5, None
        while not self._stopped:
            try:
                batches = self.next_batches()
            except TransientError as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("%s; retrying with backoff", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if down_since is not None:
                log.warning("Redis back after %.1fs; reading %s again", time.monotonic() - down_since, self.stream)
                down_since, backoff = None, 0.5
            yield from batches

    def close(self) -> None:
        self._stopped = True
        self._redis.close()
