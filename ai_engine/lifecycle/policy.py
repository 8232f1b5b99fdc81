"""Promotion and rollback by policy: the running ``serve`` takes a challenger from shadow to option B
to option A on evidence, and rolls it back on the spec's FAIL criteria, without an operator.

The policy (``AI_ENGINE_POLICY*`` keys, ``config.PolicyConfig``) acts on one of the four models
(``AI_ENGINE_POLICY_MODEL``) while the env file runs it in shadow, and follows the artifact that
file names (by sha256): a new version in shadow starts a new run. Stages: ``shadow`` → after
``SHADOW_HOURS`` of its shadow predictions and ``MIN_PREDICTIONS`` of them, a READY gate verdict and
an edge that is not WORSE → ``option_b`` (its B weight, the others rebalanced) → after ``B_HOURS``
voting with a live edge (on its newest ``LIVE_HOURS`` of voting rows) that is not WORSE →
``option_a``. Hours are market hours of the recorded predictions (the analysis's clock: a paced
replay runs faster than the wall). An INCONCLUSIVE verdict, or an edge that cannot be computed
yet, waits; NOT_READY or WORSE in shadow holds (option C); nothing is ever promoted on no
evidence. Each step is ``activation.activate``, so it passes the same gate, edit, validation, audit
and reload as ``models activate``; ``dry-run`` only says what it would do.

Two watchers act, both reading the store ``serve`` writes:

* ``PolicyProcess`` (``ai-engine policy run`` in a child process of ``serve``, nice 10, off the
  decision CPU, ended with it): the analysis, every ``INTERVAL_S``; promotions, and the rollback of
  a promoted model whose live edge (its own voting rows) turns WORSE. A decision never waits for it.
* ``Guard`` (in ``serve`` between two candles, a few indexed reads): the spec's FAIL criteria —
  more than 2 crashes in 24 h, a decision counting a shadow (consensus 4 of 3), store growth above
  5 GB since the run began, more than 1000 log lines in a minute — roll back before the next candle.

A rollback is ``rollback.rollback`` at the level the policy names, then the stronger ones if that
one is refused (fast needs READY gates, full and nuclear a ``models backup``): each is validated on
a copy before it replaces the env file, so a refused one leaves the configuration in force. Every
outcome is logged, audited and announced on ``<prefix>:stream:lifecycle`` through the store's
outbox, once. The run's state (``$AI_ENGINE_HOME/policy.json``, under a lock) survives restarts, and
an operator pauses (promotions stop; the guard still watches), resumes or aborts it
(``ai-engine policy``).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ai_engine.config import Settings, load_settings
from ai_engine.exceptions import AIEngineError, ConfigError, DataError, TransientError
from ai_engine.lifecycle.audit import append_audit
from ai_engine.lifecycle.envfile import write_atomic
from ai_engine.lifecycle.verification import (
    MAX_DISK_GROWTH_BYTES,
    MAX_LOG_LINES_PER_MIN,
    MAX_RESTARTS_24H,
    counts_a_shadow,
    restarts_since,
)

__all__ = ["STATE_FILE_NAME", "LIFECYCLE_STREAM", "Guard", "LogRate", "Outcome", "PolicyProcess", "PolicyState",
           "control", "evaluate", "read_state", "roll_back", "run_policy", "step"]

log = logging.getLogger("ai_engine.policy")

STATE_FILE_NAME = "policy.json"
LIFECYCLE_STREAM = "lifecycle"
ACTIVE = ("shadow", "option_b", "option_a")  # stages the policy and its guard act in
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class PolicyState:
    """One policy run: the artifact it follows, where it stands, and what it last said."""

    model: str
    sha256: str
    stage: str  # shadow | option_b | option_a | rolled_back | aborted
    paused: bool
    started_ms: int  # wall clock: when the run began (crashes and store growth count from it)
    stage_since_ms: int  # wall clock: when the stage began
    store_bytes: int  # the store's size when the run began
    said: str = ""  # the latest outcome
    said_key: str = ""  # what the last announcement said: an outcome is announced when this changes

    @classmethod
    def from_json(cls, d: dict) -> PolicyState:
        return cls(**{k: d[k] for k in cls.__slots__ if k in d})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation concludes: wait, hold, promote (to ``target``) or rollback (at ``target``).
    ``key`` is what must change for it to be announced again (a wait's progress is not news)."""

    action: str
    target: str | None
    reason: str
    key: str = ""


