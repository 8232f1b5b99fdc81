"""Every decision of the window with every model's prediction beside it, as aligned numpy columns:
the input of the counterfactual re-vote and of the money view.

One query per model, without a join (the predictions' key is (model, time, event id)), aligned
to the decisions by (time, symbol); a store holding one symbol at two intervals falls back to
matching on the event id.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np

from ai_engine.analysis.revote import Rule
from ai_engine.enums import MODEL_NAMES
from ai_engine.types import LATE_JOINED

__all__ = ["ConfigInfo", "DecisionTable", "read_decision_table"]

_CHUNK = 65_536
_ACT = "CASE WHEN {c}='SELL' THEN 0 WHEN {c}='HOLD' THEN 1 WHEN {c}='BUY' THEN 2 ELSE -1 END"


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """One applied configuration: roles and weights per model (in the engine's order) and its rule."""

    config_id: str
    models: tuple[str, ...]
    roles: tuple[str, ...]
    weights: tuple[float, ...]
    versions: tuple[str | None, ...]
    sha256: tuple[str | None, ...]
    rule: Rule


@dataclass(frozen=True, slots=True)
class DecisionTable:
    """Decisions in time order (then symbol); ``pred_*`` columns follow ``models``.

    ``pred_valid`` is a usable prediction: status ok, or late with its result joined, a known
    action and a confidence in [0, 1]. ``blocked`` is an actionable decision the governor stopped
    (its reason recorded); ``config`` indexes ``configs`` (-1: a config the store does not hold).
    """

    models: tuple[str, ...]
    configs: tuple[ConfigInfo, ...]
    t: np.ndarray  # int64
    series: np.ndarray  # int16 index into Snapshot.series, -1 unknown
    action: np.ndarray  # int8 CLASS_ORDER, -1 unknown
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
    pred_weight: np.ndarray  # (N, M) float64 weight the engine recorded with the prediction (0 no row)

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
        from ai_engine.analysis.reader import ROLE_CODES

        j = self.column(model)
        sha_ok = np.array([c.sha256[j] == sha256 for c in self.configs] + [False])
        cfg = np.where(self.config >= 0, self.config, len(self.configs))
        return self.select(sha_ok[cfg] & (self.pred_role[:, j] == ROLE_CODES.index(role)))


def _configs(db: sqlite3.Connection, config_ids: list[str]) -> tuple[tuple[str, ...], tuple[ConfigInfo, ...]]:
    payloads: dict[str, dict] = {}
    for cid, payload in db.execute("SELECT config_id, payload FROM configs ORDER BY applied_at"):
        try:
            payloads[cid] = json.loads(payload)
        except ValueError:
            continue
    seen: set[str] = set()
    for cid in config_ids:
        seen.update((payloads.get(cid) or {}).get("models", {}))
    # the engine adds the voters' scores in its own model order; the re-vote must add them alike
    order = sorted(seen, key=lambda m: (MODEL_NAMES.index(m) if m in MODEL_NAMES else len(MODEL_NAMES), m))
    infos = []
    for cid in config_ids:
        p = payloads.get(cid) or {}
        ms = p.get("models", {})
        entry = [ms.get(m) or {} for m in order]
        infos.append(ConfigInfo(
            cid, tuple(order),
            tuple(str(e.get("role", "disabled")) if e.get("status", "active") == "active" else "inactive"
                  for e in entry),
            tuple(float(e.get("weight") or 0.0) for e in entry),
            tuple(e.get("version") for e in entry), tuple(e.get("sha256") for e in entry),
            Rule(int(p.get("min_consensus", 3)), float(p.get("confidence_boost", 1.1)),
                 float(p.get("confidence_cap", 0.95)), len(ms) or 4),
        ))
    return tuple(order), tuple(infos)


def _fetch(cur, ncols: int) -> np.ndarray:
    parts = []
    while chunk := cur.fetchmany(_CHUNK):
        parts.append(np.array(chunk, dtype=np.float64).reshape(len(chunk), ncols))
    return np.concatenate(parts) if parts else np.empty((0, ncols))


def read_decision_table(db: sqlite3.Connection, start_ms: int, end_ms: int,
                        series_keys: list[tuple[str, str]], config_ids: list[str]) -> DecisionTable:
    """Decisions with ``start_ms < candle_open_time <= end_ms`` and each model's prediction, inside
    the caller's read transaction."""
    from ai_engine.analysis.reader import ROLE_CODES, _case

    models, configs = _configs(db, config_ids)
    symbols = sorted({s for s, _ in series_keys})
    ser_sql, ser_args = _case("symbol || '|' || interval", [f"{s}|{i}" for s, i in series_keys], -1)
    sym_sql, sym_args = _case("symbol", symbols, -1)
    cfg_sql, cfg_args = _case("config_id", config_ids, -1)
    cur = db.execute(
        f"SELECT candle_open_time, {ser_sql}, {sym_sql}, {_ACT.format(c='action')}, confidence, consensus_count, "
        f"actionable, boosted, blocked_reason IS NOT NULL, synthetic, {cfg_sql} FROM decisions "
        "WHERE candle_open_time > ? AND candle_open_time <= ? ORDER BY candle_open_time, symbol, interval",
        ser_args + sym_args + cfg_args + [start_ms, end_ms])
    d = _fetch(cur, 11)
    n = d.shape[0]
    t = d[:, 0].astype(np.int64)
    key = (t - start_ms) * 65_536 + d[:, 2].astype(np.int64)
    unique_keys = n == 0 or bool(np.all(np.diff(key) > 0))
    m = len(models)
    p_act = np.full((n, m), -1, dtype=np.int8)
    p_conf = np.full((n, m), np.nan)
    p_probs = np.full((n, m, 3), np.nan, dtype=np.float32)
    p_valid = np.zeros((n, m), dtype=bool)
    p_role = np.full((n, m), -1, dtype=np.int8)
    p_weight = np.zeros((n, m))
    role_sql, role_args = _case("role", list(ROLE_CODES), -1)
    ids = None
    for j, model in enumerate(models):
        if unique_keys:
            cur = db.execute(
                f"SELECT candle_open_time, {sym_sql}, status IN ('ok', 'late') AND (status = 'ok' OR reason LIKE ?), "
                f"{_ACT.format(c='action')}, confidence, p_sell, p_hold, p_buy, {role_sql}, weight FROM predictions "
                "WHERE model = ? AND candle_open_time > ? AND candle_open_time <= ?",
                sym_args + [f"{LATE_JOINED}%"] + role_args + [model, start_ms, end_ms])
            rows = _fetch(cur, 10)
            rk = (rows[:, 0].astype(np.int64) - start_ms) * 65_536 + rows[:, 1].astype(np.int64)
            pos = np.searchsorted(key, rk)
        else:  # one symbol at two intervals: match on the event id
            if ids is None:
                ids = {e: i for i, (e,) in enumerate(db.execute(
                    "SELECT event_id FROM decisions WHERE candle_open_time > ? AND candle_open_time <= ? "
                    "ORDER BY candle_open_time, symbol, interval", (start_ms, end_ms)))}
            raw = db.execute(
                f"SELECT event_id, candle_open_time, 0, status IN ('ok', 'late') AND (status = 'ok' OR reason LIKE ?), "
                f"{_ACT.format(c='action')}, confidence, p_sell, p_hold, p_buy, {role_sql}, weight FROM predictions "
                "WHERE model = ? AND candle_open_time > ? AND candle_open_time <= ?",
                [f"{LATE_JOINED}%"] + role_args + [model, start_ms, end_ms]).fetchall()
            pos = np.array([ids.get(r[0], -1) for r in raw], dtype=np.int64)
            rows = np.array([r[1:] for r in raw], dtype=np.float64).reshape(len(raw), 10)
            rk = pos
        pos = np.clip(pos, 0, max(n - 1, 0))
        hit = (n > 0) & ((key[pos] == rk) if unique_keys else rk >= 0)
        pos, rows = pos[hit], rows[hit]
        conf = rows[:, 4]
        act = rows[:, 3].astype(np.int8)
        with np.errstate(invalid="ignore"):
            ok = (rows[:, 2] == 1) & (act >= 0) & np.isfinite(conf) & (conf >= 0) & (conf <= 1)
        p_act[pos, j] = act
        p_conf[pos, j] = conf
        p_probs[pos, j] = rows[:, 5:8]
        p_valid[pos, j] = ok
        p_role[pos, j] = rows[:, 8].astype(np.int8)
        p_weight[pos, j] = np.nan_to_num(rows[:, 9])
    return DecisionTable(
        models=models, configs=configs, t=t, series=d[:, 1].astype(np.int16), action=d[:, 3].astype(np.int8),
        confidence=d[:, 4], consensus=d[:, 5].astype(np.int16), actionable=d[:, 6] == 1, boosted=d[:, 7] == 1,
        blocked=d[:, 8] == 1, synthetic=d[:, 9] == 1, config=d[:, 10].astype(np.int16),
        pred_action=p_act, pred_conf=p_conf, pred_probs=p_probs, pred_valid=p_valid, pred_role=p_role,
        pred_weight=p_weight,
    )
