"""Every decision of the window and every model's prediction aligned to it, as numpy columns:
the input of the gates (one model's rows), the counterfactual re-vote and the money view.

Each table is read once, without a join (the predictions' key is (model, time, event id)), and
aligned to the decisions by (time, symbol); a store holding one symbol at two intervals falls
back to matching on the event id.

The bulk reads go through ADBC's SQLite driver (``BulkReader``), which fills Arrow columns in C,
and text columns become small integer codes in Arrow (``pyarrow.compute.index_in``), so 10M
predictions create no Python object per value and SQLite evaluates no ``CASE`` per row. Reads
run on a few threads, each with its own ADBC connection (the driver releases the GIL while it
steps). A query the driver cannot type (a hand-edited column of mixed types) is read again
through ``sqlite3``, with the same codes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ai_engine.analysis.revote import Rule
from ai_engine.enums import MODEL_NAMES
from ai_engine.types import LATE_JOINED

__all__ = ["BulkReader", "ConfigInfo", "Decisions", "Predictions", "DecisionTable", "read_decisions", "read_predictions",
           "align", "config_infos", "build_table", "text", "STATUS_CODES", "ROLE_CODES", "ACTIONS", "READ_THREADS",
           "UNSAMPLED"]

ROLE_CODES = ("voter", "shadow", "disabled")
STATUS_CODES = ("ok", "late", "error", "inactive", "disabled", "unsampled")  # code = index; anything else = len
UNSAMPLED = STATUS_CODES.index("unsampled")  # a budgeted shadow not sampled for the decision: it saw nothing
ACTIONS = ("SELL", "HOLD", "BUY")  # CLASS_ORDER
_CHUNK = 65_536
_NUL = "\x00"  # what ``text`` turns NULL into, so the driver types every such column as text
_SHIFT = 65_536  # key = rank of the time * _SHIFT + symbol code + 1 (0: a symbol without candles)
# threads for the bulk reads: the cores this process may use, at most 4
READ_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def text(column: str) -> str:
    """A text column as the reader codes it: always a string (a number edited in becomes its text,
    an unknown value), NULL as ``_NUL``."""
    return f"COALESCE(CAST({column} AS TEXT), char(0))"


def _codes_of(values: Sequence, vocab: tuple[str, ...]) -> np.ndarray:
    """``sqlite3`` fallback: index in ``vocab``, -1 for NULL, len(vocab) for anything else."""
    index = {v: i for i, v in enumerate(vocab)} | {_NUL: -1, None: -1}
    unknown = len(vocab)
    return np.fromiter((index.get(v, unknown) for v in values), dtype=np.int32, count=len(values))


class BulkReader:
    """Query results as numpy columns: numbers as int64 (integers, no NULL) or float64 (NULL is
    NaN), ``text`` columns as int32 codes into a vocabulary (-1 NULL, len(vocab) unknown).

    ADBC when it can open the store, one connection per thread; else, or for a query the driver
    cannot type, the caller's ``sqlite3`` connection (one thread at a time)."""

    def __init__(self, db: sqlite3.Connection, uri: str | None) -> None:
        self.db = db
        self._uri = uri
        self._local = threading.local()
        self._conns: list = []
        self._lock = threading.Lock()
        self._adbc_ok = uri is not None
        if self._adbc_ok:
            try:
                import adbc_driver_sqlite.dbapi  # noqa: F401
                import pyarrow.compute  # noqa: F401
            except ImportError:  # no driver: sqlite3 reads
                self._adbc_ok = False
            else:
                self._adbc_ok = self._connection() is not None

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None and self._adbc_ok:
            import adbc_driver_sqlite.dbapi as adbc
            from adbc_driver_manager import Error as AdbcError

            try:
                conn = adbc.connect(self._uri)
                cur = conn.cursor()
                cur.execute("PRAGMA busy_timeout=5000")  # as the store's own connection waits for a writer
                cur.close()
            except AdbcError:  # it cannot open the file: sqlite3 reads
                self._adbc_ok = False
                return None
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def columns(self, sql: str, args: Sequence, kinds: Sequence[tuple[str, ...] | None]) -> list[np.ndarray]:
        """The result's columns; ``kinds[i]`` is None for a number, a vocabulary for a ``text`` column."""
        conn = self._connection()
        if conn is not None:
            got = self._arrow(conn, sql, args, kinds)
            if got is not None:
                return got
        with self._lock:
            return self._sqlite(sql, args, kinds)

    @staticmethod
    def _arrow(conn, sql: str, args: Sequence, kinds) -> list[np.ndarray] | None:
        import pyarrow as pa
        import pyarrow.compute as pc
        from adbc_driver_manager import Error as AdbcError

        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(args))
            table = cur.fetch_arrow_table()
        except (AdbcError, OSError, pa.ArrowException):  # e.g. "Type mismatch in column 3"
            return None
        finally:
            cur.close()
        if table.num_columns != len(kinds):
            return None
        out = []
        for col, vocab in zip(table.columns, kinds, strict=True):
            typ = str(col.type)
            if vocab is None:
                if typ not in _NUMERIC:
                    return None
                out.append(col.to_numpy(zero_copy_only=False) if table.num_rows else np.empty(0))
            elif typ in ("string", "large_string"):
                idx = pc.index_in(col, value_set=pa.array((_NUL, *vocab), type=col.type))
                out.append(pc.fill_null(idx, len(vocab) + 1).to_numpy().astype(np.int32) - 1
                           if table.num_rows else np.empty(0, dtype=np.int32))
            elif typ == "null":  # an empty result
                out.append(np.full(table.num_rows, -1, dtype=np.int32))
            else:
                return None
        return out

    def _sqlite(self, sql: str, args: Sequence, kinds) -> list[np.ndarray]:
        parts: list[list[np.ndarray]] = [[] for _ in kinds]
        cur = self.db.execute(sql, list(args))
        while chunk := cur.fetchmany(_CHUNK):
            for part, vocab, values in zip(parts, kinds, zip(*chunk, strict=True), strict=True):
                part.append(np.array(values, dtype=np.float64) if vocab is None else _codes_of(values, vocab))
        return [np.concatenate(p) if p else np.empty(0, dtype=np.float64 if v is None else np.int32)
                for p, v in zip(parts, kinds, strict=True)]

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._adbc_ok = False


