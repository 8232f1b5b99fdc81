"""Symbols that move between instances (``AI_ENGINE_SHARD=lease``): Redis leases with fencing tokens.

Leases rather than consumer-group assignment: a symbol's decisions need its feature history in
order, so the unit that moves is a symbol, not a stream entry; a consumer group hands each entry to
whichever consumer reads first. Every instance reads every candle (a consumer group of its own) and
decides the symbols it holds.

Membership is ``<tag>:shard:members``, a sorted set of instance names scored by when each one's
heartbeat expires, on Redis's clock (``TIME`` inside the scripts: no two hosts' clocks are
compared). Every instance computes the same assignment from the live members, rendezvous hashing
with bounded load (a symbol goes to its highest-ranked member still under ceil(symbols/members)),
so one that joins takes a fair share and one that dies hands over its own symbols, moving few
others (of 400 symbols over three members: none of the survivors' when one dies, 3 besides the
joiner's 100 when a fourth joins).

A symbol's lease is the hash ``<tag>:shard:sym:<SYMBOL>``: ``owner`` (this incarnation,
``name/random``), ``token`` (raised by every acquisition: the fencing token), ``expires`` and
``done``, the last candle any owner handled. The heartbeat thread renews members and leases every
TTL/3. A decision commits inside the store's transaction only once ``commit`` has checked, in one
script, that each lease is still this incarnation's with its token and unexpired and that each
candle is after ``done``, and has moved ``done``: a stale owner (paused past its TTL, cut off)
records nothing, no candle is handled twice, and the next owner resumes after ``done``, priming its
features from ``<tag>:shard:hist:<SYMBOL>``, the last ``PRIME_BARS`` candles the owners handled.

Every key is built on ``slot_tag(prefix)``: one slot, so the same scripts run on Redis Cluster.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from ai_engine.exceptions import TransientError
from ai_engine.features import PRIME_BARS
from ai_engine.telemetry.redis_streams import redact_url, redis_client, slot_tag
from ai_engine.types import Candle

__all__ = ["Acquired", "Leases", "assignment"]

log = logging.getLogger("ai_engine.leases")

# a cluster client raises its own errors besides redis-py's (no node reachable, slots moving)
_REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)

_NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

# KEYS: members, then the leases held. ARGV: name, incarnation, ttl, then each lease's token.
# Returns the live members and, per lease, 1 when renewed, 0 when no longer this incarnation's.
_HEARTBEAT = _NOW + """
local exp = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], exp, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = {}
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'owner', 'token', 'expires')
  if h[1] == ARGV[2] and h[2] == ARGV[i + 2] and tonumber(h[3]) > now then
    redis.call('HSET', KEYS[i], 'expires', exp)
    held[i - 1] = 1
  else
    held[i - 1] = 0
  end
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), held}
"""

# KEYS: lease, history. ARGV: incarnation, ttl, bars. Returns false while another incarnation
# holds it, else {token, done ('' when never handled), history newest first up to done}.
_ACQUIRE = _NOW + """
local h = redis.call('HMGET', KEYS[1], 'owner', 'expires', 'done')
if h[1] and h[1] ~= ARGV[1] and tonumber(h[2]) > now then return false end
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires', now + tonumber(ARGV[2]))
if not h[3] then return {token, '', {}} end
return {token, h[3], redis.call('ZREVRANGEBYSCORE', KEYS[2], h[3], '-inf', 'LIMIT', 0, tonumber(ARGV[3]))}
"""

# KEYS: per candle its lease and history. ARGV: incarnation, bars, then per candle token, open
# time, encoded candle. All or nothing: returns the refused candles ("<i> lease" or "<i> done").
_COMMIT = _NOW + """
local done, bad = {}, {}
for i = 1, #KEYS / 2 do
  local k, b = KEYS[2 * i - 1], 3 + (i - 1) * 3
  local h = redis.call('HMGET', k, 'owner', 'token', 'expires', 'done')
  local t = tonumber(ARGV[b + 1])
  if h[1] ~= ARGV[1] or h[2] ~= ARGV[b] or tonumber(h[3]) <= now then
    bad[#bad + 1] = i .. ' lease'
  elseif t <= (done[k] or tonumber(h[4] or '-1')) then
    bad[#bad + 1] = i .. ' done'
  else
    done[k] = t
  end
end
if #bad > 0 then return bad end
for i = 1, #KEYS / 2 do
  local b = 3 + (i - 1) * 3
  redis.call('HSET', KEYS[2 * i - 1], 'done', ARGV[b + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], ARGV[b + 1], ARGV[b + 1])
  redis.call('ZADD', KEYS[2 * i], ARGV[b + 1], ARGV[b + 2])
  redis.call('ZREMRANGEBYRANK', KEYS[2 * i], 0, -(tonumber(ARGV[2]) + 1))
end
return bad
"""

# KEYS: lease. ARGV: incarnation, token. Frees it now (done and token stay).
_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'owner', 'token')
if h[1] == ARGV[1] and h[2] == ARGV[2] then redis.call('HSET', KEYS[1], 'expires', 0) return 1 end
return 0
"""


def _rank(member: str, symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{member}\0{symbol}".encode()).digest()[:8], "big")


def assignment(members: Iterable[str], symbols: Iterable[str]) -> dict[str, str]:
    """symbol -> member: rendezvous hashing with bounded load (each member floor(symbols/members)
    symbols, the remainder one more each), the same on every instance that sees the same members."""
    members, symbols = sorted(set(members)), sorted(set(symbols))
    if not members:
        return {}
    base, extra = divmod(len(symbols), len(members))
    load = dict.fromkeys(members, 0)
    out: dict[str, str] = {}
    for sym in symbols:  # the capacities add up to the symbols: every member ends at its share
        for m in sorted(members, key=lambda m: _rank(m, sym), reverse=True):
            if load[m] < base or (load[m] == base and extra):
                extra -= load[m] == base
                out[sym] = m
                load[m] += 1
                break
    return out


def _encode(c: Candle) -> str:
    return f"{c.open_time},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r},{int(c.synthetic)}"


def _decode(symbol: str, interval: str, raw: bytes) -> Candle:
    t, o, h, lo, c, v, syn = raw.decode().split(",")
    return Candle(symbol, interval, int(t), float(o), float(h), float(lo), float(c), float(v), syn == "1")


@dataclass(frozen=True, slots=True)
class Acquired:
    """A symbol this instance just took.

    Attributes:
        symbol: the symbol.
        token: its fencing token (every acquisition raises it).
        done: the last candle any owner handled; None: never handled.
        history: the candles handled up to ``done`` (at most ``PRIME_BARS``), oldest first.
    """

    symbol: str
    token: int
    done: int | None
    history: tuple[Candle, ...]


class Leases:
    """This instance's symbol leases and its membership; heartbeat on a thread of its own.

    Args:
        url: Redis URL (one server or a cluster node).
        prefix: ``AI_ENGINE_REDIS_PREFIX``; keys go under ``slot_tag(prefix)``.
        instance: this instance's stable name (``AI_ENGINE_INSTANCE``): the rendezvous key.
        symbols: every symbol the instances share.
        interval: candle interval (to rebuild the history's candles).
        ttl_ms: how long a heartbeat and a lease last unrenewed.

    Raises:
        TransientError: Redis unreachable at start.
    """

    def __init__(self, url: str, prefix: str, instance: str, symbols: Sequence[str], interval: str,
                 ttl_ms: float) -> None:
        self.instance = instance
        self.incarnation = f"{instance}/{uuid.uuid4().hex[:8]}"
        self.symbols = tuple(sorted(symbols))
        self.interval = interval
        self.ttl_ms = int(ttl_ms)
        self.tag = slot_tag(prefix)
        self.url = url
        self._members_key = f"{self.tag}:shard:members"
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._done: dict[str, int] = {}  # per symbol held: the last candle committed (Redis's ``done``)
        self._members: tuple[str, ...] = ()
        self._lost: set[str] = set()  # dropped by the heartbeat or a refused commit, not yet forgotten
        self._last_beat = 0.0
        self._stop = threading.Event()
        try:
            self._redis = redis_client(url, socket_timeout=max(1.0, ttl_ms / 1000), socket_connect_timeout=2)
            self._heartbeat, self._acquire, self._commit, self._release = (
                self._redis.register_script(s) for s in (_HEARTBEAT, _ACQUIRE, _COMMIT, _RELEASE))
            self.beat()
        except _REDIS_ERRORS as exc:
            raise TransientError(f"Redis {redact_url(url)} unreachable for the symbol leases: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def _lease_key(self, symbol: str) -> str:
        return f"{self.tag}:shard:sym:{symbol}"

    def _hist_key(self, symbol: str) -> str:
        return f"{self.tag}:shard:hist:{symbol}"

    def _drop(self, symbols: Iterable[str], why: str, tokens: dict[str, int] | None = None) -> None:
        """Forget leases (only those still at ``tokens``' token, when given: one re-taken since stays)."""
        with self._lock:
            gone = sorted(s for s in symbols if s in self._held and (tokens is None or self._held[s] == tokens[s]))
            for s in gone:
                del self._held[s]
                self._done.pop(s, None)
            self._lost.update(gone)
        if gone:
            log.error("lease on %s lost (%s); not deciding %s until the assignment gives %s back",
                      ",".join(gone), why, "it" if len(gone) == 1 else "them", "it" if len(gone) == 1 else "them")

    # -- heartbeat ----------------------------------------------------------------------------
    def beat(self) -> None:
        """Renew membership and every lease held; a lease no longer this incarnation's is dropped."""
        with self._lock:
            held = dict(self._held)
        members, renewed = self._heartbeat(keys=[self._members_key, *map(self._lease_key, held)],
                                           args=[self.instance, self.incarnation, self.ttl_ms, *held.values()])
        self._last_beat = time.monotonic()
        with self._lock:
            self._members = tuple(sorted(m.decode() for m in members))
        self._drop([s for s, ok in zip(held, renewed, strict=True) if not ok], "expired or taken by another instance",
                   held)

    def _run(self) -> None:
        down = False
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.beat()
            except _REDIS_ERRORS as exc:
                if not down:
                    log.error("lease heartbeat to Redis %s failed (%s); retrying", redact_url(self.url), exc)
                down = True
                if time.monotonic() - self._last_beat > self.ttl_ms / 1000:
                    with self._lock:
                        held = list(self._held)
                    self._drop(held, "no heartbeat within the TTL")
                continue
            if down:
                log.warning("lease heartbeat to Redis %s back", redact_url(self.url))
                down = False

    # -- ownership (the deciding thread) --------------------------------------------------------
    @property
    def held(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._held))

    def rebalance(self) -> tuple[list[str], list[Acquired]]:
        """Release what the assignment now gives to others, take what it gives this instance and
        is free. Returns (symbols no longer held, whatever the reason; symbols acquired)."""
        with self._lock:
            members, held = self._members, dict(self._held)
            dropped, self._lost = sorted(self._lost), set()
        plan = assignment(members, self.symbols)
        mine = {s for s, m in plan.items() if m == self.instance}
        acquired: list[Acquired] = []
        try:
            for sym in sorted(set(held) - mine):
                self._release(keys=[self._lease_key(sym)], args=[self.incarnation, held[sym]])
                with self._lock:
                    self._held.pop(sym, None)
                    self._done.pop(sym, None)
                dropped.append(sym)
                log.info("released %s: the assignment over %s gives it to %s", sym, ",".join(members), plan.get(sym))
            for sym in sorted(mine - set(held)):
                got = self._acquire(keys=[self._lease_key(sym), self._hist_key(sym)],
                                    args=[self.incarnation, self.ttl_ms, PRIME_BARS])
                if got is None:
                    continue  # its previous owner holds it until it releases it or its lease expires
                token, done, hist = int(got[0]), got[1].decode() if got[1] else "", got[2]
                with self._lock:
                    self._held[sym], self._done[sym] = token, int(done) if done else -1
                history = tuple(_decode(sym, self.interval, raw) for raw in reversed(hist))
                acquired.append(Acquired(sym, token, int(done) if done else None, history))
                log.warning("took %s (token %d), resuming after %s with %d candles of stored history (%s)", sym, token,
                            done or "its first candle", len(history), self._hist_key(sym))
        except _REDIS_ERRORS as exc:
            log.error("rebalancing the symbol leases failed (%s); retrying on the next candle", exc)
        return dropped, acquired

    def commit(self, candles: Sequence[Candle]) -> set[str]:
        """Mark ``candles`` handled, fenced: all or nothing; returns the symbols refused (a lease
        not held, expired or taken, or a candle at or before ``done``: someone handled it), which
        are dropped. Redis unreachable refuses them all."""
        with self._lock:
            held = dict(self._held)
        refused = {c.symbol for c in candles if c.symbol not in held}
        entries = [c for c in candles if c.symbol in held]
        if refused or not entries:
            return refused
        keys: list[str] = []
        args: list[object] = [self.incarnation, PRIME_BARS]
        for c in entries:
            keys += [self._lease_key(c.symbol), self._hist_key(c.symbol)]
            args += [held[c.symbol], c.open_time, _encode(c)]
        try:
            bad = [b.decode().split() for b in self._commit(keys=keys, args=args)]
        except _REDIS_ERRORS as exc:
            refused = {c.symbol for c in entries}
            self._drop(refused, f"Redis unreachable to fence the commit: {exc}")
            return refused
        refused = {entries[int(i) - 1].symbol for i, _ in bad}
        if bad:
            why = ", ".join(f"{entries[int(i) - 1].symbol} {entries[int(i) - 1].open_time} {what}" for i, what in bad)
            self._drop(refused, f"commit refused: {why}")
            return refused
        with self._lock:
            for c in entries:
                if c.symbol in self._done:
                    self._done[c.symbol] = max(self._done[c.symbol], c.open_time)
        return set()

    def handle(self, candles: Sequence[Candle]) -> None:
        """Commit the candles of held symbols not committed yet (warm-up and rejected ones: the
        decided ones went through the store's fence), so ``done`` and the history cover them."""
        with self._lock:
            rest = [c for c in candles if c.open_time > self._done.get(c.symbol, c.open_time)]
        while rest and (refused := self.commit(rest)):
            rest = [c for c in rest if c.symbol not in refused]

    def snapshot(self) -> dict:
        """What ``/health`` and ``status`` show: the symbols held and every member's share."""
        with self._lock:
            members, held = self._members, dict(self._held)
        plan = assignment(members, self.symbols)
        return {"mode": "lease", "instance": self.instance, "incarnation": self.incarnation, "owned": sorted(held),
                "tokens": held, "members": list(members), "ttl_ms": self.ttl_ms,
                "assignment": {m: sorted(s for s, o in plan.items() if o == m) for m in members}}

    def close(self) -> None:
        """Stop the heartbeat, free every lease and leave, so the others take over at once."""
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            held, self._held, self._done = dict(self._held), {}, {}
        try:
            for sym, token in held.items():
                self._release(keys=[self._lease_key(sym)], args=[self.incarnation, token])
            self._redis.zrem(self._members_key, self.instance)
        except _REDIS_ERRORS as exc:
            log.error("could not free the leases at stop (%s); they expire after %d ms", exc, self.ttl_ms)
        self._redis.close()
