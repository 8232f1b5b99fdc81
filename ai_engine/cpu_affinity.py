"""Which CPUs the live decision path runs on.

Why: at one row a decision is a chain of short steps handed between two threads (the thread that
computes the features and the voter worker, and back). When another process keeps a CPU busy, a
thread that may run anywhere waits behind it at each hand-off: with a busy-looping process beside
the engine on 2 vCPUs, pinning both to one CPU took the 1-symbol p99 from 5.5-5.9 ms to
2.6-2.7 ms. On a quiet machine it changes neither p50 nor p99 measurably, but it keeps two engines
alike (each has its own worker, and unpinned, where the scheduler put it skewed one engine's p50
by up to 12% for a whole run). docs/performance.md has the figures. Everything else (the shadow's
process and threads, the store writer, the bus, the health endpoint) keeps every CPU the process
was started with.

Linux only; elsewhere nothing is pinned.
"""

from __future__ import annotations

import logging
import os

__all__ = ["ALL_CPUS", "decision_cpu", "free_cpus", "set_cpus", "unpin_current_thread"]

log = logging.getLogger("ai_engine.engine")

# The CPUs this process may use, read at import (before anything is pinned).
ALL_CPUS: frozenset[int] = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def decision_cpu(value: str) -> int | None:
    """``AI_ENGINE_DECISION_CPU`` resolved: ``auto`` the highest CPU this process may use (None when
    it may use only one, or the platform cannot pin), ``off`` None, or the CPU number given.
    Raises ValueError with the reason for anything else."""
    v = value.strip().lower()
    if v == "off" or not ALL_CPUS:
        return None
    if v == "auto":
        return max(ALL_CPUS) if len(ALL_CPUS) > 1 else None
    if not v.isdigit():
        raise ValueError("expected auto, off or a CPU number")
    cpu = int(v)
    if cpu not in ALL_CPUS:
        raise ValueError(f"this process may use CPUs {', '.join(map(str, sorted(ALL_CPUS)))}")
    return cpu


def free_cpus() -> int:
    """CPUs this process may use less those other work keeps busy now (at least 1).

    Why: thread pools sized to every core oversubscribe a machine where another CPU-bound process
    runs (the demo beside one busy loop on 2 cores: LightGBM 0.5 s -> 60 s). Busy is the larger of
    the 1-minute load average and the tasks runnable right now (``/proc/loadavg``, less this one),
    so a load that started seconds ago counts too.
    """
    mine = len(ALL_CPUS) or os.cpu_count() or 1
    busy = 0.0
    try:
        busy = os.getloadavg()[0]
        with open("/proc/loadavg", encoding="ascii") as f:
            busy = max(busy, int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    idle_elsewhere = (os.cpu_count() or mine) - mine  # load on CPUs we may not use is not ours to avoid
    return max(1, min(mine, round(mine - max(0.0, busy - idle_elsewhere))))


def set_cpus(native_id: int, cpus: frozenset[int]) -> None:
    """Let the thread (or process) ``native_id`` (0: the calling thread) run on ``cpus`` only. A
    thread that has ended is no error; a CPU taken away since the start (a cgroup change) is
    logged and the thread keeps the CPUs it had: placement never stops a decision."""
    if not (ALL_CPUS and cpus):
        return
    try:
        os.sched_setaffinity(native_id, cpus)
    except ProcessLookupError:
        pass
    except OSError as exc:
        log.warning("could not run thread %d on CPUs %s: %s; it keeps its CPUs", native_id, sorted(cpus), exc)


def unpin_current_thread() -> None:
    """Give the calling thread every CPU back: threads and processes started from the pinned
    decision thread inherit its CPU, and those that must not (a shadow's) call this first."""
    set_cpus(0, ALL_CPUS)
