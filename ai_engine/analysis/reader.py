"""Read one analysis window out of the telemetry store, as numpy columns, in one snapshot.

Everything is read inside one read transaction, so a live engine appending meanwhile cannot make
the counts disagree. Strings are mapped to small integer codes in SQL (``CASE``), so fetching
10M predictions creates no per-row Python objects that outlive a 64k-row chunk.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ai_engine.analysis.decisions import (
    READ_THREADS,
    ROLE_CODES,
    STATUS_CODES,
    UNSAMPLED,
    BulkReader,
    Decisions,
    DecisionTable,
    Predictions,
    align,
    build_table,
    config_infos,
    read_decisions,
    read_predictions,
)
from ai_engine.analysis.labels import (
    DEFAULT_LABEL,
    LabelSpec,
    apply_overrides,
    label_spec_from_config,
)
from ai_engine.exceptions import ConfigError, DataError
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import INTERVAL_MS

__all__ = [
    "Window", "Series", "VersionSeen", "SampleSeen", "ModelRows", "Snapshot", "parse_time", "read_snapshot",
    "STATUS_CODES", "ROLE_CODES",
]

HOUR_MS = 3_600_000
# Candle times the analysis takes as real: ms UTC from the epoch up to 2**53 (exact as a float64,
# year 287,396). A store edited by hand may hold anything; other values never open a window.
MAX_TIME_MS = 2**53
_TIME_SQL = f"typeof(candle_open_time) = 'integer' AND candle_open_time BETWEEN 0 AND {MAX_TIME_MS}"


@dataclass(frozen=True, slots=True)
class Window:
    """Decisions with ``start_ms < candle_open_time <= end_ms`` (market time)."""

    start_ms: int
    end_ms: int
    hours: float
    until_given: bool
    n_decisions: int
    first_ms: int | None
    last_ms: int | None

    def to_json(self) -> dict:
        iso = lambda ms: None if ms is None else _iso(ms)  # noqa: E731
        return {"start": _iso(self.start_ms), "end": _iso(self.end_ms), "start_ms": self.start_ms,
                "end_ms": self.end_ms, "hours": self.hours, "until_given": self.until_given,
                "first_decision": iso(self.first_ms), "last_decision": iso(self.last_ms)}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Series:
    """One candle series; ``close`` on a regular grid from ``t0`` (NaN where no candle is recorded)."""

    symbol: str
    interval: str
    interval_ms: int
    t0: int
    close: np.ndarray
    last_ms: int | None  # newest recorded candle of the series, beyond the loaded range too
    open: np.ndarray | None = None  # on the same grid; the money view trades at the opens


@dataclass(frozen=True, slots=True)
class VersionSeen:
    """Rows of the model per role and applied version (version and sha256 from the decision's config)."""

    role: str
    version: str | None
    sha256: str | None
    n: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True, slots=True)
class SampleSeen:
    """A budgeted challenger's share of the window (``sampling``): the fractions its configurations
    gave it and how many decisions it saw and was not sampled for (it ran nothing on those)."""

    fractions: tuple[float, ...]
    seen: int
    not_sampled: int

    @property
    def observed(self) -> float:
        total = self.seen + self.not_sampled
        return self.seen / total if total else math.nan

    def to_json(self) -> dict:
        return {"fractions": list(self.fractions), "seen": self.seen, "not_sampled": self.not_sampled,
                "observed_fraction": self.observed}

    def describe(self) -> str:
        fr = ", ".join(f"{f:g}" for f in self.fractions) or "1"
        return f"sample {fr}: saw {self.seen} of {self.seen + self.not_sampled} decisions ({self.observed:.1%})"


@dataclass(frozen=True, slots=True)
class ModelRows:
    """The model's prediction rows in the window. ``series``/``label`` are -1 when unknown."""

    model: str
    t: np.ndarray  # int64 candle_open_time
    series: np.ndarray  # int16 index into Snapshot.series
    status: np.ndarray  # int8 index into STATUS_CODES
    action: np.ndarray  # int8 CLASS_ORDER index, -1 NULL, -2 unknown string
    confidence: np.ndarray  # float64, NaN when NULL
    probs: np.ndarray  # float32 (n, 3) SELL, HOLD, BUY; NaN when NULL
    ensemble: np.ndarray  # int8 CLASS_ORDER index of the decision's action, -1 no decision row
    joined_late: np.ndarray  # bool: the result came after the decision was published and was joined then
    label: np.ndarray  # int16 index into labels
    labels: tuple[LabelSpec, ...]
    unknown_actions: tuple[tuple[str, int], ...]
    versions: tuple[VersionSeen, ...]
    sample: SampleSeen | None = None  # a budgeted shadow: its unsampled rows are left out of every other field


