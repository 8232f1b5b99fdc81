"""The long-running service: the decision path on a live candle source, fit for systemd.

One thread decides; signal handlers only set flags and write a byte to a self-pipe (never a lock,
which the interrupted thread might hold), so SIGTERM lets the decision in flight finish and
SIGHUP reloads between two candles (``load_settings`` on the env file, then the engine's
all-or-nothing ``reload``): no candle is skipped or decided twice across a reload. The file source
paces candles from CSVs and resumes after the last candle already decided in the store, priming the
streaming features with the history before that point. The live sources (Redis klines stream,
Binance websocket) prime from the store's ``candles`` table (Binance: from a REST backfill when the
store has none), read with short timeouts so signals are served within a second, skip candles the
store already decided (redeliveries) and acknowledge a batch only once its decisions are recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ai_engine.child_process import child_args, stop_child
from ai_engine.config import Settings, load_settings
from ai_engine.exceptions import ConfigError, DataError, TransientError
from ai_engine.health import HealthServer, sd_notify
from ai_engine.lifecycle.envfile import write_atomic
from ai_engine.lifecycle.reload_signal import PID_FILE_NAME, read_pid
from ai_engine.types import INTERVAL_MS, Candle

__all__ = ["BinanceSource", "FileSource", "RedisSource", "Service", "ServeOptions", "SOURCES", "kline_group",
           "store_cutoff", "store_history"]

log = logging.getLogger("ai_engine.service")

SOURCES = ("file", "redis", "binance")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How ``serve`` runs.

    Attributes:
        source: "file" (paced CSV replay), "redis" (``<prefix>:stream:market.klines``) or "binance".
        data_dir: CSV directory for the file source (default ``AI_ENGINE_DATA_DIR``).
        pace: seconds between two candle batches of the file source.
        history: bars used to prime the features when the store has no decision for a symbol
            (binance: bars fetched over REST when the store has none, or only older ones).
        exit_at_end: stop when the file source is exhausted instead of idling until SIGTERM.
        overrides: CLI overrides re-applied on every reload.
        ws_url, rest_url: Binance websocket and REST bases (binance source).
        group: Redis consumer group (default ``kline_group(settings)``, one per shard).
        max_bad_rows: file source: more quarantined rows in a CSV than this stops the start.
    """

    source: str = "file"
    data_dir: Path | None = None
    pace: float = 1.0
    history: int = 500
    exit_at_end: bool = False
    overrides: dict[str, str] | None = None
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    group: str | None = None
    max_bad_rows: int | None = None


def store_cutoff(store, symbols: tuple[str, ...], interval: str) -> dict[str, int | None]:
    """Per symbol the last candle already handled: the last decided one, else the last recorded
    one (still warming up), else None. A candle recorded after the last decision (a crash before
    its decision was written) is not counted, so its redelivery is decided."""
    out: dict[str, int | None] = {}
    for sym in symbols:
        last = store.last_decision_time(sym, interval)
        if last is None:
            last = store.connection.execute("SELECT MAX(open_time) FROM candles WHERE symbol=? AND interval=?",
                                            (sym, interval)).fetchone()[0]
        out[sym] = last
    return out


def store_history(store, cutoff: dict[str, int | None], interval: str) -> list[Candle]:
    """The last ``PRIME_BARS`` recorded candles up to each symbol's cutoff, in time order."""
    from ai_engine.features import PRIME_BARS

    out: list[Candle] = []
    for sym, last in cutoff.items():
        if last is None:
            continue
        rows = store.connection.execute(
            "SELECT open_time, open, high, low, close, volume, synthetic FROM candles "
            "WHERE symbol=? AND interval=? AND open_time<=? ORDER BY open_time DESC LIMIT ?",
            (sym, interval, last, PRIME_BARS)).fetchall()
        out += [Candle(sym, interval, t, o, h, lo, c, v, bool(syn)) for t, o, h, lo, c, v, syn in reversed(rows)]
    out.sort(key=lambda c: (c.open_time, c.symbol))
    return out


