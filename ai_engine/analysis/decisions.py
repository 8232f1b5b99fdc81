"""Every decision of the window and every model's prediction aligned to it, as numpy columns:
the input of the gates (one model's rows), the counterfactual re-vote and the money view.

Each table is read once, without a join (the predictions' key is (model, time, event id)), in
few columns: small integer fields are packed into one integer in SQL, so 10M predictions cost
six values a row, and aligned to the decisions by (time, symbol). A store holding one symbol at
two intervals falls back to matching on the event id.

The bulk reads go through ADBC's SQLite driver (``BulkReader``), which fills Arrow columns in C:
2.5M rows in 2.1 s where Python's ``sqlite3`` took 6.0 s building a float object per value
(same query, same loaded machine). Its connection is a second reader of the same file, opened
inside the caller's read transaction; a query it cannot type (a hand-edited column of mixed
types) is read again through ``sqlite3``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np

from ai_engine.analysis.revote import Rule
from ai_engine.enums import MODEL_NAMES
from ai_engine.types import LATE_JOINED

__all__ = ["BulkReader", "ConfigInfo", "Decisions", "Predictions", "DecisionTable", "read_decisions", "read_predictions",
           "config_infos", "build_table", "STATUS_CODES", "ROLE_CODES"]

ROLE_CODES = ("voter", "shadow", "disabled")
STATUS_CODES = ("ok", "late", "error", "inactive", "disabled")  # code = index; anything else = len
_CHUNK = 65_536
_ACT = "CASE WHEN {c} IS NULL THEN -1 WHEN {c}='SELL' THEN 0 WHEN {c}='HOLD' THEN 1 WHEN {c}='BUY' THEN 2 ELSE -2 END"
_SHIFT = 65_536  # key = rank of the time * _SHIFT + symbol code + 1 (0: a symbol without candles)


def _case(column: str, values: list[str], default: int) -> tuple[str, list[str]]:
    if not values:
        return str(default), []
    whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(values)))
    return f"CASE {column} {whens} ELSE {default} END", list(values)


def _fetch(cur, ncols: int) -> np.ndarray:
    parts = []
    while chunk := cur.fetchmany(_CHUNK):
        parts.append(np.array(chunk, dtype=np.float64).reshape(len(chunk), ncols))
    return np.concatenate(parts) if parts else np.empty((0, ncols))


class BulkReader:
    """Numeric query results as an (n, ncols) float64 array (NULL is NaN): through ADBC when it
    can open the store, else through the caller's ``sqlite3`` connection."""

    def __init__(self, db: sqlite3.Connection, uri: str | None) -> None:
        self.db = db
        self._adbc = None
        if uri is not None:
            try:
                import adbc_driver_sqlite.dbapi as adbc
                from adbc_driver_manager import Error as AdbcError
            except ImportError:  # no driver: sqlite3 reads
                return
            try:
                self._adbc = adbc.connect(uri)
            except AdbcError:  # it cannot open the file: sqlite3 reads
                self._adbc = None

    def rows(self, sql: str, args: list, ncols: int) -> list[np.ndarray]:
        """The result's ``ncols`` columns: int64 where SQLite gave integers and no NULL, else float64."""
        if self._adbc is not None:
            from adbc_driver_manager import Error as AdbcError

            cur = self._adbc.cursor()
            try:
                cur.execute(sql, tuple(args))
                table = cur.fetch_arrow_table()
                if table.num_columns == ncols and all(str(c.type) in _NUMERIC for c in table.columns):
                    return [c.to_numpy(zero_copy_only=False) if table.num_rows else np.empty(0)
                            for c in table.columns]
            except AdbcError:
                pass
            finally:
                cur.close()
        return list(_fetch(self.db.execute(sql, args), ncols).T)

    def close(self) -> None:
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None


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
                 float(p.get("confidence_cap", 0.95)), len(ms) or 4),
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


def read_decisions(bulk: BulkReader, start_ms: int, end_ms: int, series_keys: list[tuple[str, str]],
                   symbols: list[str], config_ids: list[str]) -> Decisions:
    ser_sql, ser_args = _case("symbol || '|' || interval", [f"{s}|{i}" for s, i in series_keys], -1)
    sym_sql, sym_args = _case("symbol", symbols, -1)
    cfg_sql, cfg_args = _case("config_id", config_ids, -1)
    # small fields packed into one integer below 2**48, exact as the float64 it is fetched as
    packed = (f"(({_ACT.format(c='action')}) + 2) + 8 * MIN(MAX(consensus_count, 0), 255) + 2048 * (actionable != 0) "
              f"+ 4096 * (boosted != 0) + 8192 * (blocked_reason IS NOT NULL) + 16384 * (synthetic != 0) "
              f"+ 32768 * MIN(({cfg_sql}) + 1, 65535) + 4294967296 * MIN(({ser_sql}) + 1, 65535)")
    order = "ORDER BY candle_open_time, symbol, interval"
    d = bulk.rows(f"SELECT candle_open_time, {packed}, confidence, {sym_sql} "
                  f"FROM decisions WHERE candle_open_time > ? AND candle_open_time <= ? {order}",
                  cfg_args + ser_args + sym_args + [start_ms, end_ms], 4)
    t = d[0].astype(np.int64)
    code = d[1].astype(np.int64)
    times = np.unique(t)
    key = _keys(times, t, d[3].astype(np.int64))
    unique = key.size < 2 or bool(np.all(np.diff(key) > 0))
    ids = None
    if not unique:
        ids = {e: i for i, (e,) in enumerate(bulk.db.execute(
            f"SELECT event_id FROM decisions WHERE candle_open_time > ? AND candle_open_time <= ? {order}",
            (start_ms, end_ms)))}
    return Decisions(
        key=key, times=times, unique=unique, t=t, series=((code >> 32) - 1).astype(np.int16),
        action=((code & 7) - 2).astype(np.int8), confidence=d[2].astype(np.float64), consensus=((code >> 3) & 255).astype(np.int16),
        actionable=(code >> 11) & 1 == 1, boosted=(code >> 12) & 1 == 1, blocked=(code >> 13) & 1 == 1,
        synthetic=(code >> 14) & 1 == 1, config=(((code >> 15) & 65535) - 1).astype(np.int16), event_ids=ids,
    )


