"""The dashboard's JSON data, read from a telemetry store and (optionally) an env file.

Read-only and bounded: every query walks one of the store's indexes from its newest end with a
``LIMIT`` (``decisions_time`` for the recent decisions, the predictions key ``(model,
candle_open_time)`` for each model's latencies, the configs rowid for the configuration in force),
so a poll costs the same over a store of a thousand decisions or of ten million. Nothing here
writes: the store is opened with ``mode=ro`` and the env file, governor file and audit log are only
read. Each ``DashboardData`` method returns one endpoint's document (docs/dashboard.md).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from ai_engine.exceptions import AIEngineError

__all__ = ["DashboardData", "RECENT_DECISIONS", "WINDOW_DECISIONS", "LATENCY_ROWS", "AUDIT_LINES", "SHADOW_LINES"]

log = logging.getLogger("ai_engine.dashboard")

WINDOW_DECISIONS = 2000  # the newest decisions the counts, the consensus and the rate are taken over
LATENCY_ROWS = 2000  # the newest predictions per model the latency percentiles are taken over
RECENT_DECISIONS = 50  # the decisions listed with their model_breakdown (at most MAX_RECENT)
MAX_RECENT = 200
FLATLINE_WINDOW, FLATLINE_MIN_STD = 200, 0.005  # the engine's defaults, when no settings say otherwise
SHADOW_LINES = 20  # the newest [SHADOW] lines per shadow model
AUDIT_LINES = 50  # the newest audit entries shown
_AUDIT_TAIL_BYTES = 256 * 1024  # read from the end of the audit log, never the whole file

_DECISION_COLS = ("event_id", "symbol", "interval", "candle_open_time", "decided_at", "action", "confidence",
                  "consensus_count", "total_models", "actionable", "published", "blocked_reason",
                  "decision_latency_ms", "config_id")

# The distinct models of the predictions table without reading it: each step is one seek in the
# (model, candle_open_time, event_id) key to the next model name.
_MODELS_SQL = """WITH RECURSIVE m(x) AS (
    SELECT (SELECT MIN(model) FROM predictions)
    UNION ALL
    SELECT (SELECT MIN(model) FROM predictions WHERE model > m.x) FROM m WHERE m.x IS NOT NULL
) SELECT x FROM m WHERE x IS NOT NULL LIMIT 64"""


def _std(values: list[float]) -> float:
    """Population standard deviation (numpy's default, as the engine's flat-line monitor)."""
    m = sum(values) / len(values)
    return (sum((v - m) ** 2 for v in values) / len(values)) ** 0.5


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return round(s[k], 3)


POLICY_STATE_FILE = "policy.json"  # lifecycle/policy.STATE_FILE_NAME (not imported: it pulls in the lifecycle)


class _FileCache:
    """A file's parsed content, parsed again only when ``stat`` shows a different file."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: object = None

    def get(self, path: Path, parse):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._key, self._value = None, None
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key != self._key:
            self._value, self._key = parse(path), key
        return self._value


