"""Redis Streams publisher: drains the store's outbox to ``<prefix>:stream:ai.decision`` and
``<prefix>:stream:trade.intent``, in order, exactly once.

The decision path never waits for Redis: the store writes each event to its ``outbox`` table in
the same transaction as the decision, and ``notify`` only wakes a background drainer. The drainer
reads undelivered rows in ``seq`` order over its own SQLite connection, adds them with a Lua
script that sets ``<prefix>:delivered:<stream>:<event_id>`` (NX, with a TTL) and XADDs in one atomic step,
then marks the rows delivered. A crash between XADD and the mark, a Redis outage, or two
publishers on the same outbox therefore never add an event twice, and nothing is lost: undelivered
rows stay in the outbox until Redis takes them. Stream trimming (approximate MAXLEN) never touches
the SQLite record.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from ai_engine.config import Settings
from ai_engine.exceptions import ConfigError

__all__ = ["RedisPublisher", "stream_key", "redact_url", "redis_client", "slot_tag", "STREAMS", "SOURCE", "DEDUP_TTL_S"]

log = logging.getLogger("ai_engine.bus")

STREAMS = ("ai.decision", "trade.intent")
SOURCE = "ai-engine"
DEDUP_TTL_S = 7 * 24 * 3600  # how long an event id is remembered as delivered

# KEYS: per event (delivered marker, stream). ARGV: ttl, maxlen, then 14 field args per event.
# Returns, per event, the new entry id or false when that event id was already delivered.
_XADD_ONCE = """
local ttl, maxlen, nf = ARGV[1], ARGV[2], 14
local out = {}
for i = 1, #KEYS / 2 do
  local base = 2 + (i - 1) * nf
  if redis.call('SET', KEYS[2 * i - 1], '1', 'NX', 'EX', ttl) then
    out[i] = redis.call('XADD', KEYS[2 * i], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, base + 1, base + nf))
  else
    out[i] = false
  end
