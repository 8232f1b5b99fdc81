"""The running service's pid file and the reload signal a lifecycle edit sends it.

``serve`` writes its pid to ``$AI_ENGINE_HOME/ai-engine.pid``; an edit SIGHUPs that pid so the
service re-reads the env file between two candles. A stale pid, or one recycled by another
program, is never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

__all__ = ["PID_FILE_NAME", "read_pid", "signal_reload"]

log = logging.getLogger("ai_engine.lifecycle")

PID_FILE_NAME = "ai-engine.pid"


def read_pid(home: Path) -> int | None:
    """The pid of a running ``serve`` from its pid file; None when absent, stale or not ours."""
    try:
        pid = int((Path(home) / PID_FILE_NAME).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # a recycled pid must not receive our signal
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid
    return pid if b"serve" in cmdline else None


def signal_reload(home: Path) -> int | None:
    """SIGHUP the running service so it re-reads the env file; returns the pid signalled."""
    pid = read_pid(home)
    if pid is None:
        log.info("no running ai-engine serve found (pid file %s); the change applies at next start",
                 Path(home) / PID_FILE_NAME)
        return None
    os.kill(pid, signal.SIGHUP)
    return pid