class DashboardData:
    """What the dashboard shows, one method per JSON endpoint.

    Args:
        store_path: the telemetry store (SQLite), opened read-only.
        env_file: the engine's env file; gives the configured roles and weights, the governor
            state file and the home holding ``audit.log``. Without it (and without ``settings``)
            the governor file and the audit log are looked for beside the store (the default
            layout under one home).
        settings: the running service's Settings (``serve``): where the governor file and the
            audit log are, and the configured roles when there is no env file.

    Thread-safe: the one read-only connection is used under a lock (each query is bounded).
    """

    def __init__(self, store_path: Path | str, env_file: Path | str | None = None, *, settings=None) -> None:
        from ai_engine.telemetry import TelemetryStore

        self.store_path = Path(store_path)
        self.env_file = Path(env_file) if env_file is not None else None
        self._fixed_settings = settings
        self._store = TelemetryStore(self.store_path, readonly=True)
        self._db: sqlite3.Connection = self._store.connection
        self._lock = threading.Lock()
        self._env_cache = _FileCache()
        self._governor_cache = _FileCache()
        self._policy_cache = _FileCache()
        self._redis_backend: tuple[tuple[str, str], object] | None = None
        if self.env_file is not None:
            self._settings()  # a broken env file is refused at start, with its own message

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers ------------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _settings(self):
        """The env file's Settings (re-read when the file changes), else the service's; raises on
        a broken file."""
        from ai_engine.config import load_settings

        if self.env_file is None:
            return self._fixed_settings
        if not self.env_file.is_file():
            from ai_engine.exceptions import ConfigError

            raise ConfigError(f"env file {self.env_file} does not exist")
        return self._env_cache.get(self.env_file, lambda p: load_settings(p, environ={}))

    def _paths(self) -> tuple[Path | None, Path | None, str]:
        """(governor state file, audit log, governor backend) from the env file or beside the store."""
        st = self._fixed_settings
        if st is None and self.env_file is None:
            home = self.store_path.parent
            return home / "governor.json", home / "audit.log", "file"
        if st is None:
            st = self._settings()
        backend = st.governor_backend
        if backend == "auto":
            backend = "redis" if st.redis_url else "file"
        return st.governor_state_file, st.home / "audit.log", backend

    def _latest_config(self) -> dict | None:
        rows = self._query("SELECT config_id, applied_at, reason, payload FROM configs ORDER BY rowid DESC LIMIT 1")
        if not rows:
            return None
        config_id, applied_at, reason, payload = rows[0]
        try:
            doc = json.loads(payload)
        except json.JSONDecodeError:
            doc = {}
        return {"config_id": config_id, "applied_at": applied_at, "reason": reason,
                "payload": doc if isinstance(doc, dict) else {}}

    def _recent(self, limit: int) -> list[dict]:
        rows = self._query(f"SELECT {', '.join(_DECISION_COLS)} FROM decisions "
                           "ORDER BY candle_open_time DESC LIMIT ?", (int(limit),))
        return [dict(zip(_DECISION_COLS, r, strict=True)) for r in rows]

    # -- endpoints ----------------------------------------------------------------------------
    def models(self) -> dict:
        """``/api/models``: each model's role, weight, status, version and sha256."""
        cfg = self._latest_config()
        models: dict[str, dict] = {}
        if cfg is not None:
            for name, m in (cfg["payload"].get("models") or {}).items():
                if isinstance(m, dict):
                    models[str(name)] = {k: m.get(k) for k in ("role", "weight", "status", "version", "sha256",
                                                               "path", "reason", "kind")}
        env_models: dict[str, dict] | None = None
        env_error = None
        if self.env_file is not None or self._fixed_settings is not None:
            try:
                st = self._settings()
                env_models = {k: {"role": c.role.value, "weight": c.weight, "path": str(c.path) if c.path else None}
                              for k, c in st.all_models().items()}
            except AIEngineError as exc:
                env_error = str(exc)
        names = list(models) + [n for n in (env_models or {}) if n not in models]
        has_env = self.env_file is not None or self._fixed_settings is not None
        out = []
        for name in names:
            m = models.get(name, {})
            e = (env_models or {}).get(name)
            out.append({
                "model": name,
                "role": m.get("role") or (e or {}).get("role"),
                "weight": m.get("weight") if m else (e or {}).get("weight"),
                "status": m.get("status"),
                "version": m.get("version"),
                "sha256": m.get("sha256"),
                "path": m.get("path") or (e or {}).get("path"),
                "reason": m.get("reason"),
                "env_role": e["role"] if e else None,
                "env_weight": e["weight"] if e else None,
            })
        return {
            "config_id": cfg["config_id"] if cfg else None,
            "applied_at": cfg["applied_at"] if cfg else None,
            "applied_reason": cfg["reason"] if cfg else None,
            "min_consensus": cfg["payload"].get("min_consensus") if cfg else None,
            "env_file": str(self.env_file) if self.env_file else None,
            "env_error": env_error,
            "configured": has_env,
            "models": out,
        }

    def governor(self) -> dict:
        """``/api/governor``: kill, mode, who set it, when and why (file or Redis backend, as the engine)."""
        try:
            path, _, backend = self._paths()
        except AIEngineError as exc:
            return {"available": False, "source": None, "error": str(exc)}
        if backend == "redis":
            return self._redis_governor()

        def parse(p: Path) -> dict:
            from ai_engine.governor import FileGovernorBackend

            try:
                state = FileGovernorBackend(p).read()
            except AIEngineError as exc:
                return {"error": str(exc)}
            return {"state": state.to_json() if state else None}

        got = self._governor_cache.get(path, parse)
        if got is None:
            return {"available": False, "source": str(path), "error": f"no governor state at {path} (blocks)"}
        if "error" in got:
            return {"available": False, "source": str(path), "error": got["error"]}
        return {"available": True, "source": str(path), "error": None} | got["state"]

    def _redis_governor(self) -> dict:
        """The governor keys the engine reads (``GOVERNOR_BACKEND=redis``), with a short timeout: an
        unreachable Redis is shown as such (the engine then blocks), never waited on."""
        from ai_engine.telemetry.redis_governor import RedisGovernorBackend

        st = self._fixed_settings or self._settings()
        key = (st.redis_url, st.redis_prefix)
        if self._redis_backend is None or self._redis_backend[0] != key:
            self._redis_backend = (key, RedisGovernorBackend(st.redis_url, prefix=st.redis_prefix, timeout_s=0.5))
        backend = self._redis_backend[1]
        try:
            state = backend.read()
        except AIEngineError as exc:
            return {"available": False, "source": backend.describe(), "error": str(exc)}
        if state is None:
            return {"available": False, "source": backend.describe(), "error": "no governor state in Redis (blocks)"}
        return {"available": True, "source": backend.describe(), "error": None} | state.to_json()

    def summary(self) -> dict:
        """``/api/summary``: rate, consensus distribution and counts over the newest decisions."""
        rows = self._recent(WINDOW_DECISIONS)
        consensus: dict[str, int] = {}
        actions: dict[str, int] = {}
        blocked: dict[str, int] = {}
        per_minute: dict[int, int] = {}
        actionable = published = 0
        for r in rows:
            consensus[str(r["consensus_count"])] = consensus.get(str(r["consensus_count"]), 0) + 1
            actions[r["action"]] = actions.get(r["action"], 0) + 1
            actionable += bool(r["actionable"])
            published += bool(r["published"])
            if r["actionable"] and not r["published"]:
                reason = r["blocked_reason"] or "(no reason recorded)"
                blocked[reason] = blocked.get(reason, 0) + 1
            minute = int(r["decided_at"]) // 60_000 * 60_000
            per_minute[minute] = per_minute.get(minute, 0) + 1
        minutes = sorted(per_minute)[-60:]
        latencies = [r["decision_latency_ms"] for r in rows if r["decision_latency_ms"] is not None]
        return {
            "window": len(rows),
            "window_limit": WINDOW_DECISIONS,
            "first_candle_open_time": rows[-1]["candle_open_time"] if rows else None,
            "last_candle_open_time": rows[0]["candle_open_time"] if rows else None,
            "last_decided_at": max((r["decided_at"] for r in rows), default=None),
            "actions": actions,
            "consensus": dict(sorted(consensus.items(), key=lambda kv: int(kv[0]))),
            "actionable": actionable,
            "published": published,
            "blocked": actionable - published,
            "blocked_reasons": dict(sorted(blocked.items(), key=lambda kv: -kv[1])),
            "decisions_per_minute": [{"minute": m, "count": per_minute[m]} for m in minutes],
            "decision_latency_ms": {"p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)},
        }

    def latency(self) -> dict:
        """``/api/latency``: per model, latency p50/p99 and the non-ok counts over its newest rows."""
        names = [r[0] for r in self._query(_MODELS_SQL)]
        window, min_std = self._flatline_rule()
        out = []
        for name in names:
            rows = self._query("SELECT role, status, latency_ms, reason, confidence FROM predictions WHERE model = ? "
                               "ORDER BY candle_open_time DESC LIMIT ?", (name, LATENCY_ROWS))
            lat = [r[2] for r in rows if r[2] is not None and r[1] == "ok"]
            conf = [r[4] for r in rows if r[4] is not None and r[1] == "ok"][:window]
            statuses: dict[str, int] = {}
            for r in rows:
                statuses[r[1]] = statuses.get(r[1], 0) + 1
            last_error = next((r[3] for r in rows if r[1] == "error" and r[3]), None)
            out.append({
                "model": name,
                "role": rows[0][0] if rows else None,
                "rows": len(rows),
                "p50_ms": _percentile(lat, 50),
                "p99_ms": _percentile(lat, 99),
                "errors": statuses.get("error", 0),
                "statuses": statuses,
                "last_error": last_error,
                "confidence_std": round(_std(conf), 6) if conf else None,
                "flatline": len(conf) >= window and _std(conf) < min_std,
            })
        return {"rows_limit": LATENCY_ROWS, "flatline_window": window, "flatline_min_std": min_std, "models": out}

    def _flatline_rule(self) -> tuple[int, float]:
        """The engine's flat-line rule (``FLATLINE_WINDOW``, ``FLATLINE_MIN_STD``; monitor.py)."""
        try:
            st = self._fixed_settings or (self._settings() if self.env_file is not None else None)
        except AIEngineError:
            st = None
        if st is None:
            return FLATLINE_WINDOW, FLATLINE_MIN_STD
        return min(int(st.flatline_window), LATENCY_ROWS), float(st.flatline_min_std)

    def shadow(self) -> dict:
        """``/api/shadow``: per shadow model, its newest predictions as ``[SHADOW]`` log lines.

        The service logs one such line per model every ``SHADOW_LOG_INTERVAL_S``; here every
        recorded prediction has its line, from the store, in the log's own format."""
        from ai_engine.model_slots import display_name

        cfg = self._latest_config()
        kinds = {n: (m.get("kind") if isinstance(m, dict) else None)
                 for n, m in ((cfg or {}).get("payload", {}).get("models") or {}).items()}
        out = []
        for (name,) in self._query(_MODELS_SQL):
            rows = self._query("SELECT role, symbol, candle_open_time, status, action, confidence, prob, logit, reason "
                               "FROM predictions WHERE model = ? ORDER BY candle_open_time DESC LIMIT ?",
                               (name, SHADOW_LINES))
            if not rows or rows[0][0] != "shadow":
                continue
            disp = display_name(name, kinds.get(name))
            lines = []
            for _, symbol, t, status, action, conf, prob, logit, reason in rows:
                if action is None or conf is None:
                    text = f"[SHADOW] {disp} | {symbol} | status={status} reason={reason} | mode=SHADOW_ONLY"
                else:
                    text = (f"[SHADOW] {disp} | {symbol} | action={action} conf={conf:.4f} | "
                            f"prob={(prob or 0.0):.4f} logit={(logit or 0.0):.4f} | mode=SHADOW_ONLY")
                lines.append({"candle_open_time": t, "status": status, "line": text})
            out.append({"model": name, "display": disp, "lines": lines})
        return {"lines_limit": SHADOW_LINES, "models": out}

    def decisions(self, limit: int = RECENT_DECISIONS) -> dict:
        """``/api/decisions``: the newest decisions, as recorded (``model_breakdown`` included)."""
        limit = max(1, min(int(limit), MAX_RECENT))
        rows = self._query("SELECT payload FROM decisions ORDER BY candle_open_time DESC, symbol LIMIT ?", (limit,))
        docs = []
        for (payload,) in rows:
            try:
                docs.append(json.loads(payload))
            except json.JSONDecodeError:
                continue
        return {"limit": limit, "decisions": docs}

    def policy(self) -> dict:
        """``/api/policy``: the promotion policy the env file sets and where its run stands (the state
        ``ai-engine policy status`` reads, ``$AI_ENGINE_HOME/policy.json``)."""
        try:
            st = self._fixed_settings or (self._settings() if self.env_file is not None else None)
        except AIEngineError as exc:
            return {"mode": None, "config": None, "state": None, "source": None, "error": str(exc)}
        home = st.home if st is not None else self.store_path.parent
        cfg = st.policy if st is not None else None
        mode = None if st is None else ("off" if cfg is None else ("dry-run" if cfg.dry_run else "on"))
        config = None if cfg is None else {
            "model": cfg.model, "shadow_hours": cfg.shadow_hours, "min_predictions": cfg.min_predictions,
            "b_weight": cfg.b_weight, "b_hours": cfg.b_hours, "live_hours": cfg.live_hours, "a_weight": cfg.a_weight,
            "rollback_on_fail": cfg.rollback_on_fail, "rollback_on_worse": cfg.rollback_on_worse}
        path = home / POLICY_STATE_FILE

        def parse(p: Path) -> dict:
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return {"error": f"policy state {p} is unreadable ({exc})"}
            return {"state": doc if isinstance(doc, dict) else None}

        got = self._policy_cache.get(path, parse) or {"state": None}
        return {"mode": mode, "config": config, "state": got.get("state"), "source": str(path),
                "error": got.get("error")}

    def audit(self) -> dict:
        """``/api/audit``: the newest entries of the lifecycle audit log, newest first."""
        try:
            _, path, _ = self._paths()
        except AIEngineError as exc:
            return {"available": False, "source": None, "error": str(exc), "entries": []}
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - _AUDIT_TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return {"available": False, "source": str(path), "error": None, "entries": []}
        except OSError as exc:
            return {"available": False, "source": str(path), "error": f"{path}: {exc.strerror}", "entries": []}
        lines = tail.decode("utf-8", errors="replace").splitlines()
        if size > _AUDIT_TAIL_BYTES and lines:
            lines = lines[1:]  # the first line read may be cut
        entries = []
        for line in reversed(lines):
            if len(entries) >= AUDIT_LINES:
                break
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(e, dict):
                entries.append(e)
        return {"available": True, "source": str(path), "error": None, "entries": entries}

    def overview(self) -> dict:
        """``/api/overview``: what is being shown and when it was read."""
        return {"store": str(self.store_path), "env_file": str(self.env_file) if self.env_file else None,
                "now": int(time.time() * 1000)}