def kline_group(settings: Settings) -> str:
    """Consumer group on the klines stream: one per shard, so every shard sees every candle (with
    leases one per instance: each reads every symbol, as any may come its way)."""
    if settings.leases:
        return f"ai-engine-{settings.instance}"
    if settings.shard is None:
        return "ai-engine"
    idx, count = settings.shard
    return f"ai-engine-shard{idx}of{count}"


class FileSource:
    """Candles from ``<SYMBOL>-<interval>.csv``: history to prime, then batches closing together."""

    def __init__(self, settings: Settings, data_dir: Path, history: int, store, max_bad_rows: int | None = None) -> None:
        from ai_engine.data import load_dir

        self.series = load_dir(data_dir, list(settings.my_symbols()), settings.interval, max_bad_rows=max_bad_rows)
        self.interval = settings.interval
        self.cutoff: dict[str, int] = {}
        for sym, s in self.series.items():
            last = store.last_decision_time(sym, settings.interval)
            if last is None:
                if len(s) <= history:
                    raise ConfigError(f"{sym} {settings.interval}: {len(s)} candles in {data_dir}, need more than "
                                      f"--history {history} to prime the features and then decide")
                last = int(s.open_time[history - 1])
            self.cutoff[sym] = last

    def history(self) -> Iterator[Candle]:
        from ai_engine.data import merge_stream

        return merge_stream({s: ser.time_slice(None, self.cutoff[s] + 1) for s, ser in self.series.items()})

    def batches(self) -> Iterator[list[Candle]]:
        from ai_engine.data import time_batches

        live = {s: ser.time_slice(self.cutoff[s] + INTERVAL_MS[self.interval], None) for s, ser in self.series.items()}
        return time_batches({s: ser for s, ser in live.items() if len(ser)})

    def close(self) -> None:
        """Nothing to release: the CSVs are read at start."""


class RedisSource:
    """Closed candles from ``<prefix>:stream:market.klines`` (consumer group); history from the store."""

    def __init__(self, settings: Settings, store, group: str | None, block_ms: int = 500) -> None:
        import redis

        from ai_engine.market import RedisKlineSource

        if not settings.redis_url:
            raise ConfigError("--source redis needs REDIS_URL in the env file")
        self._redis_error = redis.RedisError
        self.symbols = settings.my_symbols()
        self.interval = settings.interval
        self.cutoff = store_cutoff(store, self.symbols, self.interval)
        self._store = store
        self.reader = RedisKlineSource(settings.redis_url, settings.redis_prefix, self.symbols, self.interval,
                                       group=group or kline_group(settings), block_ms=block_ms,
                                       grace_ms=min(500, block_ms))

    def history(self) -> list[Candle]:
        return store_history(self._store, self.cutoff, self.interval)

    def poll(self) -> list:
        """Batches now complete; blocks at most about a second. Raises TransientError."""
        return self.reader.next_batches()

    def ack(self, batch) -> None:
        try:
            batch.ack()
        except self._redis_error as exc:
            raise TransientError(f"XACK on {self.reader.stream} failed: {exc}") from None

    def close(self) -> None:
        self.reader.close()