_NUMERIC = ("int64", "double", "null")


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """One applied configuration: roles and weights per model (in the engine's order) and its rule."""

    config_id: str
    models: tuple[str, ...]
    roles: tuple[str, ...]
    weights: tuple[float | None, ...]  # None: the payload does not say
    versions: tuple[str | None, ...]
    sha256: tuple[str | None, ...]
    rule: Rule
    kinds: tuple[str, ...] = ()  # each model key's model (an extra shadow ``patchtst_r2`` is a ``patchtst``)


def config_infos(db: sqlite3.Connection, config_ids: list[str]) -> tuple[tuple[str, ...], tuple[ConfigInfo, ...]]:
    """The models of every configuration, in the engine's order (the order it adds votes in), and
    each configuration's roles, weights and ensemble rule."""
    payloads: dict[str, dict] = {}
    for cid, payload in db.execute("SELECT config_id, payload FROM configs ORDER BY applied_at"):
        try:
            doc = json.loads(payload)
        except ValueError:
            continue
        if isinstance(doc, dict):
            payloads[cid] = doc
    seen: set[str] = set()
    for cid in config_ids:
        seen.update((payloads.get(cid) or {}).get("models", {}))
    order = tuple(sorted(seen, key=lambda m: (MODEL_NAMES.index(m) if m in MODEL_NAMES else len(MODEL_NAMES), m)))
    infos = []
    for cid in config_ids:
        p = payloads.get(cid) or {}
        ms = p.get("models", {})
        entry = [ms.get(m) or {} for m in order]
        infos.append(ConfigInfo(
            cid, order,
            tuple(str(e.get("role", "disabled")) if e.get("status", "active") == "active" else "inactive"
                  for e in entry),
            tuple(float(e["weight"]) if isinstance(e.get("weight"), int | float) else None for e in entry),
            tuple(e.get("version") for e in entry), tuple(e.get("sha256") for e in entry),
            Rule(int(p.get("min_consensus", 3)), float(p.get("confidence_boost", 1.1)),
                 float(p.get("confidence_cap", 0.95)), len(ms) - sum("kind" in e for e in ms.values()) or 4),
            tuple(str(e.get("kind", m)) for m, e in zip(order, entry, strict=True)),
        ))
    return order, tuple(infos)