@dataclass(frozen=True, slots=True)
class Predictions:
    """One model's prediction rows in the window (in its key order) and the decision each belongs to."""

    model: str
    pos: np.ndarray  # int64 index into Decisions, -1 no decision row
    t: np.ndarray  # int64
    status: np.ndarray  # int8 index into STATUS_CODES (len = unknown)
    action: np.ndarray  # int8 CLASS_ORDER, -1 NULL, -2 unknown string
    role: np.ndarray  # int8 index into ROLE_CODES (len = unknown)
    joined_late: np.ndarray  # bool
    confidence: np.ndarray  # float64, NaN when NULL
    probs: np.ndarray  # (n, 3) float32, NaN when NULL
    weight: np.ndarray | None  # float64, read only when a configuration does not record it

    @property
    def valid(self) -> np.ndarray:
        """A usable prediction: ok (or late with its result joined), a known action, confidence in [0, 1]."""
        ok = (self.status == 0) | ((self.status == 1) & self.joined_late)
        with np.errstate(invalid="ignore"):
            return ok & (self.action >= 0) & np.isfinite(self.confidence) & (self.confidence >= 0) & (self.confidence <= 1)


def read_predictions(bulk: BulkReader, model: str, start_ms: int, end_ms: int, symbols: list[str],
                     dec: Decisions, with_weight: bool) -> Predictions:
    sym_sql, sym_args = _case("symbol", symbols, -1)
    st_sql, st_args = _case("status", list(STATUS_CODES), len(STATUS_CODES))
    role_sql, role_args = _case("role", list(ROLE_CODES), len(ROLE_CODES))
    packed = (f"({st_sql}) + 8 * (({_ACT.format(c='action')}) + 2) + 64 * ({role_sql}) "
              f"+ 256 * (reason IS NOT NULL AND reason LIKE ?) + 65536 * (({sym_sql}) + 1)")
    cols = f"candle_open_time, {packed}, confidence, p_sell, p_hold, p_buy"
    ncols = 6 + with_weight
    if with_weight:
        cols += ", weight"
    where = "WHERE model = ? AND candle_open_time > ? AND candle_open_time <= ?"
    args = st_args + role_args + [f"{LATE_JOINED}%"] + sym_args + [model, start_ms, end_ms]
    if dec.unique:
        rows = bulk.rows(f"SELECT {cols} FROM predictions {where}", args, ncols)
        key = _keys(dec.times, rows[0].astype(np.int64), (rows[1].astype(np.int64) >> 16) - 1)
        pos = np.searchsorted(dec.key, key)
        hit = (key >= 0) & (pos < dec.key.size)
        hit[hit] = dec.key[pos[hit]] == key[hit]
        pos = np.where(hit, pos, -1)
    else:  # one symbol at two intervals: match on the event id
        raw = bulk.db.execute(f"SELECT event_id, {cols} FROM predictions {where}", args).fetchall()
        pos = np.array([dec.event_ids.get(r[0], -1) for r in raw], dtype=np.int64)
        rows = list(np.array([r[1:] for r in raw], dtype=np.float64).reshape(len(raw), ncols).T)
    code = rows[1].astype(np.int64)
    return Predictions(
        model=model, pos=pos, t=rows[0].astype(np.int64), status=(code & 7).astype(np.int8),
        action=(((code >> 3) & 7) - 2).astype(np.int8), role=((code >> 6) & 3).astype(np.int8),
        joined_late=(code >> 8) & 1 == 1, confidence=rows[2].astype(np.float64),
        probs=np.stack(rows[3:6], axis=1).astype(np.float32),
        weight=rows[6].astype(np.float64) if with_weight else None,
    )


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

    @property
    def n(self) -> int:
        return int(self.t.size)

    def column(self, model: str) -> int:
        return self.models.index(model)

    def select(self, keep: np.ndarray) -> DecisionTable:
        """The decisions where ``keep`` is true."""
        return DecisionTable(self.models, self.configs, **{
            f: getattr(self, f)[keep] for f in self.__slots__ if f not in ("models", "configs")})

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
    cfg = np.where(dec.config >= 0, dec.config, len(configs))
    for j, model in enumerate(models):
        p = preds[model]
        hit = p.pos >= 0
        pos = p.pos[hit]
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
        pred_valid=p_valid, pred_role=p_role, pred_weight=p_weight,
    )
