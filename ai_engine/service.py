"""The long-running service: the decision path on a live candle source, fit for systemd.

One thread decides; signal handlers only set flags and write a byte to a self-pipe (never a lock,
which the interrupted thread might hold), so SIGTERM lets the decision in flight finish and
SIGHUP reloads between two candles (``load_settings`` on the env file, then the engine's
all-or-nothing ``reload``): no candle is skipped or decided twice across a reload. The file source
paces candles from CSVs and resumes after the last candle already decided in the store, priming the
streaming features with the history before that point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ai_engine.config import Settings, load_settings
from ai_engine.envfile import write_atomic
from ai_engine.exceptions import ConfigError
from ai_engine.health import HealthServer, sd_notify
from ai_engine.lifecycle import PID_FILE_NAME, read_pid
from ai_engine.types import INTERVAL_MS, Candle

__all__ = ["FileSource", "Service", "ServeOptions", "SOURCES"]

log = logging.getLogger("ai_engine.service")

SOURCES = ("file", "redis", "binance")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How ``serve`` runs.

    Attributes:
        source: "file" (paced CSV replay); "redis" and "binance" need ``ai_engine.market``.
        data_dir: CSV directory for the file source (default ``AI_ENGINE_DATA_DIR``).
        pace: seconds between two candle batches of the file source.
        history: bars used to prime the features when the store has no decision for a symbol.
        exit_at_end: stop when the file source is exhausted instead of idling until SIGTERM.
        overrides: CLI overrides re-applied on every reload.
    """

    source: str = "file"
    data_dir: Path | None = None
    pace: float = 1.0
    history: int = 500
    exit_at_end: bool = False
    overrides: dict[str, str] | None = None


class FileSource:
    """Candles from ``<SYMBOL>-<interval>.csv``: history to prime, then batches closing together."""

    def __init__(self, settings: Settings, data_dir: Path, history: int, store) -> None:
        from ai_engine.data import load_dir

        self.series = load_dir(data_dir, list(settings.my_symbols()), settings.interval)
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


class Service:
    """``serve``: engine + source + health + signals + pid file."""

    def __init__(self, settings: Settings, options: ServeOptions) -> None:
        if options.source not in SOURCES:
            raise ConfigError(f"--source {options.source!r} is not valid: expected one of {', '.join(SOURCES)}")
        if options.pace < 0:
            raise ConfigError(f"--pace {options.pace} is negative; give seconds >= 0")
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
        self._pid_path = settings.home / PID_FILE_NAME

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
               "env_file": str(self.settings.env_file) if self.settings.env_file else None}
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
            "governor": gov.to_json() | {"error": None} if gov is not None else {"error": err},
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
        """Re-read the env file and swap the configuration; a bad one keeps the old in force."""
        self._reload = False
        self.state = "reloading"
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_settings(self.settings.env_file, overrides=self.options.overrides)
        except ConfigError as exc:
            log.error("reload refused, configuration %s stays in force: %s", self.engine.state.config_id, exc)
            self.reloads["refused"] += 1
        else:
            fixed = ("symbols", "interval", "store_path", "shard", "health_port")
            changed = [f for f in fixed if getattr(new, f) != getattr(self.settings, f)]
            if changed:
                log.warning("reload: %s changed in %s; these apply at the next restart", ", ".join(changed),
                            self.settings.env_file)
            if self.engine.reload(new):
                self.settings = new
                self.reloads["applied"] += 1
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
        if self.options.source != "file":
            try:
                import ai_engine.market  # noqa: F401
            except ImportError:
                raise ConfigError(f"--source {self.options.source} needs ai_engine.market, which is not installed "
                                  "in this build; use --source file") from None
            raise ConfigError(f"--source {self.options.source} is not wired into serve yet; use --source file")
        data_dir = self.options.data_dir or self.settings.data_dir
        if data_dir is None:
            raise ConfigError("--source file needs --data DIR or AI_ENGINE_DATA_DIR")
        return FileSource(self.settings, Path(data_dir), self.options.history, self.engine.store)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or the end of the file source with ``exit_at_end``)."""
        from ai_engine.live import CandleProcessor
        from ai_engine.runtime import open_engine

        self._write_pid()
        health = None
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            if self.settings.health_port:
                health = HealthServer(self.settings.health_port, self.snapshot).start()
                log.info("health endpoint on http://127.0.0.1:%d/health", health.port)
            self.engine = open_engine(self.settings)
            self.processor = CandleProcessor(self.engine, self.settings.interval)
            source = self._open_source()
            primed = self.processor.prime(source.history())
            log.info("primed features with %d history candles; resuming after %s", primed,
                     {s: time.strftime("%Y-%m-%d %H:%M", time.gmtime(t / 1000)) for s, t in source.cutoff.items()})
            self.state = "running"
            sd_notify("READY=1")
            log.info("serving %s (%s) from %s every %gs; pid %d", ",".join(source.series), self.settings.interval,
                     self.options.source, self.options.pace, os.getpid())
            for batch in source.batches():
                if self._stop:
                    log.info("stop requested: finishing")
                    break
                if self._reload:
                    self._apply_reload()
                self.processor.process(batch)
                self.candles_seen += len(batch)
                self._pause(self.options.pace)
            else:
                log.info("file source exhausted after %d candles", self.candles_seen)
                if not self.options.exit_at_end:
                    self.state = "idle"
                    while not self._stop:
                        self._pause(3600.0)
        finally:
            self.state = "stopping"
            sd_notify("STOPPING=1")
            if self.engine is not None:
                self.engine.close()
                self.engine.store.close()
            if health is not None:
                health.close()
            self._remove_pid()
            for s, h in old.items():
                signal.signal(s, h)
            self._wake_r.close()
            self._wake_w.close()
            log.info("stopped after %d decisions", self.engine.decisions_made if self.engine else 0)
        return 0