@dataclass(frozen=True, slots=True)
class Decisions:
    """The window's decisions in (time, symbol) order; ``key`` aligns the predictions to them."""

    key: np.ndarray  # int64 alignment key (``_keys``), increasing when ``unique``
    times: np.ndarray  # int64 distinct decision times, sorted
    unique: bool  # one decision per (time, symbol): key alignment is exact
    t: np.ndarray
    series: np.ndarray  # int16 index into the snapshot's series, -1 unknown
    action: np.ndarray  # int8 CLASS_ORDER, -2 unknown string
    confidence: np.ndarray
    consensus: np.ndarray  # int16
    actionable: np.ndarray
    boosted: np.ndarray
    blocked: np.ndarray  # an actionable decision the governor stopped (reason recorded)
    synthetic: np.ndarray
    config: np.ndarray  # int16 index into config_ids, -1 unknown
    event_ids: dict[str, int] | None  # only when not unique


def _keys(times: np.ndarray, t: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """Alignment key of (time, symbol code): the time's rank among the decisions' times, so the key
    stays exact (below 2**53) however far apart the times are; -1 for a time no decision has."""
    r = np.searchsorted(times, t)
    ok = r < times.size
    ok[ok] = times[r[ok]] == t[ok]
    return np.where(ok, r * _SHIFT + sym + 1, -1)


def _known(codes: np.ndarray, vocab: Sequence) -> np.ndarray:
    """Codes with NULL and unknown values both -1."""
    return np.where(codes < len(vocab), codes, -1)


def _action(codes: np.ndarray) -> np.ndarray:
    """CLASS_ORDER index, -1 NULL, -2 an unknown string."""
    return np.where(codes == len(ACTIONS), -2, codes).astype(np.int8)


_WINDOW = "candle_open_time > ? AND candle_open_time <= ?"


def read_decisions(bulk: BulkReader, start_ms: int, end_ms: int, series_keys: list[tuple[str, str]],
                   symbols: list[str], config_ids: list[str]) -> Decisions:
    intervals = tuple(sorted({i for _, i in series_keys}))
    # small integer fields packed into one, exact as the float64 it may be fetched as
    packed = ("MIN(MAX(consensus_count, 0), 255) + 256 * (actionable != 0) + 512 * (boosted != 0) "
              "+ 1024 * (blocked_reason IS NOT NULL) + 2048 * (synthetic != 0)")
    order = "ORDER BY candle_open_time, symbol, interval"
    t, sym, iv, act, cfg, bits, conf = bulk.columns(
        f"SELECT candle_open_time, {text('symbol')}, {text('interval')}, {text('action')}, {text('config_id')}, "
        f"{packed}, confidence FROM decisions WHERE {_WINDOW} {order}",
        [start_ms, end_ms], (None, tuple(symbols), intervals, ACTIONS, tuple(config_ids), None, None))
    t = t.astype(np.int64)
    sym = _known(sym, symbols)
    lut = np.full((len(symbols) + 1, len(intervals) + 1), -1, dtype=np.int16)  # [-1] row and column: unknown
    for k, (s, i) in enumerate(series_keys):
        lut[symbols.index(s), intervals.index(i)] = k
    series = lut[sym, _known(iv, intervals)]
    bits = bits.astype(np.int64)
    times = np.unique(t)
    key = _keys(times, t, sym)
    unique = key.size < 2 or bool(np.all(np.diff(key) > 0))
    ids = None
    if not unique:
        ids = {e: i for i, (e,) in enumerate(bulk.db.execute(
            f"SELECT event_id FROM decisions WHERE {_WINDOW} {order}", (start_ms, end_ms)))}
    return Decisions(
        key=key, times=times, unique=unique, t=t, series=series, action=_action(act),
        confidence=conf.astype(np.float64), consensus=(bits & 255).astype(np.int16), actionable=(bits >> 8) & 1 == 1,
        boosted=(bits >> 9) & 1 == 1, blocked=(bits >> 10) & 1 == 1, synthetic=(bits >> 11) & 1 == 1,
        config=_known(cfg, config_ids).astype(np.int16), event_ids=ids,
    )


@dataclass(frozen=True, slots=True)
class Predictions:
    """One model's prediction rows in the window (in (time, event id) order) and the decision each
    belongs to (``pos``, set by ``align``)."""

    model: str
    t: np.ndarray  # int64
    symbol: np.ndarray  # int32 index into the store's symbols, -1 unknown
    status: np.ndarray  # int8 index into STATUS_CODES (len = unknown)
    action: np.ndarray  # int8 CLASS_ORDER, -1 NULL, -2 unknown string
    role: np.ndarray  # int8 index into ROLE_CODES (len = unknown)
    joined_late: np.ndarray  # bool
    confidence: np.ndarray  # float64, NaN when NULL
    probs: np.ndarray  # (n, 3) float32, NaN when NULL
    weight: np.ndarray | None  # float64, read only when a configuration does not record it
    pos: np.ndarray | None = None  # int64 index into Decisions, -1 no decision row

    @property
    def valid(self) -> np.ndarray:
        """A usable prediction: ok (or late with its result joined), a known action, confidence in [0, 1]."""
        ok = (self.status == 0) | ((self.status == 1) & self.joined_late)
        with np.errstate(invalid="ignore"):
            return ok & (self.action >= 0) & np.isfinite(self.confidence) & (self.confidence >= 0) & (self.confidence <= 1)


_PRED_WHERE = f"WHERE model = ? AND {_WINDOW} ORDER BY candle_open_time, event_id"  # the primary key's order


def read_predictions(bulk: BulkReader, model: str, start_ms: int, end_ms: int, symbols: list[str],
                     with_weight: bool) -> Predictions:
    """``model``'s rows in the window, not yet aligned to the decisions (``align``)."""
    cols = (f"candle_open_time, {text('symbol')}, {text('status')}, {text('action')}, {text('role')}, "
            "(reason IS NOT NULL AND reason LIKE ?), confidence, p_sell, p_hold, p_buy" + (", weight" if with_weight else ""))
    kinds = (None, tuple(symbols), STATUS_CODES, ACTIONS, ROLE_CODES, None, None, None, None, None) + ((None,) * with_weight)
    got = bulk.columns(f"SELECT {cols} FROM predictions {_PRED_WHERE}", [f"{LATE_JOINED}%", model, start_ms, end_ms],
                       kinds)
    t, sym, status, act, role, late, conf = got[:7]
    return Predictions(
        model=model, t=t.astype(np.int64), symbol=_known(sym, symbols),
        status=np.where(status < 0, len(STATUS_CODES), status).astype(np.int8), action=_action(act),
        role=np.where(role < 0, len(ROLE_CODES), role).astype(np.int8), joined_late=late == 1,
        confidence=conf.astype(np.float64), probs=np.stack(got[7:10], axis=1).astype(np.float32),
        weight=got[10].astype(np.float64) if with_weight else None,
    )


def align(bulk: BulkReader, pred: Predictions, dec: Decisions, start_ms: int, end_ms: int) -> Predictions:
    """``pred`` with ``pos``: by (time, symbol) when that is unique among the decisions, else by event id."""
    if dec.unique:
        key = _keys(dec.times, pred.t, pred.symbol)
        pos = np.searchsorted(dec.key, key)
        hit = (key >= 0) & (pos < dec.key.size)
        hit[hit] = dec.key[pos[hit]] == key[hit]
        pos = np.where(hit, pos, -1)
    else:  # one symbol at two intervals: match on the event id, read in the same order as the rows
        ids = bulk.db.execute(f"SELECT event_id FROM predictions {_PRED_WHERE}", (pred.model, start_ms, end_ms))
        pos = np.fromiter((dec.event_ids.get(e, -1) for (e,) in ids), dtype=np.int64, count=pred.t.size)
    return dataclasses.replace(pred, pos=pos.astype(np.int64))


@dataclass(frozen=True, slots=True)
class DecisionTable:
    """Decisions in time order (then symbol); ``pred_*`` columns follow ``models``.

    ``pred_valid`` is a usable prediction (``Predictions.valid``). ``blocked`` is an actionable
    decision the governor stopped; ``config`` indexes ``configs`` (-1: a config the store does
    not hold).
    """

    models: tuple[str, ...]
    configs: tuple[ConfigInfo, ...]
    t: np.ndarray  # int64
    series: np.ndarray  # int16 index into Snapshot.series, -1 unknown
    action: np.ndarray  # int8 CLASS_ORDER, -2 unknown
    confidence: np.ndarray
    consensus: np.ndarray  # int16
    actionable: np.ndarray  # bool
    boosted: np.ndarray  # bool
    blocked: np.ndarray  # bool
    synthetic: np.ndarray  # bool
    config: np.ndarray  # int16
    pred_action: np.ndarray  # (N, M) int8, -1 none
    pred_conf: np.ndarray  # (N, M) float64
    pred_probs: np.ndarray  # (N, M, 3) float32
    pred_valid: np.ndarray  # (N, M) bool
    pred_role: np.ndarray  # (N, M) int8 index into ROLE_CODES, -1 no row
    pred_weight: np.ndarray  # (N, M) float64 weight the engine voted with (0 no row)
    pred_unsampled: np.ndarray | None = None  # (N, M) bool: a budgeted shadow not sampled; None: no such row

    @property
    def n(self) -> int:
        return int(self.t.size)

    def column(self, model: str) -> int:
        return self.models.index(model)

    def select(self, keep: np.ndarray) -> DecisionTable:
        """The decisions where ``keep`` is true."""
        return DecisionTable(self.models, self.configs, **{
            f: None if getattr(self, f) is None else getattr(self, f)[keep]
            for f in self.__slots__ if f not in ("models", "configs")})

    def seen_by(self, model: str) -> DecisionTable:
        """The decisions ``model`` was sampled for (``sampling``): a budgeted challenger is compared on
        what it saw only, never counted as abstaining where it did not run. All of them without a budget."""
        if self.pred_unsampled is None or not self.pred_unsampled[:, self.column(model)].any():
            return self
        return self.select(~self.pred_unsampled[:, self.column(model)])

    def only(self, model: str, role: str, sha256: str) -> DecisionTable:
        """The decisions where ``model`` ran as ``role`` with the artifact ``sha256`` (the activation
        gate judges exactly the file it would make vote)."""
        j = self.column(model)
        sha_ok = np.array([c.sha256[j] == sha256 for c in self.configs] + [False])
        cfg = np.where(self.config >= 0, self.config, len(self.configs))
        return self.select(sha_ok[cfg] & (self.pred_role[:, j] == ROLE_CODES.index(role)))


def build_table(models: tuple[str, ...], configs: tuple[ConfigInfo, ...], dec: Decisions,
                preds: dict[str, Predictions]) -> DecisionTable:
    n, m = dec.t.size, len(models)
    p_act = np.full((n, m), -1, dtype=np.int8)
    p_conf = np.full((n, m), np.nan)
    p_probs = np.full((n, m, 3), np.nan, dtype=np.float32)
    p_valid = np.zeros((n, m), dtype=bool)
    p_role = np.full((n, m), -1, dtype=np.int8)
    p_weight = np.zeros((n, m))
    p_unsampled = np.zeros((n, m), dtype=bool) if any((p.status == UNSAMPLED).any() for p in preds.values()) else None
    cfg = np.where(dec.config >= 0, dec.config, len(configs))
    for j, model in enumerate(models):
        p = preds[model]
        hit = p.pos >= 0
        pos = p.pos[hit]
        if p_unsampled is not None:
            p_unsampled[pos, j] = p.status[hit] == UNSAMPLED
        p_act[pos, j] = p.action[hit]
        p_conf[pos, j] = p.confidence[hit]
        p_probs[pos, j] = p.probs[hit]
        p_valid[pos, j] = p.valid[hit]
        p_role[pos, j] = p.role[hit]
        if p.weight is not None:
            p_weight[pos, j] = np.nan_to_num(p.weight[hit])
        else:
            per_cfg = np.array([c.weights[j] or 0.0 for c in configs] + [0.0])
            p_weight[pos, j] = per_cfg[cfg[pos]]
    return DecisionTable(
        models=models, configs=configs, t=dec.t, series=dec.series, action=dec.action, confidence=dec.confidence,
        consensus=dec.consensus, actionable=dec.actionable, boosted=dec.boosted, blocked=dec.blocked,
        synthetic=dec.synthetic, config=dec.config, pred_action=p_act, pred_conf=p_conf, pred_probs=p_probs,
        pred_valid=p_valid, pred_role=p_role, pred_weight=p_weight, pred_unsampled=p_unsampled,
    )