@dataclass(frozen=True, slots=True)
class Snapshot:
    window: Window
    decision_actions: tuple[int, int, int]  # decisions in window per CLASS_ORDER
    series: tuple[Series, ...]
    models: tuple[ModelRows, ...]
    table: DecisionTable | None = None  # every decision with every model's prediction, when asked for
    window_rows: tuple[int, ...] = ()  # per model: its rows in the window, of any artifact and role
    synthetic_decisions: int = 0  # decisions of the window made on synthetic candles


def parse_time(value: int | str | datetime | None) -> int | None:
    """``--until`` as ms UTC: an integer of ms, or an ISO 8601 time (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, int):
        return _in_range(value, value)
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        if text.isdigit():
            return _in_range(int(text), value)
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--until {value!r} is not a time: give ISO 8601 (2026-01-10T12:00Z) or ms UTC") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return _in_range(int(dt.timestamp() * 1000), value)


def _in_range(ms: int, given: object) -> int:
    if not 0 <= ms <= MAX_TIME_MS:
        raise ConfigError(f"--until {given!r} is out of range: give a time after 1970 in ISO 8601 or ms UTC")
    return ms


def _series_keys(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """Distinct (symbol, interval) of the candles table by skipping along its primary key."""
    keys: list[tuple[str, str]] = []
    row = db.execute("SELECT symbol, interval FROM candles ORDER BY symbol, interval LIMIT 1").fetchone()
    while row is not None:
        keys.append(row)
        row = db.execute(
            "SELECT symbol, interval FROM candles WHERE (symbol, interval) > (?, ?) ORDER BY symbol, interval LIMIT 1",
            row,
        ).fetchone()
    return keys


def _last_candle(db, symbol: str, interval: str) -> int | None:
    """The newest candle of the series by the primary key (one index step); only a hand-edited
    non-integer time there costs the scan that skips such values."""
    last = db.execute("SELECT MAX(open_time) FROM candles WHERE symbol=? AND interval=?", (symbol, interval)).fetchone()[0]
    if last is not None and not isinstance(last, int):
        last = db.execute("SELECT MAX(open_time) FROM candles WHERE symbol=? AND interval=? AND typeof(open_time)='integer'",
                          (symbol, interval)).fetchone()[0]
    return last


def _load_series(bulk: BulkReader, symbol: str, interval: str, lo: int, hi: int, last: int | None) -> Series:
    iv = INTERVAL_MS[interval]
    t, close, open_ = bulk.columns(
        "SELECT open_time, close, open FROM candles WHERE symbol=? AND interval=? AND open_time BETWEEN ? AND ? "
        "ORDER BY open_time", [symbol, interval, lo, hi], (None, None, None))
    if t.size == 0:
        return Series(symbol, interval, iv, lo, np.full(0, np.nan), last, np.full(0, np.nan))
    t = t.astype(np.int64)
    t0 = int(t[0])
    on_grid = (t - t0) % iv == 0
    at = (t[on_grid] - t0) // iv
    grids = []
    for col in (close, open_):
        g = np.full((int(t[-1]) - t0) // iv + 1, np.nan)
        c = col.astype(np.float64)[on_grid]
        g[at] = np.where(np.isfinite(c) & (c > 0), c, np.nan)
        grids.append(g)
    return Series(symbol, interval, iv, t0, grids[0], last, grids[1])


def _return_freed_memory() -> None:
    """Give the heap the reads freed back to the system (glibc keeps it otherwise: the columns are
    converted through temporaries of the same size, and on 10M predictions the process held about
    0.8 GB more than it used, which then added to the edge's own peak). No-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    with contextlib.suppress(ImportError):
        import pyarrow

        pyarrow.default_memory_pool().release_unused()


def _trimmed(read, *args):
    """``read(*args)``, then its freed temporaries returned, so the next read does not stack on them."""
    try:
        return read(*args)
    finally:
        _return_freed_memory()


def _from_configs(db, model: str, config_ids: list[str], horizon: int | None, band: float | None):
    """Per config id (same order, then one for decisions of unknown config): label spec, (version,
    sha256) and sample fraction."""
    found: dict[str, tuple[LabelSpec | None, tuple[str | None, str | None], float]] = {}
    for cid, payload in db.execute("SELECT config_id, payload FROM configs ORDER BY applied_at"):
        spec = label_spec_from_config(cid, payload, model)
        entry = json.loads(payload).get("models", {}).get(model) or {}
        sample = entry.get("sample", 1.0)
        found[cid] = (spec, (entry.get("version"), entry.get("sha256")),
                      float(sample) if isinstance(sample, int | float) else 1.0)
    got = [found.get(c, (None, (None, None), 1.0)) for c in config_ids] + [(None, (None, None), 1.0)]
    specs = tuple(apply_overrides(s or DEFAULT_LABEL, horizon, band) for s, _, _ in got)
    return specs, [v for _, v, _ in got], np.array([f for _, _, f in got])


def _versions(role: np.ndarray, cfg: np.ndarray, t: np.ndarray, per_cfg) -> tuple[VersionSeen, ...]:
    """Rows per (role, applied version): roles from the rows, versions from the decision's config
    (one entry per version, however many configurations it ran under)."""
    key = role.astype(np.int64) * 65_536 + cfg.astype(np.int64)
    seen: dict[tuple, list[int]] = {}
    for k in np.unique(key):
        sel = key == k
        r, c = divmod(int(k), 65_536)
        entry = (ROLE_CODES[r] if r < len(ROLE_CODES) else "unknown", *per_cfg[c])
        n, first, last = int(sel.sum()), int(t[sel].min()), int(t[sel].max())
        if entry in seen:
            acc = seen[entry]
            seen[entry] = [acc[0] + n, min(acc[1], first), max(acc[2], last)]
        else:
            seen[entry] = [n, first, last]
    return tuple(sorted((VersionSeen(*e, *v) for e, v in seen.items()), key=lambda v: v.first_ms))


def _model_rows(db, model: str, pred: Predictions, dec: Decisions, win: Window, config_ids, labelled,
                only: tuple[str, str] | None = None) -> ModelRows:
    """The model's rows in the window, with their decision's action, series and config; ``only`` =
    (role, sha256) keeps the rows of that artifact in that role (the activation gate judges
    exactly the file it would make vote)."""
    hit = pred.pos >= 0
    at = np.where(hit, pred.pos, 0)
    cfg = np.where(hit & (dec.config[at] >= 0), dec.config[at], len(config_ids)).astype(np.int16)
    unknown = ()
    if np.any(pred.action == -2):
        unknown = tuple(db.execute(
            "SELECT action, COUNT(*) FROM predictions WHERE model = ? AND candle_open_time > ? AND candle_open_time <= ? "
            "AND action NOT IN ('SELL','HOLD','BUY') GROUP BY action ORDER BY 2 DESC",
            (model, win.start_ms, win.end_ms)).fetchall())
    labels, per_cfg, fractions = labelled
    keep = slice(None)
    if only is not None:
        role, sha = only
        cfg_ok = np.array([v[1] == sha for v in per_cfg])
        keep = cfg_ok[cfg] & (pred.role == ROLE_CODES.index(role))
    sample = None
    unsampled = pred.status == UNSAMPLED
    if unsampled.any():  # a budgeted shadow: what it saw is analysed, and how much that was is said
        chosen = np.ones(pred.t.size, dtype=bool) if isinstance(keep, slice) else keep
        used = np.unique(fractions[cfg[chosen]])
        sample = SampleSeen(tuple(float(f) for f in used if f < 1.0), int((chosen & ~unsampled).sum()),
                            int((chosen & unsampled).sum()))
        keep = chosen & ~unsampled
    t = pred.t[keep]
    return ModelRows(
        model=model,
        t=t,
        series=np.where(hit, dec.series[at], -1).astype(np.int16)[keep],
        status=pred.status[keep],
        action=pred.action[keep],
        confidence=pred.confidence[keep],
        probs=pred.probs[keep],
        ensemble=np.where(hit, dec.action[at], -1).astype(np.int8)[keep],
        joined_late=pred.joined_late[keep],
        label=cfg[keep],
        labels=labels,
        unknown_actions=unknown,
        versions=_versions(pred.role[keep], cfg[keep], t, per_cfg),
        sample=sample,
    )


def read_snapshot(
    path: Path | str,
    hours: float,
    models: tuple[str, ...],
    *,
    until: int | None = None,
    horizon: int | None = None,
    band: float | None = None,
    only: dict[str, tuple[str, str]] | None = None,
    table: bool = False,
    hold_bars: int = 0,
) -> Snapshot:
    """Window, decision counts, the models' rows and the candles needed to score them; ``only``
    maps a model to (role, sha256): its rows of that artifact in that role only; ``table`` adds
    the decision table (the counterfactual and the money view), with candles for ``hold_bars``
    past the window."""
    if not (isinstance(hours, int | float) and math.isfinite(hours) and hours > 0):
        raise ConfigError(f"--hours must be a number > 0, got {hours!r}")
    store = TelemetryStore(path, readonly=True)
    db = store.connection
    try:
        db.execute("BEGIN")
        newest = db.execute(f"SELECT MAX(candle_open_time) FROM decisions WHERE {_TIME_SQL}").fetchone()[0]
        if newest is None:
            raise DataError(f"telemetry store {path} holds no decisions with a candle time; nothing to analyse yet")
        end = newest if until is None else until
        start = max(end - int(round(hours * HOUR_MS)), -1)  # a window longer than the epoch is all of it
        keys = _series_keys(db)
        for sym, iv in keys:
            if iv not in INTERVAL_MS:
                raise DataError(f"candles of {sym} have unknown interval {iv!r}")
        config_ids = [r[0] for r in db.execute("SELECT DISTINCT config_id FROM configs ORDER BY config_id")]
        symbols = sorted({sym for sym, _ in keys})
        order, infos = config_infos(db, config_ids) if table else ((), ())
        labels = {m: _from_configs(db, m, config_ids, horizon, band) for m in models}
        need_back = max(s.vol_window for specs, *_ in labels.values() for s in specs) + 2
        need_fwd = max([s.horizon for specs, *_ in labels.values() for s in specs] + [hold_bars]) + 1
        last = [_last_candle(db, s, i) for s, i in keys]
        bulk = BulkReader(db, store.uri)
        try:  # every bulk read at once, on a few threads
            with ThreadPoolExecutor(READ_THREADS) as pool:
                f_dec = pool.submit(_trimmed, read_decisions, bulk, start, end, keys, symbols, config_ids)
                f_pred = {m: pool.submit(_trimmed, read_predictions, bulk, m, start, end, symbols,
                                         m in order and any(c.weights[order.index(m)] is None for c in infos))
                          for m in dict.fromkeys((*models, *order))}
                f_ser = [pool.submit(_load_series, bulk, s, i, start - need_back * INTERVAL_MS[i],
                                     end + need_fwd * INTERVAL_MS[i], lt) for (s, i), lt in zip(keys, last, strict=True)]
                dec = f_dec.result()
                preds = {m: align(bulk, f.result(), dec, start, end) for m, f in f_pred.items()}
                series = tuple(f.result() for f in f_ser)
        finally:
            bulk.close()
        _return_freed_memory()  # the reads' temporaries, before the decision table is built
        acts = np.bincount(dec.action[dec.action >= 0], minlength=3)
        win = Window(start, end, float(hours), until is not None, int(dec.t.size),
                     int(dec.t.min()) if dec.t.size else None, int(dec.t.max()) if dec.t.size else None)
        rows = tuple(_model_rows(db, m, preds[m], dec, win, config_ids, labels[m], (only or {}).get(m))
                     for m in models)
        dt = build_table(order, infos, dec, preds) if table else None
        window_rows = tuple(int((preds[m].status != UNSAMPLED).sum()) for m in models)
        del preds
        _return_freed_memory()
        db.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise DataError(f"telemetry store {path} cannot be read: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a column holding what no writer of ours puts there
        raise DataError(f"telemetry store {path} holds rows the analysis cannot read "
                        f"({type(exc).__name__}: {exc}); was it edited by hand?") from None
    finally:
        store.close()
    return Snapshot(win, (int(acts[0]), int(acts[1]), int(acts[2])), series, rows, dt,
                    window_rows=window_rows, synthetic_decisions=int(dec.synthetic.sum()))
