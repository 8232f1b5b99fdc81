"""SQLite telemetry store (WAL): the full record of every decision, for analysis and audit.

Typed rows, not reprs (failure mode 1): one ``decisions`` row per decision, one ``predictions``
row per model per decision (shadow ones included), the published ``intents``, the ``candles``
the decisions were made on (so outcomes are scored against the market, failure mode 16) and the
applied ``configs``. Ids are deterministic, inserts are ``OR IGNORE``: a replay never duplicates.
Nothing here is ever trimmed by the bus (failure mode 15); ``prune`` is the only deletion, and it
removes delivered outbox rows, plus old decisions only when the operator asks for a retention.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ai_engine.data.validate import iso_utc
from ai_engine.exceptions import DataError, TransientError
from ai_engine.types import Candle, DecisionRecord, ModelResult

__all__ = ["TelemetryStore", "SCHEMA_VERSION", "TELEMETRY_UNWRITABLE"]

log = logging.getLogger("ai_engine.telemetry")

SCHEMA_VERSION = 3

# The blocked reason of an intent held back because the store could not keep its record.
TELEMETRY_UNWRITABLE = "telemetry_unwritable"

# Keyed by (model, time) first: new rows land at the end of each model's range instead of at
# random places in the table (the event id is a hash), so a batch dirties a few pages, and the
# analysis reads a model's window as one range of the key. Version 1 keyed by (event_id, model)
# and cost replay twice the writer time (docs/performance.md).
_PREDICTIONS = """CREATE TABLE IF NOT EXISTS {name} (
    event_id TEXT NOT NULL, model TEXT NOT NULL, symbol TEXT NOT NULL, candle_open_time INTEGER NOT NULL,
    role TEXT NOT NULL, status TEXT NOT NULL, action TEXT, confidence REAL, prob REAL, logit REAL,
    p_sell REAL, p_hold REAL, p_buy REAL, weight REAL, version TEXT, sha256 TEXT, latency_ms REAL, reason TEXT,
    PRIMARY KEY (model, candle_open_time, event_id)
) WITHOUT ROWID;
"""

# Every column the analysis reads from a decision, in its order (time, symbol, interval): the
# analysis reads the index alone, never the payload (about 1.6 kB a decision), and needs no sort.
# On 2.5M decisions the read took 2.2 s of CPU instead of 6.3 s through a time-only index.
_DECISIONS_TIME = """CREATE INDEX IF NOT EXISTS decisions_time ON decisions (candle_open_time, symbol, interval,
    action, confidence, consensus_count, actionable, boosted, synthetic, config_id, blocked_reason);
"""
_V3 = "DROP INDEX IF EXISTS decisions_time;\n" + _DECISIONS_TIME

# Upgrades of a store written by an earlier version, to SCHEMA_VERSION; rows are kept.
_MIGRATIONS = {
    1: _PREDICTIONS.format(name="predictions_v2") + """
INSERT OR IGNORE INTO predictions_v2 SELECT * FROM predictions;
DROP TABLE predictions;
ALTER TABLE predictions_v2 RENAME TO predictions;
""" + _V3,
    2: _V3,
}
# Versions a read-only reader (the analysis) can read as they are: the columns are the same.
_READABLE = (1, 2, SCHEMA_VERSION)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, open_time INTEGER NOT NULL,
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    synthetic INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, interval, open_time)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    event_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, interval TEXT NOT NULL,
    candle_open_time INTEGER NOT NULL, decided_at INTEGER NOT NULL,
    action TEXT NOT NULL, confidence REAL NOT NULL, consensus_count INTEGER NOT NULL,
    total_models INTEGER NOT NULL, actionable INTEGER NOT NULL, boosted INTEGER NOT NULL,
    published INTEGER NOT NULL, blocked_reason TEXT, entry_price REAL NOT NULL,
    config_id TEXT NOT NULL, decision_latency_ms REAL, synthetic INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
{decisions_time}CREATE INDEX IF NOT EXISTS decisions_symbol_time ON decisions (symbol, candle_open_time);
{predictions}CREATE TABLE IF NOT EXISTS intents (
    event_id TEXT PRIMARY KEY, decision_event_id TEXT NOT NULL, symbol TEXT NOT NULL,
    candle_open_time INTEGER NOT NULL, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, event_id TEXT NOT NULL,
    event_type TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT NULL,
    delivered_at INTEGER, UNIQUE (stream, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (delivered_at, seq);
CREATE TABLE IF NOT EXISTS configs (
    config_id TEXT NOT NULL, applied_at INTEGER NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (config_id, applied_at)
);
""".replace("{predictions}", _PREDICTIONS.format(name="predictions")).replace("{decisions_time}", _DECISIONS_TIME)