end
return out
"""

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError, OSError)


def stream_key(prefix: str, stream: str) -> str:
    """``<prefix>:stream:<stream>``, e.g. ``quantum:stream:trade.intent``."""
    return f"{prefix}:stream:{stream}"


def slot_tag(prefix: str) -> str:
    """``prefix`` as a Redis Cluster hash tag: as it is when it holds one (``{quantum}``), else
    ``{quantum}``. Every key built on it lands in one slot, so one script may touch them all."""
    i = prefix.find("{")
    return prefix if i >= 0 and prefix.find("}", i + 2) > i else "{" + prefix + "}"


def redis_client(url: str, **kwargs) -> redis.Redis | redis.RedisCluster:
    """A client for ``url``: a cluster client when the server says it runs in cluster mode, so the
    same code runs on one Redis and on Redis Cluster. A server not reachable yet gets a plain
    client (its callers ride out the outage as before)."""
    client = redis.Redis.from_url(url, **kwargs)
    try:
        cluster = client.info("cluster").get("cluster_enabled") == 1
    except redis.RedisError:
        return client
    if not cluster:
        return client
    client.close()
    return redis.RedisCluster.from_url(url, **kwargs)


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _fields(event_id: str, stream: str, event_type: str, payload: str, created_at: int) -> list[str]:
    # correlation_id ties an intent to its decision; a decision correlates to itself.
    correlation = event_id
    if stream == "trade.intent":
        correlation = json.loads(payload).get("decision_event_id") or event_id
    return [
        "event_type", event_type, "payload", payload, "trace_id", event_id, "correlation_id", correlation,
        "timestamp", str(created_at), "source", SOURCE, "event_id", event_id,
    ]


class RedisPublisher:
    """Engine sink that delivers the outbox of the SQLite store at ``store_path`` to Redis Streams.

    Args:
        store_path: the telemetry store whose ``outbox`` table is drained (WAL; own connection).
        url: Redis URL.
        prefix: key prefix of streams and delivery markers.
        maxlen: approximate MAXLEN of each stream.
        batch: outbox rows per Lua call.
        dedup_ttl_s: how long a delivered event id is remembered in Redis.
        backoff_initial_s, backoff_max_s: reconnect backoff (doubles up to the maximum).
        poll_s: how often the drainer looks at the outbox without being notified (rows spooled by
            an earlier run or another process are delivered too).
        on_delivered: called with the event ids of each delivered batch (benchmarks, tests).
        start: start the drainer thread now.
    """

    def __init__(
        self,
        store_path: Path | str,
        url: str,
        *,
        prefix: str = "quantum",
        maxlen: int = 100_000,
        batch: int = 256,
        dedup_ttl_s: int = DEDUP_TTL_S,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        poll_s: float = 1.0,
        on_delivered: Callable[[list[str]], None] | None = None,
        start: bool = True,
    ) -> None:
        self.store_path = Path(store_path)
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.batch = batch
        self.dedup_ttl_s = dedup_ttl_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.on_delivered = on_delivered
        self.delivered = 0
        self.duplicates_skipped = 0
        self._redis = redis_client(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        if isinstance(self._redis, redis.RedisCluster) and slot_tag(prefix) != prefix:
            raise ConfigError(f"Redis at {redact_url(url)} is a cluster: AI_ENGINE_REDIS_PREFIX={prefix!r} must be a hash "
                              f"tag such as {slot_tag(prefix)!r}, so each event's delivery marker and its stream share "
                              "a slot (one script writes both)")
        self._script = self._redis.register_script(_XADD_ONCE)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._down_since: float | None = None
        self._last_down_log = 0.0
        self._thread = threading.Thread(target=self._run, name="redis-publisher", daemon=True)
        if start:
            self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, store, **kwargs) -> RedisPublisher:
        """Publisher for ``settings.redis_url`` draining ``store``'s outbox."""
        return cls(store.path, settings.redis_url, prefix=settings.redis_prefix, maxlen=settings.stream_maxlen, **kwargs)

    # -- sink interface -----------------------------------------------------------------------
    def notify(self, records: Sequence[object] = ()) -> None:
        """New rows are in the outbox: wake the drainer. Never blocks."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> int:
        """Deliver what can be delivered within ``timeout`` seconds, stop; returns rows left spooled."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        left = self.pending()
        if left:
            log.warning("%d events stay spooled in %s; they are delivered on the next start", left, self.store_path)
        self._redis.close()
        return left

    # -- state --------------------------------------------------------------------------------
    def pending(self) -> int:
        """Outbox rows not yet delivered."""
        with sqlite3.connect(self.store_path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]

    @property
    def connected(self) -> bool:
        return self._down_since is None

    # -- drainer ------------------------------------------------------------------------------
    def drain_once(self, db: sqlite3.Connection) -> int:
        """Deliver one batch of the oldest undelivered rows; returns rows handled (0 = empty)."""
        rows = db.execute(
            "SELECT seq, stream, event_id, event_type, payload, created_at FROM outbox "
            "WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", (self.batch,)
        ).fetchall()
        if not rows:
            return 0
        keys: list[str] = []
        args: list[str] = [str(self.dedup_ttl_s), str(self.maxlen)]
        for _seq, stream, event_id, event_type, payload, created_at in rows:
            keys += [f"{self.prefix}:delivered:{stream}:{event_id}", stream_key(self.prefix, stream)]
            args += _fields(event_id, stream, event_type, payload, created_at)
        ids = self._script(keys=keys, args=args)
        self.duplicates_skipped += sum(1 for x in ids if not x)
        now = int(time.time() * 1000)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("UPDATE outbox SET delivered_at=? WHERE seq=?", [(now, r[0]) for r in rows])
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise
        self.delivered += len(rows)
        if self.on_delivered is not None:
            self.on_delivered([r[2] for r in rows])
        return len(rows)

    def _run(self) -> None:
        db = sqlite3.connect(self.store_path, timeout=10, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA synchronous=NORMAL")
        backoff = self.backoff_initial_s
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping and (self._deadline is None or time.monotonic() > self._deadline):
                    return
                try:
                    while self.drain_once(db):
                        if stopping and time.monotonic() > (self._deadline or 0):
                            return
                    self._came_back()
                    backoff = self.backoff_initial_s
                except _REDIS_DOWN as exc:
                    self._went_away(exc)
                    if stopping:
                        return  # closing while Redis is down: rows stay spooled for the next start
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                except sqlite3.Error as exc:
                    log.error("outbox %s unreadable (%s); retrying", self.store_path, exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                except redis.RedisError as exc:
                    log.error("Redis refused a publish batch (%s); retrying in %.1fs", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                if stopping:
                    return
                self._wake.wait(self.poll_s)
                self._wake.clear()
        finally:
            db.close()

    def _went_away(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._last_down_log = now
            log.error("Redis %s unreachable (%s); events are spooled in %s and delivered in order when it returns",
                      redact_url(self.url), exc, self.store_path)
        elif now - self._last_down_log >= 60.0:
            self._last_down_log = now
            log.error("Redis %s still unreachable after %.0fs; %d events spooled",
                      redact_url(self.url), now - self._down_since, self.pending())

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning("Redis %s is back after %.1fs; spooled events delivered",
                        redact_url(self.url), time.monotonic() - self._down_since)
            self._down_since = None
