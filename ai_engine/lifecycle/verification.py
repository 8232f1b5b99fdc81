"""``verify-shadow``: the spec's verification steps 3–4 and its success / fail criteria, automated.

Each criterion is PASS, FAIL or SKIP (not checkable from the sources given, e.g. log criteria
without ``--log``/``--journal``). Evidence comes from the telemetry store (configs, decisions,
intents), the registry (expected path and checksum) and the service log. Only decisions made under
the configuration in force count (those of earlier configurations in the window are reported as
excluded), and no criterion passes on no evidence: a log source without lines, or a window without
decisions, fails with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ai_engine.config import Settings
from ai_engine.exceptions import ConfigError, DataError

__all__ = ["Criterion", "counts_a_shadow", "parse_since", "read_log_lines", "restarts_since", "verify_shadow",
           "MAX_LOG_LINES_PER_MIN", "MAX_DISK_GROWTH_BYTES", "MAX_RESTARTS_24H"]

MAX_LOG_LINES_PER_MIN = 1000
MAX_DISK_GROWTH_BYTES = 5 * 1024**3
MAX_RESTARTS_24H = 2
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")
_JOURNAL_NOTE = re.compile(r"^-- .* --$")


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    status: str  # PASS | FAIL | SKIP | INFO
    detail: str


def parse_since(text: str) -> float:
    """``10m``, ``2h``, ``1d``, ``90s`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m:
        raise ConfigError(f"--since {text!r} is not valid: expected a number with s, m, h or d, e.g. 10m")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def read_log_lines(since_s: float, log_file: Path | None, journal: bool, now: float | None = None) -> list[str] | None:
    """Service log lines of the window; lines of a log file are kept by their leading timestamp."""
    now = time.time() if now is None else now
    if journal:
        try:
            out = subprocess.run(
                ["journalctl", "-q", "-u", "quantum-ai-engine.service", "--since", f"-{int(since_s)}s", "-o", "cat",
                 "--no-pager"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise DataError(f"journalctl failed: {exc}") from None
        # journalctl's own notes ("-- No entries --", "-- Boot … --") are not lines of the service
        return [ln for ln in out.splitlines() if not _JOURNAL_NOTE.match(ln)]
    if log_file is None:
        return None
    try:
        lines = Path(log_file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"log file {log_file} cannot be read: {exc}") from None
    keep, inside = [], False
    for line in lines:
        m = _TS.match(line)
        if m:  # logging's asctime is local time
            inside = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() >= now - since_s
        if inside:
            keep.append(line)
    return keep


# File bytes per row byte (pages not full, indexes repeating keys, primed candles): 0.73-1.18
# measured on three stores of ~1,600 decisions (demo, tests); 1.5 keeps the projection above that.
_PAGE_OVERHEAD = 1.5


def _rows_bytes(db, t0_ms: int) -> int:
    """Bytes of the rows recorded for the decisions made since ``t0_ms`` (decision, intents,
    predictions, candle), as SQLite stores their values."""
    w = "SELECT event_id, candle_open_time, symbol FROM decisions WHERE decided_at >= ?"
    q = f"""SELECT
      (SELECT COALESCE(SUM(length(payload) + length(event_id) + 120), 0) FROM decisions WHERE decided_at >= :t),
      (SELECT COALESCE(SUM(length(payload) + 2 * length(event_id)), 0) FROM intents
         WHERE decision_event_id IN (SELECT event_id FROM ({w.replace('?', ':t')}))),
      (SELECT COALESCE(SUM(length(event_id) + length(model) + length(symbol) + length(role) + length(status)
         + COALESCE(length(action), 0) + COALESCE(length(version), 0) + COALESCE(length(sha256), 0)
         + COALESCE(length(reason), 0) + 96), 0) FROM predictions
         WHERE event_id IN (SELECT event_id FROM ({w.replace('?', ':t')}))),
      (SELECT COUNT(*) * 64 FROM decisions WHERE decided_at >= :t)"""
    return int(sum(db.execute(q, {"t": t0_ms}).fetchone()))


def _store_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def counts_a_shadow(decision: dict, voters: int) -> bool:
    """A decision whose ``consensus_count`` counts more agreeing voters than it has, or than the
    configuration's ``voters``: a shadow was counted (the spec's "consensus count 4" while one shadows)."""
    agree = sum(1 for e in decision.get("model_breakdown", {}).values()
                if not e.get("shadow") and e.get("status") == "ok" and e.get("action") == decision["action"])
    return decision["consensus_count"] > min(agree, voters)


def restarts_since(db, since_ms: int) -> tuple[int, int, int]:
    """(starts, crashes, planned) recorded in ``configs`` since ``since_ms``: a start is planned when
    the run before it stopped cleanly (``serve`` records a 'stop' row as it ends on SIGTERM), a
    crash otherwise (killed, OOM, a fault)."""
    events = db.execute("SELECT applied_at, reason FROM configs WHERE reason IN ('start', 'stop') "
                        "ORDER BY applied_at").fetchall()
    crashes = planned = starts = 0
    previous = None  # reason of the event before this start: None (first), 'start' (no clean stop), 'stop'
    for at, reason in events:
        if reason == "start" and at >= since_ms:
            starts += 1
            crashes += previous == "start"
            planned += previous == "stop"
        previous = reason
    return starts, crashes, planned


def verify_shadow(settings: Settings, model: str, since_s: float, log_lines: list[str] | None,
                  log_source: str = "the log") -> list[Criterion]:
    """Check the deployment of ``model`` in shadow over the last ``since_s`` seconds (or since the
    service's last start, when that is later)."""
    from ai_engine.lifecycle.registry import Registry
    from ai_engine.model_slots import display_name, resolve_model_path
    from ai_engine.telemetry.sqlite import TelemetryStore

    store = TelemetryStore(settings.store_path, readonly=True)
    db = store.connection
    now_ms = int(time.time() * 1000)
    t0 = now_ms - int(since_s * 1000)
    out: list[Criterion] = []
    add = lambda n, ok, d: out.append(Criterion(n, "PASS" if ok else "FAIL", d))  # noqa: E731

    # 1. loaded from the expected path with the expected checksum
    row = db.execute("SELECT config_id, payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()
    expected_path, _ = resolve_model_path(settings, model)
    staged = Registry(settings.models_dir).find_by_path(expected_path)
    if row is None:
        add("model loaded", False, "no applied configuration recorded in the store; is the service running?")
    else:
        cfg = json.loads(row[1])["models"].get(model, {})
        problems = []
        if cfg.get("status") != "active":
            problems.append(f"status {cfg.get('status')} ({cfg.get('reason')})")
        if cfg.get("role") != "shadow":
            problems.append(f"role {cfg.get('role')}, expected shadow")
        if cfg.get("path") and Path(cfg["path"]).resolve() != expected_path.resolve():
            problems.append(f"loaded {cfg.get('path')}, expected {expected_path}")
        if staged is None:
            problems.append(f"{expected_path} is not a staged registry version")
        elif cfg.get("sha256") != staged.sha256:
            problems.append(f"sha256 {str(cfg.get('sha256'))[:16]}… differs from registry {staged.sha256[:16]}…")
        add("model loaded", not problems, "; ".join(problems) or
            f"config {row[0]}: {expected_path.name} sha256 {staged.sha256[:16]}… role shadow")

    # The deployment in force: decisions of the latest configuration, since it was applied (a
    # restart that keeps it keeps its stint); decisions of earlier ones are not its evidence.
    current = row[0] if row is not None else None
    in_force_ms = None
    if current is not None:
        other = db.execute("SELECT MAX(applied_at) FROM configs WHERE config_id != ? AND reason != 'stop'",
                           (current,)).fetchone()[0]
        in_force_ms = db.execute("SELECT MIN(applied_at) FROM configs WHERE config_id = ? AND applied_at > ? "
                                 "AND reason != 'stop'", (current, -1 if other is None else other)).fetchone()[0]
    t_cfg = max(t0, in_force_ms or t0)
    n_window = db.execute("SELECT COUNT(*) FROM decisions WHERE decided_at >= ?", (t0,)).fetchone()[0]
    decisions = [json.loads(p) for (p,) in db.execute(
        "SELECT payload FROM decisions WHERE decided_at >= ? AND config_id = ?", (t_cfg, current))]
    intents = [json.loads(p) for (p,) in db.execute(
        "SELECT i.payload FROM intents i JOIN decisions d ON d.event_id = i.decision_event_id "
        "WHERE d.decided_at >= ? AND d.config_id = ?", (t_cfg, current))]
    excluded = n_window - len(decisions)
    not_counted = (f"; {excluded} decisions of the window made under an earlier configuration not counted"
                   if excluded else "")
    missing = sum(1 for d in decisions + intents if not (d.get("model_breakdown", {}).get(model) or {}).get("shadow"))
    add("shadow entry in every decision and intent", bool(decisions) and missing == 0,
        (f"{len(decisions)} decisions, {len(intents)} intents, {missing} without '{model}' shadow=true"
         if decisions else "no decisions under the configuration in force in the window: nothing to verify")
        + not_counted)
    # 3. consensus never counts the shadow: never more than the voters that agree, nor than the
    # configuration's voters (a shadow counted and untagged reaches 4 of 3)
    voters = sum(1 for m in (json.loads(row[1]).get("models", {}).values() if row else ())
                 if m.get("role") == "voter" and m.get("status", "active") == "active")
    over = sum(counts_a_shadow(d, voters) for d in decisions)
    counts = sorted({d["consensus_count"] for d in decisions})
    add("consensus_count excludes the shadow model", bool(decisions) and over == 0,
        f"{over} decisions count more agreeing voters than exist (configuration: {voters} voters); "
        f"consensus_count values {counts}" if decisions else "no decisions under the configuration in force: "
        "nothing to verify")

    # 4. restarts: each start after the first is planned when the run before it stopped cleanly
    # (serve records a 'stop' row as it ends on SIGTERM), a crash otherwise (killed, OOM, a fault)
    starts, crashes, planned = restarts_since(db, now_ms - 86_400_000)
    add("restarts in 24 h", crashes <= MAX_RESTARTS_24H,
        f"{starts} starts: {crashes} after a crash or kill (the run before never stopped cleanly), {planned} after "
        f"a planned stop; fail above {MAX_RESTARTS_24H} crashes")

    # Rates are per second of the window the service has been deployed: --since 10m one minute
    # after its first start holds one minute of evidence, not ten.
    # Likewise from when the configuration in force was applied (a shadow enabled by a reload).
    first_start = db.execute("SELECT MIN(applied_at) FROM configs WHERE reason='start'").fetchone()[0]
    since_ms = max(first_start or 0, in_force_ms or 0) or None
    observed_s = since_s if since_ms is None else max(1.0, min(since_s, (now_ms - since_ms) / 1000.0))
    ago = f"{observed_s / 60.0:.3g} min ago"
    what = f"the first start was {ago}" if since_ms == first_start else f"the configuration in force was applied {ago}"
    seen = f"{observed_s / 60.0:.3g} min" + (f" ({what})" if observed_s < since_s else "")

    # 5. publish rate (store), informational
    minutes = observed_s / 60.0
    out.append(Criterion("publish rate", "INFO", f"{len(intents)} intents in {seen} ({len(intents) / minutes:.2f}/min)"))

    # 6. telemetry disk growth, projected to 24 h from the bytes the window's rows hold. Not from
    # the file's size: right after a start that is mostly fixed (primed candles, the WAL, which is
    # reused, not grown), and 1.5 MB over the first 34 decisions projected 7 GB a day.
    size = _store_size(settings.store_path)
    written = _rows_bytes(db, t0) * _PAGE_OVERHEAD
    window_s = max(1.0, min(since_s, (now_ms - (first_start or t0)) / 1000.0))
    projected = written * 86400.0 / window_s
    add("telemetry disk growth", projected <= MAX_DISK_GROWTH_BYTES,
        f"store {size / 1e6:.1f} MB; {n_window} decisions wrote ~{written / 1e3:.0f} kB in {window_s / 60:.3g} min; "
        f"projected growth {projected / 1e9:.3f} GB/24 h (limit 5 GB)")
    store.close()

    # 7. log criteria
    if log_lines is None:
        for name in ("shadow log lines", "errors", "log volume"):
            out.append(Criterion(name, "SKIP", "give --log FILE or --journal"))
        return out
    if not log_lines:  # a running service always logs: silence is no evidence (no journal, wrong file)
        made = f", while {n_window} decisions were made" if n_window else ""
        for name in ("shadow log lines", "errors", "log volume"):
            add(name, False, f"no log lines at all in the window from {log_source}{made}: cannot verify; "
                             "is that the service's log (journal unavailable, wrong file)?")
        return out
    configured = settings.all_models().get(model)
    disp = display_name(model, configured.kind if configured is not None else None)
    shadow_n = sum(1 for ln in log_lines if f"[SHADOW] {disp} |" in ln)
    want = min(observed_s / max(settings.shadow_log_interval_s, 1e-9), len(decisions)) * 0.5
    add("shadow log lines", bool(decisions) and shadow_n >= max(1.0, want),
        f"{shadow_n} [SHADOW] {disp} lines; expected ≥ {max(1.0, want):.0f} (one per {settings.shadow_log_interval_s:g} s)"
        if decisions else f"{shadow_n} [SHADOW] {disp} lines, but no decisions under the configuration in force: "
        "nothing to verify")
    errors = sum(1 for ln in log_lines if "error" in ln.lower())
    add("errors", errors <= 2, f"{errors} lines mentioning error (0-2 tolerated)")
    rate = len(log_lines) / minutes
    add("log volume", rate <= MAX_LOG_LINES_PER_MIN, f"{rate:.1f} lines/min (limit {MAX_LOG_LINES_PER_MIN})")
    return out
