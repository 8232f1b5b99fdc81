"""Analysis from the bus: materialize ``<prefix>:stream:ai.decision`` into a SQLite store.

The result has the schema of ``TelemetryStore``, so ``analyze`` reads it like the engine's own
store. The decision stream carries no candles, only each decision's ``entry_price`` (the close):
one ``candles`` row per decision is written with open=high=low=close=entry_price and volume 0,
which is all the outcome scoring needs. Nor does it carry the applied configurations: one
``configs`` row per config id is rebuilt from its first decision's breakdown (roles, weights,
versions, checksums), so the analysis can tell versions apart; label configs are not on the bus,
so outcomes use the default labels. The stream holds only what its MAXLEN kept; the engine's
SQLite store remains the full record. Entries that cannot be read are counted, by reason, and the
analysis reports them beside its figures (failure mode 1: nothing is dropped silently).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

from ai_engine.exceptions import DataError, TransientError
from ai_engine.telemetry.redis_streams import redact_url, stream_key
from ai_engine.telemetry.sqlite import TelemetryStore

__all__ = ["BusCopy", "materialize_from_redis"]

log = logging.getLogger("ai_engine.telemetry")

_PROBS = ("SELL", "HOLD", "BUY")


@dataclass(frozen=True, slots=True)
class BusCopy:
    """A store materialized from the decision stream: where, from which stream, and what was left out."""

    path: Path
    source: str  # "redis://host:port/db stream <key>", password redacted
    read: int  # decisions copied
    skipped: dict[str, int]  # unreadable entries by reason


def _rows(d: dict) -> tuple[tuple, list[tuple], tuple]:
    """(decision row, prediction rows, candle row) of one decision JSON; KeyError/TypeError if malformed."""
    eid, sym, interval, t = d["event_id"], d["symbol"], d["interval"], int(d["candle_open_time"])
    price = float(d["entry_price"])
    dec = (
        eid, sym, interval, t, int(d["decided_at"]), d["action"], float(d["confidence"]), int(d["consensus_count"]),
        int(d["total_models"]), int(bool(d["actionable"])), int(bool(d["boosted"])), int(bool(d["published"])),
        d.get("blocked_reason"), price, d["config_id"], d.get("decision_latency_ms"), int(bool(d.get("synthetic"))),
        json.dumps(d, separators=(",", ":")),
    )
    preds = []
    for model, r in d["model_breakdown"].items():
        probs = r.get("probs") or {}
        preds.append((
            eid, model, sym, t, r["role"], r["status"], r.get("action"), r.get("confidence"), r.get("prob"),
            r.get("logit"), *(probs.get(k) for k in _PROBS), r.get("weight"), r.get("version"), r.get("sha256"),
            r.get("latency_ms"), r.get("reason"),
        ))
    candle = (sym, interval, t, price, price, price, price, 0.0, int(bool(d.get("synthetic"))))
    return dec, preds, candle


def materialize_from_redis(url: str, prefix: str, dest: Path, *, page: int = 1000) -> BusCopy:
    """Copy every readable entry of ``<prefix>:stream:ai.decision`` into the store at ``dest``.

    Idempotent (rows keyed by event id). Raises TransientError when Redis is unreachable and
    DataError when the stream is missing or holds no readable decision.
    """
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    key = stream_key(prefix, "ai.decision")
    store = TelemetryStore(dest)
    read = 0
    skipped: Counter = Counter()
    configs: set[str] = set()
    try:
        if not client.exists(key):
            raise DataError(f"stream {key} does not exist on {redact_url(url)}")
        start = "-"
        while True:
            entries = client.xrange(key, min=start, max="+", count=page)
            if not entries:
                break
            dec, pred, cand, cfg = [], [], [], []
            for entry_id, fields in entries:
                try:
                    d = json.loads(fields[b"payload"])
                    row, preds, candle = _rows(d)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    skipped[f"{type(exc).__name__}: {exc}"] += 1
                    log.debug("skipped entry %s of %s: %s", entry_id.decode(), key, exc)
                    continue
                dec.append(row)
                pred.extend(preds)
                cand.append(candle)
                if d["config_id"] not in configs:
                    configs.add(d["config_id"])
                    cfg.append((d["config_id"], int(d["decided_at"]), "bus", json.dumps({"models": {
                        m: {k: r.get(k) for k in ("role", "weight", "version", "sha256")}
                        for m, r in d["model_breakdown"].items()}}, sort_keys=True)))
            read += len(dec)
            db = store.connection
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO candles VALUES (?,?,?,?,?,?,?,?,?)", cand)
            db.executemany("INSERT OR IGNORE INTO configs VALUES (?,?,?,?)", cfg)
            db.executemany("INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", dec)
            db.executemany("INSERT OR IGNORE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", pred)
            db.execute("COMMIT")
            last = entries[-1][0].decode()
            start = "(" + last
    except redis.RedisError as exc:
        raise TransientError(f"Redis {redact_url(url)} unreachable: {exc}") from None
    finally:
        store.close()
        client.close()
    n_skipped = sum(skipped.values())
    if n_skipped:
        log.warning("skipped %d unreadable entries of %s: %s", n_skipped, key,
                    "; ".join(f"{n}× {why}" for why, n in skipped.most_common(5)))
    if read == 0:
        raise DataError(f"stream {key} holds no readable decision ({n_skipped} entries skipped)")
    log.info("materialized %d decisions from %s into %s (%d skipped)", read, key, dest, n_skipped)
    return BusCopy(Path(dest), f"{redact_url(url)} stream {key}", read, dict(skipped.most_common()))
