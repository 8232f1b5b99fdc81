"""Thread counts sized to the CPUs free now (cpu_affinity.free_cpus): never 0, never more than this
process may use, 1 when other work keeps every CPU busy."""

from __future__ import annotations

import os

from ai_engine.cpu_affinity import ALL_CPUS, free_cpus


def test_free_cpus_is_within_the_cpus_this_process_may_use():
    assert 1 <= free_cpus() <= (len(ALL_CPUS) or os.cpu_count() or 1)


def test_a_machine_busy_everywhere_leaves_one_thread(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1) * 4, 0.0, 0.0))
    assert free_cpus() == 1
