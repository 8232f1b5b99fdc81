"""``serve``'s helper processes (the dashboard, the scheduled retrain): each is an ``ai-engine``
command started with ``child_args``, which makes it a child that never competes with the
decisions (a lower CPU priority, off the decision CPU when another is left) and ends with serve,
even when serve is killed (Linux's parent-death signal)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from ai_engine.config import Settings

__all__ = ["become_child_of", "child_args", "stop_child", "CHILD_NICE"]

CHILD_NICE = 10


def child_args(settings: Settings) -> list[str]:
    """The options that make a command ``serve``'s child (``--child-of``, ``--avoid-cpu``)."""
    args = ["--child-of", str(os.getpid())]
    if settings.decision_cpu is not None:
        args += ["--avoid-cpu", str(settings.decision_cpu)]
    return args


def become_child_of(parent: int, avoid_cpu: int | None) -> None:
    """Run below the decisions' priority and never on the decision CPU (when another is left), and
    end when ``parent`` ends, even by SIGKILL (checked against the pid given, so a parent that died
    before the signal was set is seen too)."""
    import ctypes

    os.nice(CHILD_NICE)
    if avoid_cpu is not None and hasattr(os, "sched_setaffinity"):
        others = os.sched_getaffinity(0) - {avoid_cpu}
        if others:
            os.sched_setaffinity(0, others)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        raise SystemExit(0)


def stop_child(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End a child still running: SIGTERM (it stops cleanly), SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