def _prediction_row(rec: DecisionRecord, r: ModelResult) -> tuple:
    p = r.prediction  # enum members bind as their text (StrEnum), without the slow ``.value``
    return (
        rec.event_id, r.model, rec.symbol, rec.candle_open_time, r.role, r.status,
        p.action if p else None, p.confidence if p else None, p.prob if p else None,
        p.logit if p else None, *(p.probs if p else (None, None, None)),
        r.weight, r.version, r.sha256, r.latency_ms, r.reason,
    )


_DECISIONS_INSERT = "INSERT OR IGNORE INTO decisions"
_SYMBOL, _OPEN_TIME, _BLOCKED = 1, 3, 12  # places in a decisions row, as ``_decision_ops`` builds it


def _decisions_in(ops: Sequence[tuple[str, Sequence]]) -> int:
    return sum(len(rows) for sql, rows in ops if sql.startswith(_DECISIONS_INSERT))


class TelemetryStore:
    """Append-only decision store. Thread-safe; writes that fail are kept and retried in order.

    What is kept for retry is bounded, so a store that stays unwritable (disk full, locked, read
    only) never grows the process without limit, and nothing leaves it unsaid. Once the rows kept
    reach ``max_pending_rows`` the store is ``saturated``: the engine blocks every intent with
    ``telemetry_unwritable`` (an intent whose record cannot be kept never goes out), and those
    blocked decisions are still kept until the buffer holds twice the bound, so the store shows
    them, blocked, once it accepts writes again. Past that a decision is not kept: it is counted
    per symbol with its first and last candle (``unkept``, ``unkept_decisions``), logged and shown
    on ``/health``; ``replay --resume`` or the live backfill decides it again (event ids are
    deterministic). The kept writes go in, in order, with the first write that succeeds.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False, outbox: bool = False,
                 max_pending_rows: int = 200_000) -> None:
        self.path = Path(path)
        self.uri: str | None = None  # how a read-only store was opened, for a second reader of the same file
        self.outbox = outbox
        self.max_pending_rows = max_pending_rows
        self.unkept_decisions = 0  # decisions never kept, since the store opened
        self.unkept: dict[str, list[int]] = {}  # since the last write that succeeded: symbol -> [count, first, last]
        self.last_error: str | None = None  # why the last write failed; None once one succeeds
        self._failing_since: float | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[str, Sequence]] = []
        self._pending_rows = 0
        # checks, inside each decision write's transaction, that this instance still holds the
        # decided candles' symbols (``leases.Leases.commit``); returns those it does not
        self.fence: Callable[[Sequence[Candle]], set[str]] | None = None
        try:
            if readonly:
                if not self.path.is_file():
                    raise DataError(f"telemetry store {self.path} does not exist")
                self._db = self._open_readonly()
                # Readers scan millions of rows and join on the decision key: a larger page cache
                # keeps the b-tree pages they revisit (analysis of 10M predictions, issue 3).
                self._db.execute("PRAGMA cache_size=-262144")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate(readonly)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"telemetry store {self.path} cannot be opened: {exc}") from None

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection. A WAL store is read through its ``-shm`` file, which a reader
        must be able to create or write; an operator with read access only can still read a store
        that holds no ``-wal`` (the service stopped cleanly), opened as immutable."""
        self.uri = f"file:{self.path}?mode=ro"
        db = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            db.close()
            if "readonly" not in str(exc) and "unable to open" not in str(exc):
                raise
            if Path(f"{self.path}-wal").exists():
                raise DataError(f"telemetry store {self.path} is being written (it has a -wal file) and this user "
                                f"cannot write {self.path.parent} or {self.path.name}-shm, which reading it needs; "
                                "run as the service's group with write access to its directory") from None
        self.uri = f"file:{self.path}?mode=ro&immutable=1"
        return sqlite3.connect(self.uri, uri=True, check_same_thread=False)

    def _migrate(self, readonly: bool) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION or (readonly and version in _READABLE):
            return
        if readonly or (version != 0 and version not in _MIGRATIONS):
            raise DataError(f"telemetry store {self.path} has schema version {version}, expected {SCHEMA_VERSION}")
        if version == 0:
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
            return
        n_dec = self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        what = f"{n_dec} decisions indexed for the analysis"
        if version == 1:
            rows = self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
            what = f"{rows} prediction rows re-keyed by model and time, {what}"
        log.warning("telemetry store %s: upgrading schema %d to %d (%s; once)", self.path, version, SCHEMA_VERSION, what)
        self._db.executescript(f"BEGIN IMMEDIATE;{_MIGRATIONS[version]}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    # -- writes -------------------------------------------------------------------------------
    def _write(self, ops: list[tuple[str, Sequence]], fence: Callable[[], set[str]] | None = None) -> set[str]:
        """Run ``ops`` (sql, rows) in one transaction, after any earlier writes that failed. With a
        ``fence``, it runs last before the commit (or before keeping ``ops`` when the write fails):
        the symbols it refuses are returned and nothing is written or kept."""
        with self._lock:
            batch = self._pending + ops
            fenced = fence is None
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, rows in batch:
                    self._db.executemany(sql, rows)
                if not fenced:
                    fenced = True
                    if refused := fence():
                        self._db.execute("ROLLBACK")
                        return refused
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if not fenced and (refused := fence()):
                    return refused
                self._keep(ops, str(exc))
                raise TransientError(f"telemetry store {self.path}: {exc}") from None
            if self._failing_since is not None:
                self._recovered(batch)
            self._pending, self._pending_rows = [], 0
            return set()

    def _keep(self, ops: list[tuple[str, Sequence]], error: str) -> None:
        """Keep a failed write for retry while the buffer has room (twice the bound: the second
        half holds the blocked decisions); past it count its decisions per symbol."""
        was_saturated = self.saturated
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self.last_error = error
        rows = sum(len(r) for _, r in ops)
        if self._pending_rows + rows <= 2 * self.max_pending_rows:
            self._pending += ops
            self._pending_rows += rows
            log.error("telemetry write to %s failed (%s); %d rows kept for retry (bound %d)", self.path, error,
                      self._pending_rows, self.max_pending_rows)
        else:
            lost = [r for sql, rs in ops if sql.startswith(_DECISIONS_INSERT) for r in rs]
            for r in lost:
                entry = self.unkept.setdefault(r[_SYMBOL], [0, r[_OPEN_TIME], r[_OPEN_TIME]])
                entry[0] += 1
                entry[1], entry[2] = min(entry[1], r[_OPEN_TIME]), max(entry[2], r[_OPEN_TIME])
            self.unkept_decisions += len(lost)
            log.error("telemetry write to %s failed (%s); retry buffer full (%d rows): %d decisions not kept (%d "
                      "since it last accepted a write); `replay --resume` or the live backfill decides them again",
                      self.path, error, self._pending_rows, len(lost), sum(e[0] for e in self.unkept.values()))
        if self.saturated and not was_saturated:
            log.error("telemetry store %s unwritable (%s): %d rows waiting reach the bound of %d; every intent is "
                      "blocked (%s) until it accepts writes", self.path, error, self._pending_rows,
                      self.max_pending_rows, TELEMETRY_UNWRITABLE)

    def _recovered(self, written: list[tuple[str, Sequence]]) -> None:
        blocked = sum(1 for sql, rows in written if sql.startswith(_DECISIONS_INSERT) for r in rows
                      if r[_BLOCKED] is not None and r[_BLOCKED].startswith(TELEMETRY_UNWRITABLE))
        log.warning("telemetry store %s accepts writes again after %.1fs: wrote the %d rows kept (%d decisions "
                    "blocked as %s)", self.path, time.monotonic() - self._failing_since, sum(len(r) for _, r in written),
                    blocked, TELEMETRY_UNWRITABLE)
        if self.unkept:
            log.error("telemetry store %s: %d decisions were not kept while it could not be written: %s", self.path,
                      sum(e[0] for e in self.unkept.values()), ", ".join(
                          f"{sym} {n} ({iso_utc(first)} .. {iso_utc(last)})" for sym, (n, first, last) in
                          sorted(self.unkept.items())))
        self.unkept, self.last_error, self._failing_since = {}, None, None

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    @property
    def saturated(self) -> bool:
        """The rows waiting for an unwritable store reached ``max_pending_rows``: block intents."""
        return self._pending_rows >= self.max_pending_rows

    def health(self) -> dict:
        """The buffer's state for ``/health``: ok, degraded (writes waiting) or unhealthy (saturated)."""
        status = "unhealthy" if self.saturated else "degraded" if self._pending else "ok"
        return {"status": status, "pending_writes": len(self._pending), "pending_rows": self._pending_rows,
                "max_pending_rows": self.max_pending_rows, "unkept_decisions": self.unkept_decisions,
                "error": self.last_error,
                "reason": f"{TELEMETRY_UNWRITABLE}: {self.last_error}" if self.saturated else None}

    def flush(self) -> int:
        """Retry the writes kept after a failure now; returns the batches still pending."""
        if self._pending:
            with contextlib.suppress(TransientError):
                self._write([])
        return len(self._pending)

    def prune(self, delivered_before_ms: int, *, decisions_before_ms: int | None = None) -> dict[str, int]:
        """Bound the store's growth; returns rows deleted per table.

        Deletes outbox rows delivered before ``delivered_before_ms`` (the bus has them; the decision
        rows stay). Only when ``decisions_before_ms`` is given are decisions, predictions, intents
        and candles with an open time before it deleted: keep that at least the observation window
        the analysis needs (failure mode 15). Freed pages are reused, so the file stops growing.
        """
        ops = [("outbox", "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", delivered_before_ms)]
        if decisions_before_ms is not None:
            ops += [
                ("predictions", "DELETE FROM predictions WHERE candle_open_time < ?", decisions_before_ms),
                ("intents", "DELETE FROM intents WHERE candle_open_time < ?", decisions_before_ms),
                ("decisions", "DELETE FROM decisions WHERE candle_open_time < ?", decisions_before_ms),
                ("candles", "DELETE FROM candles WHERE open_time < ?", decisions_before_ms),
            ]
        deleted: dict[str, int] = {}
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for table, sql, cutoff in ops:
                    deleted[table] = self._db.execute(sql, (int(cutoff),)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise TransientError(f"telemetry store {self.path}: prune failed: {exc}") from None
        log.info("pruned %s from %s", ", ".join(f"{n} {t}" for t, n in deleted.items()), self.path)
        return deleted

    def record_candles(self, candles: Iterable[Candle]) -> None:
        rows = [
            (c.symbol, c.interval, c.open_time, c.open, c.high, c.low, c.close, c.volume, int(c.synthetic))
            for c in candles
        ]
        self._write([("INSERT OR IGNORE INTO candles VALUES (?,?,?,?,?,?,?,?,?)", rows)])

    def record_decisions(self, records: Sequence[DecisionRecord], candles: Iterable[Candle] = ()) -> set[str]:
        """Record decisions with their per-model rows, intents and the candles they were made on.
        With a ``fence``, the decisions of the symbols it refuses are not recorded (logged); returns
        those symbols (their intents were never published)."""
        candles = list(candles)
        fenced: set[str] = set()
        while True:
            fence = None if self.fence is None else lambda c=candles: self.fence(c)
            refused = self._write(self._decision_ops(records, candles), fence)
            if not refused:
                return fenced
            fenced |= refused
            log.error("telemetry store %s: %d decisions of %s not recorded: this instance no longer holds them (fenced)",
                      self.path, sum(r.symbol in refused for r in records), ",".join(sorted(refused)))
            records = [r for r in records if r.symbol not in refused]
            candles = [c for c in candles if c.symbol not in refused]
            if not records:
                return fenced

    def _decision_ops(self, records: Sequence[DecisionRecord], candles: Sequence[Candle]) -> list[tuple[str, Sequence]]:
        cand = [
            (c.symbol, c.interval, c.open_time, c.open, c.high, c.low, c.close, c.volume, int(c.synthetic))
            for c in candles
        ]
        dec, pred, intents, out = [], [], [], []
        now = int(time.time() * 1000)
        for rec in records:
            d = rec.decision
            dec.append((
                rec.event_id, rec.symbol, rec.interval, rec.candle_open_time, rec.decided_at,
                d.action.value, d.confidence, d.consensus_count, d.total_models, int(d.actionable),
                int(d.boosted), int(rec.published), rec.blocked_reason, rec.entry_price, rec.config_id,
                rec.decision_latency_ms, int(rec.synthetic), json.dumps(doc := rec.to_json(), separators=(",", ":")),
            ))
            pred.extend(_prediction_row(rec, r) for r in d.results)
            if self.outbox:
                out.append(("ai.decision", rec.event_id, "ai.decision", dec[-1][-1], now))
            if rec.published:
                payload = json.dumps(rec.intent_payload(doc["model_breakdown"]), separators=(",", ":"))
                intents.append((rec.intent_event_id, rec.event_id, rec.symbol, rec.candle_open_time, payload))
                if self.outbox:
                    out.append(("trade.intent", rec.intent_event_id, "trade.intent", payload, now))
        return [
            ("INSERT OR IGNORE INTO candles VALUES (?,?,?,?,?,?,?,?,?)", cand),
            ("INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", dec),
            ("INSERT OR IGNORE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", pred),
            ("INSERT OR IGNORE INTO intents VALUES (?,?,?,?,?)", intents),
            ("INSERT OR IGNORE INTO outbox (stream, event_id, event_type, payload, created_at) VALUES (?,?,?,?,?)", out),
        ]

    def update_prediction(self, record: DecisionRecord, result: ModelResult) -> None:
        """Join a late (shadow) result to an already recorded decision."""
        self._write([("INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      [_prediction_row(record, result)])])

    def record_config(self, config_id: str, reason: str, payload: dict) -> None:
        self._write([("INSERT OR IGNORE INTO configs VALUES (?,?,?,?)",
                      [(config_id, int(time.time() * 1000), reason, json.dumps(payload, sort_keys=True, default=str))])])

    def record_event(self, stream: str, event_id: str, event_type: str, payload: dict) -> None:
        """Spool one event that is not a decision (the ``lifecycle`` stream) in the outbox: the
        publisher delivers it with the same ordering and exactly-once rules."""
        self._write([("INSERT OR IGNORE INTO outbox (stream, event_id, event_type, payload, created_at) "
                      "VALUES (?,?,?,?,?)", [(stream, event_id, event_type, json.dumps(payload, sort_keys=True,
                                              separators=(",", ":"), default=str), int(time.time() * 1000))])])

    # -- reads --------------------------------------------------------------------------------
    def has_decision(self, event_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM decisions WHERE event_id=?", (event_id,)).fetchone() is not None

    def last_decision_time(self, symbol: str, interval: str) -> int | None:
        row = self._db.execute(
            "SELECT MAX(candle_open_time) FROM decisions WHERE symbol=? AND interval=?", (symbol, interval)
        ).fetchone()
        return row[0]

    def count(self, table: str) -> int:
        if table not in ("candles", "decisions", "predictions", "intents", "configs", "outbox"):
            raise ValueError(f"unknown table {table!r}")
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def decisions_json(self, limit: int | None = None) -> list[dict]:
        sql = "SELECT payload FROM decisions ORDER BY candle_open_time, symbol"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(p) for (p,) in self._db.execute(sql)]

    def close(self) -> None:
        """Write what is still pending, then close; what cannot be written is reported, never silent."""
        if self.flush():
            lost = _decisions_in(self._pending)
            log.error("telemetry store %s: %d decisions in %d pending batches could not be written before close; "
                      "`replay --resume` (or the live backfill) decides them again", self.path, lost, len(self._pending))
        with self._lock:
            self._db.close()