class BinanceSource:
    """Binance kline websocket with REST gap backfill; history from the store, else over REST."""

    def __init__(self, settings: Settings, store, options: ServeOptions, poll_s: float = 0.5) -> None:
        from ai_engine.market import KlineFeed, fetch_klines, rows_to_candles

        self.symbols = settings.my_symbols()
        self.interval = settings.interval
        self.poll_s = poll_s
        step = INTERVAL_MS[self.interval]
        now = int(time.time() * 1000)
        self.cutoff = store_cutoff(store, self.symbols, self.interval)
        self._history = store_history(store, self.cutoff, self.interval)
        for sym in self.symbols:
            last = self.cutoff[sym]
            if last is not None and last >= now - options.history * step:
                continue
            if last is not None:  # deciding on that many missed bars would act on stale prices
                log.warning("%s: last handled candle %s is more than --history %d bars old; priming with the "
                            "last %d bars over REST instead of deciding on the missed ones", sym,
                            time.strftime("%Y-%m-%d %H:%M", time.gmtime(last / 1000)), options.history,
                            options.history)
                self._history = [c for c in self._history if c.symbol != sym]
            rows = fetch_klines(sym, self.interval, (now // step - options.history) * step, base_url=options.rest_url,
                                now_ms=now, retries=2)
            if not rows:
                raise DataError(f"{sym} {self.interval}: Binance REST {options.rest_url} returned no closed candles "
                                "to prime the features")
            fetched = rows_to_candles(sym, self.interval, rows)
            store.record_candles(fetched)  # so that a restart primes from the store
            self._history += fetched
            self.cutoff[sym] = rows[-1].open_time
        self._history.sort(key=lambda c: (c.open_time, c.symbol))
        self.feed = KlineFeed(self.symbols, self.interval, ws_url=options.ws_url, rest_url=options.rest_url,
                              start_after=self.cutoff)

    def history(self) -> list[Candle]:
        return self._history

    def poll(self) -> list:
        batch = self.feed.get(timeout=self.poll_s)
        return [batch] if batch is not None else []

    def ack(self, batch) -> None:
        batch.ack()

    def close(self) -> None:
        self.feed.close()


# Settings the running service opened its governor, bus and pid file with. Half-applied they are
# unsafe: ``ai-engine governor kill`` reads the env file and would write where the service no
# longer looks. A reload that changes one is refused as a whole; a restart applies it.
_RESTART_TO_APPLY = {"home": "AI_ENGINE_HOME", "governor_state_file": "GOVERNOR_STATE_FILE",
                     "governor_backend": "GOVERNOR_BACKEND", "redis_url": "REDIS_URL",
                     "redis_prefix": "AI_ENGINE_REDIS_PREFIX"}


def _refuse_restart_only_changes(old: Settings, new: Settings) -> None:
    changed = [key for f, key in _RESTART_TO_APPLY.items() if getattr(new, f) != getattr(old, f)]
    if changed:
        raise ConfigError(f"{', '.join(changed)} changed in {new.env_file}; the running service cannot switch its "
                          "governor, bus or state directory, so restart it to apply them")


class DashboardProcess:
    """``serve``'s dashboard on 127.0.0.1:``AI_ENGINE_DASHBOARD_PORT``, as ``ai-engine dashboard``
    in a process of its own (at a lower CPU priority, off the decision CPU, ended with the service
    even by SIGKILL): a client it answers never takes the engine's interpreter lock or its CPU, and
    its shadow analysis (``AI_ENGINE_DASHBOARD_ANALYSIS_HOURS``) runs there too. Served from threads of
    the service's own process, 10 clients polling the page raised decision latency p99 by a
    quarter (bench/bench_dashboard.py). Its read-only connection never blocks the engine's writes.

    Raises:
        ConfigError: it could not start (the port is taken, ...); its own error line is on stderr.
    """

    START_S = 30.0

    def __init__(self, settings: Settings) -> None:
        cmd = [sys.executable, "-m", "ai_engine.cli.main", "dashboard", "--store", str(settings.store_path),
               "--host", "127.0.0.1", "--port", str(settings.dashboard_port),
               "--analysis-hours", f"{settings.dashboard_analysis_hours:g}",
               *child_args(settings)]
        if settings.env_file is not None:
            cmd += ["--env-file", str(settings.env_file)]
        self.port = settings.dashboard_port
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        # ready once it says where it listens (it prints that after binding); an exit first is a failure
        ready, line = select.select([self._proc.stdout], [], [], self.START_S)[0], ""
        if ready:
            line = self._proc.stdout.readline()
        if not line.startswith("dashboard on "):
            self.close()
            raise ConfigError(f"the dashboard on 127.0.0.1:{self.port} did not start (exit {self._proc.returncode}; "
                              "its error is above); set AI_ENGINE_DASHBOARD_PORT to a free port or 0")
        self._proc.stdout.close()  # it prints nothing more there (it logs to stderr)
        log.info("dashboard on http://127.0.0.1:%d/ (pid %d)", self.port, self._proc.pid)

    def close(self) -> None:
        stop_child(self._proc)


class Service:
    """``serve``: engine + source + health + dashboard + signals + pid file."""

    def __init__(self, settings: Settings, options: ServeOptions) -> None:
        if options.source not in SOURCES:
            raise ConfigError(f"--source {options.source!r} is not valid: expected one of {', '.join(SOURCES)}")
        if options.pace < 0:
            raise ConfigError(f"--pace {options.pace} is negative; give seconds >= 0")
        if options.history < 1:
            raise ConfigError(f"--history {options.history} is not valid: give a number of bars >= 1")
        if settings.leases and options.source != "redis":
            raise ConfigError("AI_ENGINE_SHARD=lease needs --source redis: the instances that share symbols must read "
                              "the same candles at the same time (AI_ENGINE_SHARD=i/n shards the other sources)")
        self.settings = settings
        self.options = options
        self.state = "starting"
        self.started_at = int(time.time() * 1000)
        self.reloads = {"applied": 0, "refused": 0}
        self.engine = None
        self.processor = None
        self.candles_seen = 0
        self._stop = False
        self._reload = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        from ai_engine.lifecycle.retrain import RetrainSchedule

        self._retrain = RetrainSchedule()  # AI_ENGINE_RETRAIN_HOURS: retrains in a child, polled between candles
        self._pid_path = settings.home / PID_FILE_NAME
        self._last_prune = 0.0
        self.leases = None  # leases.Leases with AI_ENGINE_SHARD=lease
        self._backlog: dict[str, deque] = {}  # with leases: every symbol's recent candles, for a takeover
        self._guard = None  # lifecycle.policy.Guard while a policy is on
        self._policy = None  # its PolicyProcess
        self._policy_restart_at = 0.0  # monotonic: a dead policy process is started again from then on

    # -- signals --------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # buffer full: a wake-up is already pending
            self._wake_w.send(b"!")

    def _on_term(self, signum, frame) -> None:
        self._stop = True
        self._wake()

    def _on_hup(self, signum, frame) -> None:
        self._reload = True
        self._wake()

    # -- health ---------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """What GET /health and ``ai-engine status`` show."""
        eng = self.engine
        out = {"state": self.state, "pid": os.getpid(), "started_at": self.started_at,
               "source": self.options.source, "reloads": dict(self.reloads), "candles_seen": self.candles_seen,
               "env_file": str(self.settings.env_file) if self.settings.env_file else None,
               "shards": self.leases.snapshot() if self.leases is not None else {
                   "mode": "static" if self.settings.shard else "all", "owned": list(self.settings.my_symbols()),
                   "shard": "/".join(map(str, self.settings.shard)) if self.settings.shard else None}}
        if eng is None:
            return out
        st = eng.state
        models = st.config_payload["models"]
        gov, err = eng.governor.state()
        return out | {
            "config_id": st.config_id,
            "roles": {m: c["role"] for m, c in models.items()},
            "weights": {m: c["weight"] for m, c in models.items()},
            "versions": {m: c["version"] for m, c in models.items()},
            "models": models,
            "last_decision_at": eng.last_decision_at,
            "decisions_made": eng.decisions_made,
            "status": eng.store.health()["status"],
            "store": eng.store.health(),
            "model_processes": {m: {"pid": s.agent.pid, "state": s.agent.process_state}
                                for m, s in st.slots.items() if s.isolated},
            "governor": gov.to_json() | {"error": None} if gov is not None else {"error": err},
            "governor_backend": eng.governor.backend.describe(),
            "flatlined": eng.flatline.status(),
            "decision_cpu": eng.decision_cpu,
        }

    # -- lifecycle ------------------------------------------------------------------------------
    def _write_pid(self) -> None:
        other = read_pid(self.settings.home)
        if other is not None and other != os.getpid():
            raise ConfigError(f"another ai-engine serve is running (pid {other}, {self._pid_path}); stop it first")
        self._pid_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._pid_path, f"{os.getpid()}\n")

    def _remove_pid(self) -> None:
        try:
            if self._pid_path.read_text().strip() == str(os.getpid()):
                self._pid_path.unlink()
        except OSError:
            pass

    def _apply_reload(self) -> None:
        """Re-read the env file and swap the configuration; a bad one, or one changing what the
        service cannot switch while running (``_RESTART_TO_APPLY``), keeps the old in force."""
        self._reload = False
        self.state = "reloading"
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_settings(self.settings.env_file, overrides=self.options.overrides)
            _refuse_restart_only_changes(self.settings, new)
        except ConfigError as exc:
            log.error("reload refused, configuration %s stays in force: %s", self.engine.state.config_id, exc)
            self.reloads["refused"] += 1
        else:
            fixed = ("symbols", "interval", "store_path", "shard", "leases", "instance", "lease_ttl_ms", "health_port",
                     "dashboard_port", "dashboard_analysis_hours")
            changed = [f for f in fixed if getattr(new, f) != getattr(self.settings, f)]
            if changed:
                log.warning("reload: %s changed in %s; these apply at the next restart", ", ".join(changed),
                            self.settings.env_file)
            if self.engine.reload(new):
                self.settings = new
                self.reloads["applied"] += 1
                self._sync_policy()
            else:
                self.reloads["refused"] += 1
        self.state = "running"
        sd_notify("READY=1")

    def _pause(self, seconds: float) -> None:
        """Wait between batches, applying reloads as they arrive; returns early on stop."""
        deadline = time.monotonic() + seconds
        while not self._stop:
            if self._reload:
                self._apply_reload()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if select.select([self._wake_r], [], [], remaining)[0]:
                self._wake_r.recv(4096)

    def _open_source(self):
        if self.options.source == "redis":
            # with leases the loop also applies lease changes: it must come round within a heartbeat
            block_ms = min(500, int(self.settings.lease_ttl_ms / 3)) if self.settings.leases else 500
            return RedisSource(self.settings, self.engine.store, self.options.group, block_ms=block_ms)
        if self.options.source == "binance":
            return BinanceSource(self.settings, self.engine.store, self.options)
        data_dir = self.options.data_dir or self.settings.data_dir
        if data_dir is None:
            raise ConfigError("--source file needs --data DIR or AI_ENGINE_DATA_DIR")
        return FileSource(self.settings, Path(data_dir), self.options.history, self.engine.store,
                          self.options.max_bad_rows)

    def _serve_file(self, source: FileSource) -> None:
        for batch in source.batches():
            if self._stop:
                log.info("stop requested: finishing")
                break
            if self._reload:
                self._apply_reload()
            self._decide(batch)
            self._maybe_prune()
            self._retrain.tick(self.settings)
            self._pause(self.options.pace)
        else:
            log.info("file source exhausted after %d candles", self.candles_seen)
            if not self.options.exit_at_end:
                self.state = "idle"
                while not self._stop:
                    self._pause(3600.0)

    def _serve_live(self, source) -> None:
        """Decide on each batch, then acknowledge it once the store holds its decisions; candles at
        or before the last one handled (redeliveries, replays) are acknowledged without deciding."""
        # with leases a symbol's last handled candle is the lease's, set when it is taken
        last = {} if self.leases is not None else {s: t for s, t in source.cutoff.items() if t is not None}
        unacked: list = []
        backoff, down_since = 0.5, None
        while not self._stop:
            if self._reload:
                self._apply_reload()
            if self.leases is not None:
                self._rebalance(last)
            try:
                batches = source.poll()
            except TransientError as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error("%s; retrying with backoff", exc)
                self._pause(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if down_since is not None:
                log.warning("%s source back after %.1fs", self.options.source, time.monotonic() - down_since)
                down_since, backoff = None, 0.5
            for batch in batches:
                if self._stop:  # the rest stays unacknowledged: Redis redelivers it, Binance backfills it
                    break
                if self._reload:
                    self._apply_reload()
                fresh = [c for c in batch.candles if c.open_time > last.get(c.symbol, -1)]
                if len(fresh) < len(batch.candles):
                    log.info("%d candle(s) of %s already handled; not deciding them again",
                             len(batch.candles) - len(fresh), time.strftime("%Y-%m-%d %H:%M", time.gmtime(
                                 batch.candles[0].open_time / 1000)))
                if self.leases is not None:
                    fresh = self._take_owned(fresh)
                if fresh:
                    self._decide(fresh)
                    if self.leases is not None:
                        self.leases.handle(fresh)
                    for c in fresh:
                        last[c.symbol] = c.open_time
                unacked.append(batch)
                unacked = self._ack(source, unacked)
            self._maybe_prune()
            self._retrain.tick(self.settings)
        self._ack(source, unacked)

    def _decide(self, candles: list) -> None:
        """Decide on closed candles on this (the deciding) thread, on its CPU (``pin_decisions``)."""
        self.engine.pin_decisions()
        self.processor.process(candles)
        self.candles_seen += len(candles)
        if self._guard is not None:
            self._check_policy()

    def _sync_policy(self) -> None:
        """Run the policy's process and guard while ``AI_ENGINE_POLICY`` is on or dry-run (a reload
        may turn it on or off)."""
        from ai_engine.lifecycle.policy import Guard, LogRate, PolicyProcess

        on = self.settings.policy is not None and self.settings.env_file is not None
        if on and (self._policy is None or not self._policy.alive):
            self._policy = PolicyProcess(self.settings)
        if on and self._guard is None:
            rate = LogRate()
            logging.getLogger().addHandler(rate)
            self._guard = Guard(self.engine.store, rate)
        if not on and self._policy is not None:
            self._policy.close()
            self._policy = None
        if not on and self._guard is not None:
            logging.getLogger().removeHandler(self._guard.log_rate)
            self._guard = None

    POLICY_RESTART_S = 30.0  # a policy process that keeps dying is started again at most this often

    def _check_policy(self) -> None:
        """The policy's FAIL criteria after a batch: a rollback they trigger applies before the next one.
        A policy process that died is started again (the guard here never stopped)."""
        import sqlite3

        from ai_engine.exceptions import AIEngineError

        if self._policy is not None and not self._policy.alive and time.monotonic() >= self._policy_restart_at:
            log.error("policy process exited with code %s; starting a new one", self._policy.returncode)
            self._policy_restart_at = time.monotonic() + self.POLICY_RESTART_S
            self._sync_policy()
        try:
            if self._guard.check(self.settings):
                self._reload = True
        except (sqlite3.Error, AIEngineError, OSError) as exc:
            log.error("policy guard could not check the FAIL criteria: %s", exc)

    # -- leases (AI_ENGINE_SHARD=lease) -------------------------------------------------------------
    BACKLOG = 256  # candles kept per symbol: what a takeover decides after the lease's last handled one

    def _take_owned(self, candles: list[Candle]) -> list[Candle]:
        """Keep every candle in its symbol's backlog; return those of the symbols held."""
        held = set(self.leases.held)
        for c in candles:
            q = self._backlog.setdefault(c.symbol, deque(maxlen=self.BACKLOG))
            if not q or q[-1].open_time < c.open_time:
                q.append(c)
        return [c for c in candles if c.symbol in held]

    def _rebalance(self, last: dict[str, int]) -> None:
        """Apply the lease changes: forget the symbols given up; prime each symbol taken from the
        history its owners stored and decide, in time order, the candles after its last handled one."""
        dropped, acquired = self.leases.rebalance()
        for sym in dropped:
            self.processor.forget(sym)
            last.pop(sym, None)
        todo: list[Candle] = []
        for a in acquired:
            self.processor.forget(a.symbol)
            self.processor.prime(a.history)
            done = -1 if a.done is None else a.done
            after = [c for c in self._backlog.get(a.symbol, ()) if c.open_time > done]
            if a.done is not None and after and after[0].open_time > done + INTERVAL_MS[self.settings.interval]:
                log.error("%s: the candles after %s are not in this instance's backlog; not deciding them", a.symbol,
                          time.strftime("%Y-%m-%d %H:%M", time.gmtime(done / 1000)))
            todo += after
            last[a.symbol] = done
        by_time: dict[int, list[Candle]] = {}
        for c in todo:
            by_time.setdefault(c.open_time, []).append(c)
        for t in sorted(by_time):  # one closing time at a time: a symbol appears once per decision batch
            held = set(self.leases.held)
            group = [c for c in by_time[t] if c.symbol in held]
            if group:
                self._decide(group)
                self.leases.handle(group)
                for c in group:
                    last[c.symbol] = c.open_time

    def _maybe_prune(self, every_s: float = 3600.0) -> None:
        """Hourly: drop bus-delivered outbox rows older than a day and, with a retention set,
        decisions older than ``AI_ENGINE_RETENTION_DAYS`` of market time. Failure is logged only."""
        now = time.monotonic()
        if now - self._last_prune < every_s:
            return
        self._last_prune = now
        days = self.settings.retention_days
        newest = self.engine.store.connection.execute("SELECT MAX(candle_open_time) FROM decisions").fetchone()[0]
        cutoff = int(newest - days * 86_400_000) if days and newest is not None else None
        try:
            self.engine.store.prune(int(time.time() * 1000) - 86_400_000, decisions_before_ms=cutoff)
        except TransientError as exc:
            log.error("%s; retrying next hour", exc)

    def _ack(self, source, batches: list) -> list:
        """Acknowledge ``batches`` if the store has accepted every decision; returns those still owed."""
        if self.engine.store.pending_writes:
            return batches
        for i, batch in enumerate(batches):
            try:
                source.ack(batch)
            except TransientError as exc:
                log.error("%s; acknowledging later", exc)
                return batches[i:]
        return []

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or the end of the file source with ``exit_at_end``)."""
        from ai_engine.live import CandleProcessor
        from ai_engine.runtime import open_engine, settle_heap

        self._write_pid()
        health = None
        dashboard = None
        clean = False  # the serve loop returned (SIGTERM, SIGINT, the file source's end), not an error
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            if self.settings.health_port:
                health = HealthServer(self.settings.health_port, self.snapshot).start()
                log.info("health endpoint on http://127.0.0.1:%d/health", health.port)
            self.engine = open_engine(self.settings)
            if self.settings.dashboard_port:  # after open_engine: it reads the store the engine created
                dashboard = DashboardProcess(self.settings)
            self.processor = CandleProcessor(self.engine, self.settings.interval)
            self._sync_policy()
            source = self._open_source()
            try:
                if self.settings.leases:  # symbols are primed as they are taken
                    from ai_engine.leases import Leases

                    self.leases = Leases(self.settings.redis_url, self.settings.redis_prefix, self.settings.instance,
                                         self.settings.symbols, self.settings.interval, self.settings.lease_ttl_ms)
                    self.engine.store.fence = self.leases.commit
                primed = self.processor.prime(source.history() if self.leases is None else ())
                settle_heap()
                log.info("primed features with %d history candles; resuming after %s", primed,
                         {s: time.strftime("%Y-%m-%d %H:%M", time.gmtime(t / 1000)) if t is not None else "-"
                          for s, t in source.cutoff.items()})
                self.state = "running"
                sd_notify("READY=1")
                log.info("serving %s (%s) from %s; pid %d", ",".join(source.cutoff), self.settings.interval,
                         self.options.source, os.getpid())
                if isinstance(source, FileSource):
                    self._serve_file(source)
                else:
                    self._serve_live(source)
                clean = True
            finally:
                source.close()
        finally:
            self.state = "stopping"
            sd_notify("STOPPING=1")
            if self.engine is not None:
                self.engine.close()
                if self.leases is not None:  # after the last commit: the others take over at once
                    self.leases.close()
                if clean:  # verify-shadow tells the next start from a restart after a crash by this row
                    try:
                        self.engine.store.record_config(self.engine.state.config_id, "stop",
                                                        self.engine.state.config_payload)
                    except TransientError as exc:
                        log.error("could not record the planned stop (the next start will count as a crash): %s", exc)
                self.engine.store.close()
            self._retrain.close()
            if health is not None:
                health.close()
            if dashboard is not None:
                dashboard.close()
            if self._policy is not None:
                self._policy.close()
            self._remove_pid()
            for s, h in old.items():
                signal.signal(s, h)
            self._wake_r.close()
            self._wake_w.close()
            log.info("stopped after %d decisions", self.engine.decisions_made if self.engine else 0)
        return 0