# -- state ---------------------------------------------------------------------------------------
def _state_path(home: Path) -> Path:
    return Path(home) / STATE_FILE_NAME


def read_state(home: Path) -> PolicyState | None:
    """The policy's state, or None before its first run."""
    try:
        return PolicyState.from_json(json.loads(_state_path(home).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"policy state {_state_path(home)} is unreadable ({exc}); remove it to start over") from None


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise read-modify-write of the state between serve, its policy process and the CLI."""
    Path(home).mkdir(parents=True, exist_ok=True)
    with open(Path(home) / f".{STATE_FILE_NAME}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_state(home: Path, state: PolicyState) -> None:
    write_atomic(_state_path(home), json.dumps(asdict(state), indent=1, sort_keys=True) + "\n")


def _update(home: Path, fn: Callable[[PolicyState | None], PolicyState | None]) -> PolicyState | None:
    with _locked(home):
        old = read_state(home)
        new = fn(old)
        if new is not None and new != old:
            _write_state(home, new)
        return new


# -- announcements -------------------------------------------------------------------------------
def announce(settings: Settings, store, event: str, payload: dict, level: int = logging.INFO) -> None:
    """A log line, and with a bus the event ``lifecycle.<event>`` on the lifecycle stream (through
    ``store``'s outbox, so it is delivered in order, once, after an outage too)."""
    log.log(level, "policy %s: %s", event, payload.get("reason", ""))
    if settings.redis_url and store is not None:
        body = {"event": event, "at_ms": int(time.time() * 1000)} | payload
        try:
            store.record_event(LIFECYCLE_STREAM, str(uuid.uuid4()), f"lifecycle.{event}", body)
        except TransientError as exc:
            log.error("policy %s not spooled for the bus: %s", event, exc)


def _say(settings: Settings, store, state: PolicyState, event: str, reason: str, level: int = logging.INFO,
         key: str = "") -> PolicyState:
    """Record ``reason`` as the run's latest outcome, and announce it unless the last announcement
    had the same ``key`` (default: the event and its reason); returns the state remembering it."""
    said, key = f"{event}: {reason}", key or f"{event}: {reason}"
    if key != state.said_key:
        announce(settings, store, event, {"model": state.model, "sha256": state.sha256, "stage": state.stage,
                                          "reason": reason, "dry_run": bool(settings.policy and settings.policy.dry_run)},
                 level)
    elif said == state.said:
        return state
    def fn(s: PolicyState | None) -> PolicyState | None:  # not onto a stage that changed meanwhile
        return replace(s, said=said, said_key=key) if s is not None and s.stage == state.stage else s

    return _update(settings.home, fn) or state


# -- what the store says -------------------------------------------------------------------------
def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _artifact(settings: Settings, model: str) -> tuple[str, str] | None:
    """(role, sha256) of the file the env file runs ``model`` with; None when it runs none
    (an extra shadow not, or no longer, configured) or the file cannot be read."""
    from ai_engine.agents.artifacts import sha256_file
    from ai_engine.model_slots import resolve_model_path

    cfg = settings.all_models().get(model)
    if cfg is None:
        return None
    try:
        return cfg.role.value, sha256_file(resolve_model_path(settings, model)[0])
    except OSError:
        return None


def _span(db, model: str, sha: str, role: str) -> tuple[int, int, int] | None:
    """(first, last candle time, rows) of ``model``'s predictions of ``sha`` in ``role``."""
    first, last, n = db.execute("SELECT MIN(candle_open_time), MAX(candle_open_time), COUNT(*) FROM predictions "
                                "WHERE model=? AND sha256=? AND role=?", (model, sha, role)).fetchone()
    return None if not n else (first, last, n)


def evaluate(settings: Settings, state: PolicyState) -> Outcome:
    """The next step of the run in ``state``, from the store (the analysis of the model's own rows)."""
    from contextlib import closing

    from ai_engine.analysis.analyze import analyze
    from ai_engine.telemetry.sqlite import TelemetryStore
    from ai_engine.types import INTERVAL_MS

    pol = settings.policy
    role = "shadow" if state.stage == "shadow" else "voter"
    rows_of = state.model if role == "shadow" else pol.kind  # a promoted extra shadow votes as its model
    with closing(TelemetryStore(settings.store_path, readonly=True)) as store:
        span = _span(store.connection, rows_of, state.sha256, role)
    if span is None:
        return Outcome("wait", None, f"no {role} predictions of {rows_of} ({state.sha256[:12]}…) recorded yet",
                       "wait: no predictions")
    first, last, n = span
    hours = (last - first + INTERVAL_MS[settings.interval]) / 3_600_000
    need_h, need_n = (pol.shadow_hours, pol.min_predictions) if role == "shadow" else (pol.b_hours, 0)
    if role == "shadow" and (hours < need_h or n < need_n):
        return Outcome("wait", None, f"{hours:g} h and {n} shadow predictions of {need_h:g} h and {need_n}",
                       "wait: the plan's hours and predictions")
    if role == "voter" and hours < pol.live_hours:  # a few rows' edge is noise (10 rows read WORSE by chance)
        return Outcome("wait", None, f"{hours:g} h voting; the live edge is judged on {pol.live_hours:g} h",
                       "wait: the live edge's hours")
    window = hours if role == "shadow" else pol.live_hours  # the live edge: its newest voting rows
    try:
        result = analyze(settings.store_path, window, model=rows_of, only=(role, state.sha256))
    except (DataError, ConfigError) as exc:
        return Outcome("wait", None, f"no analysis yet: {exc}", "wait: no analysis")
    edge = result.edge
    edge_text = f"edge {edge.verdict}" if edge is not None else f"no edge yet ({result.edge_error})"
    if role == "voter":
        if edge is not None and edge.verdict == "WORSE":
            return Outcome("rollback", pol.rollback_on_worse, f"live edge WORSE over the last {window:g} h voting: "
                                                              f"{edge.reason}")
        if state.stage == "option_a":
            return Outcome("hold", None, f"option A; live {edge_text}", f"hold: option A, live {edge_text}")
        if edge is None or hours < need_h:
            return Outcome("wait", None, f"option B for {hours:g} h of {need_h:g}; live {edge_text}",
                           f"wait: option B, live {edge_text}")
        return Outcome("promote", "option_a", f"{hours:g} h at option B, live {edge_text}")
    verdict = str(result.verdict)
    gates = f"gates {verdict} ({result.primary.gates_passed}/4) on {result.primary.n_rows} predictions, {edge_text}"
    if verdict == "INCONCLUSIVE" or edge is None:
        return Outcome("wait", None, gates, f"wait: gates {verdict}, {edge_text}")
    if verdict != "READY" or edge.verdict == "WORSE":
        return Outcome("hold", None, f"option C, keeps shadowing: {gates}", f"hold: gates {verdict}, {edge_text}")
    return Outcome("promote", "option_b", f"{hours:g} h in shadow, {gates}")


# -- acting --------------------------------------------------------------------------------------
def roll_back(settings: Settings, level: str, reason: str, store=None) -> str | None:
    """Roll ``settings.policy.model`` back at ``level``, else at the next stronger level that is
    allowed (a refused edit changes nothing); returns the level applied, None when none was.
    The run ends as ``rolled_back`` either way, with an alert. Under the state's lock, so a
    promotion of the policy process never lands on top of it (nor it on a half-made promotion)."""
    from ai_engine.lifecycle.rollback import ROLLBACK_LEVELS, rollback

    pol = settings.policy
    with _locked(settings.home):
        state = read_state(settings.home)
        if state is None or pol is None or state.stage not in ACTIVE:
            return None
        if pol.dry_run:
            announce(settings, store, "alert", {"model": pol.model, "sha256": state.sha256, "stage": state.stage,
                                                "severity": "warning", "dry_run": True,
                                                "reason": f"dry-run: would roll back ({level}): {reason}"},
                     logging.WARNING)
            return None
        done, refusals = None, []
        for lvl in ROLLBACK_LEVELS[ROLLBACK_LEVELS.index(level):]:
            try:
                rollback(settings, lvl, pol.kind)
            except (AIEngineError, OSError) as exc:
                refusals.append(f"{lvl}: {exc}")
                continue
            done = lvl
            break
        what = f"rolled back ({done})" if done else "ROLLBACK REFUSED at every level, configuration unchanged"
        said = f"alert: {what}: {reason}"
        _write_state(settings.home, replace(state, stage="rolled_back", stage_since_ms=int(time.time() * 1000),
                                            said=said, said_key=said))
    append_audit(settings.home, "policy.rollback", before={"stage": state.stage}, after={"stage": "rolled_back"},
                 model=pol.model, sha256=state.sha256, level=done, reason=reason, refused=refusals)
    announce(settings, store, "alert", {"model": pol.model, "sha256": state.sha256, "stage": state.stage,
                                        "severity": "critical", "level": done, "refused": refusals,
                                        "reason": f"{what}: {reason}"}, logging.ERROR)
    return done


def _promote(settings: Settings, state: PolicyState, target: str, reason: str, store) -> PolicyState:
    from ai_engine.lifecycle.activation import activate, activation_gate

    pol = settings.policy
    weight, rebalance = (pol.b_weight, pol.b_rebalance) if target == "option_b" else (pol.a_weight, pol.a_rebalance)
    label = "option B" if target == "option_b" else "option A"
    if pol.dry_run:
        return _say(settings, store, state, "dry_run", f"would activate {pol.model} at {weight:g}% ({label}): {reason}",
                    key=f"would activate {label}")
    # the gate needs every shadow row of the file, not just a recent window; an extra shadow
    # becomes its model's voter at option B, and its rows stay the evidence at option A
    key = pol.model if target == "option_b" else pol.kind
    shadowed_as = pol.model if pol.model != pol.kind and target == "option_a" else None
    gate, refused = None, None
    try:  # the slow part, before the lock: a FAIL rollback in serve never waits on this analysis
        gate = activation_gate(settings, key, 24.0 * 365 * 100, shadowed_as=shadowed_as)
    except AIEngineError as exc:
        refused = f"{label} refused, nothing changed: {exc}"
    with _locked(settings.home):
        if (cur := read_state(settings.home)) is None or cur.paused or cur.stage != state.stage:
            return cur or state  # paused, aborted or rolled back while the analysis ran
        new = cur
        if gate is not None:
            try:
                res = activate(settings, key, weight, rebalance, shadowed_as=shadowed_as, gate=gate)
            except AIEngineError as exc:
                refused = f"{label} refused, nothing changed: {exc}"
            else:
                said = f"promote: {label} ({weight:g}%): {reason}"
                new = replace(cur, stage=target, stage_since_ms=int(time.time() * 1000), said=said, said_key=said)
                _write_state(settings.home, new)
                append_audit(settings.home, "policy.promote", before={"stage": cur.stage}, after={"stage": target},
                             model=pol.model, sha256=cur.sha256, weight=weight, rebalance=rebalance, reason=reason,
                             reload_pid=res.signalled_pid)
    if refused is not None:
        return _say(settings, store, new, "hold", refused, logging.WARNING, key=f"refused {label}")
    announce(settings, store, "promote", {"model": pol.model, "sha256": new.sha256, "stage": target, "weight": weight,
                                          "rebalance": rebalance, "reason": f"{label} ({weight:g}%): {reason}"})
    return new


def _reconcile(settings: Settings, store) -> PolicyState | None:
    """The run for the artifact the env file names now: a new one when a new version shadows."""
    pol = settings.policy
    art = _artifact(settings, pol.model)
    running = {a[1] for a in (art, _artifact(settings, pol.kind)) if a is not None}  # in shadow, or promoted
    began: list[PolicyState] = []

    def fn(old: PolicyState | None) -> PolicyState | None:
        if (old is not None and old.model == pol.model and old.sha256 in running) or art is None \
                or art[0] != "shadow":
            return old  # the run goes on, or a voter the policy did not bring in: not its business
        now = int(time.time() * 1000)
        began.append(PolicyState(pol.model, art[1], "shadow", False, now, now, _store_bytes(settings.store_path)))
        return began[0]

    new = _update(settings.home, fn)
    if began:
        append_audit(settings.home, "policy.start", before=None, after=asdict(new))
        new = _say(settings, store, new, "start", f"following {pol.model} {art[1][:12]}… in shadow")
    return new if new is not None and new.model == pol.model and new.sha256 in running else None


def step(settings: Settings, store=None) -> Outcome | None:
    """One round of the policy: find the run, evaluate it, act. None when there is nothing to do."""
    state = _reconcile(settings, store)
    if state is None or state.stage not in ACTIVE:
        return None
    if state.paused and state.stage == "shadow":
        return Outcome("wait", None, "paused by the operator", "paused")
    out = evaluate(settings, state)
    if out.action == "rollback" and settings.policy.dry_run:  # said once, not at every round
        _say(settings, store, state, "alert", f"dry-run: would roll back ({out.target}): {out.reason}",
             logging.WARNING, key="would roll back")
    elif out.action == "rollback":
        roll_back(settings, out.target, out.reason, store)
    elif out.action == "promote" and not state.paused:
        _promote(settings, state, out.target, out.reason, store)
    else:
        _say(settings, store, state, out.action, out.reason, key=out.key)
    return out


def run_policy(env_file: Path, stop: threading.Event) -> None:
    """The policy process's loop: re-read the env file (a reload may have changed it), step, sleep."""
    from ai_engine.telemetry.sqlite import TelemetryStore

    store = None
    while not stop.is_set():
        interval = 5.0
        try:
            settings = load_settings(env_file)
            if settings.policy is not None:
                interval = settings.policy.interval_s
                if store is None and settings.redis_url:
                    store = TelemetryStore(settings.store_path, outbox=True)
                step(settings, store)
        except (AIEngineError, OSError) as exc:  # a bad edit by hand, a store being replaced: next round
            log.error("policy round failed: %s", exc)
        stop.wait(interval)
    if store is not None:
        store.close()


def control(settings: Settings, what: str) -> PolicyState:
    """The operator's ``pause``, ``resume`` or ``abort`` of the current run, audited and announced."""
    def fn(s: PolicyState | None) -> PolicyState:
        if s is None or s.stage not in ACTIVE:
            raise ConfigError(f"no policy run to {what} (state: {s.stage if s else 'none'}); a model put in shadow "
                              "starts one while AI_ENGINE_POLICY is on or dry-run")
        if what == "abort":
            return replace(s, stage="aborted", stage_since_ms=int(time.time() * 1000))
        return replace(s, paused=what == "pause")

    from contextlib import closing

    from ai_engine.telemetry.sqlite import TelemetryStore

    before = read_state(settings.home)
    after = _update(settings.home, fn)
    append_audit(settings.home, f"policy.{what}", before=asdict(before) if before else None, after=asdict(after))
    with closing(TelemetryStore(settings.store_path, outbox=True)) if settings.redis_url else contextlib.nullcontext() as store:
        announce(settings, store, what, {"model": after.model, "sha256": after.sha256, "stage": after.stage,
                                         "reason": f"{what} by the operator"})
    return after


# -- the guard in serve --------------------------------------------------------------------------
class LogRate(logging.Handler):
    """Counts the service's log lines over the last minute (the spec's log-spam criterion)."""

    def __init__(self) -> None:
        super().__init__()
        self._times: collections.deque[float] = collections.deque(maxlen=MAX_LOG_LINES_PER_MIN + 1)

    def emit(self, record: logging.LogRecord) -> None:
        self._times.append(record.created)

    def per_minute(self, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - 60.0
        return sum(1 for t in self._times if t >= cutoff)


class Guard:
    """The spec's FAIL criteria, checked by ``serve`` after each batch from its own store: cheap
    (indexed reads of what is new since the last check), so a rollback lands before the next candle."""

    def __init__(self, store, log_rate: LogRate) -> None:
        self.store = store
        self.log_rate = log_rate
        self._seen = store.connection.execute("SELECT COALESCE(MAX(rowid), 0) FROM decisions").fetchone()[0]
        self._voters: dict[str, int] = {}
        self._reported: set[tuple[str, str]] = set()

    def _voters_of(self, config_id: str) -> int:
        if config_id not in self._voters:
            row = self.store.connection.execute("SELECT payload FROM configs WHERE config_id=? LIMIT 1",
                                                (config_id,)).fetchone()
            models = json.loads(row[0]).get("models", {}) if row else {}
            self._voters[config_id] = sum(1 for m in models.values()
                                          if m.get("role") == "voter" and m.get("status", "active") == "active")
        return self._voters[config_id]

    def failure(self, state: PolicyState) -> tuple[str, str] | None:
        """The first FAIL criterion met since the run began, as (criterion, why), or None."""
        db = self.store.connection
        rows = db.execute("SELECT rowid, event_id, config_id, payload FROM decisions WHERE rowid > ? ORDER BY rowid",
                          (self._seen,)).fetchall()
        if rows:
            self._seen = rows[-1][0]
        for _, event_id, config_id, payload in rows:
            d = json.loads(payload)
            if counts_a_shadow(d, self._voters_of(config_id)):
                return "consensus", (f"decision {event_id} counts a shadow: consensus_count {d['consensus_count']} "
                                     f"with {self._voters_of(config_id)} voters")
        _, crashes, _ = restarts_since(db, max(state.started_ms, int(time.time() * 1000) - DAY_MS))
        if crashes > MAX_RESTARTS_24H:
            return "crashes", f"{crashes} crashes in 24 h (more than {MAX_RESTARTS_24H})"
        grown = _store_bytes(self.store.path) - state.store_bytes
        if grown > MAX_DISK_GROWTH_BYTES:
            return "disk", f"telemetry store grew {grown / 1e9:.2f} GB since the run began (more than 5 GB)"
        rate = self.log_rate.per_minute()
        if rate > MAX_LOG_LINES_PER_MIN:
            return "log", f"{rate} log lines in the last minute (more than {MAX_LOG_LINES_PER_MIN})"
        return None

    def check(self, settings: Settings) -> bool:
        """Roll back when a criterion fails; True when the env file was changed (reload now)."""
        if settings.policy is None:
            return False
        state = read_state(settings.home)
        if state is None or state.stage not in ACTIVE or state.model != settings.policy.model:
            return False
        found = self.failure(state)
        if found is None or (settings.policy.dry_run and (state.sha256, found[0]) in self._reported):
            return False
        self._reported.add((state.sha256, found[0]))  # a dry run says each criterion once per run
        return roll_back(settings, settings.policy.rollback_on_fail, f"FAIL criterion: {found[1]}", self.store) is not None


class PolicyProcess:
    """``serve``'s policy as ``ai-engine policy run`` in a process of its own (nice 10, off the
    decision CPU, ended with the service): its analysis never takes the engine's interpreter lock."""

    def __init__(self, settings: Settings) -> None:
        from ai_engine.child_process import child_args

        cmd = [sys.executable, "-m", "ai_engine.cli.main", "policy", "run", "--env-file", str(settings.env_file),
               *child_args(settings)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        log.info("policy %s for %s runs in its own process (pid %d)",
                 "dry-run" if settings.policy.dry_run else "on", settings.policy.model, self._proc.pid)

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def close(self) -> None:
        from ai_engine.child_process import stop_child

        stop_child(self._proc)

