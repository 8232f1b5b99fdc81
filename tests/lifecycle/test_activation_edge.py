"""What makes a model vote needs READY gates and an edge that is not WORSE: a model whose gates
pass only because it repeats the ensemble is refused, unless forced (audited)."""

from __future__ import annotations

import pytest

from ai_engine.config import load_settings
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle.activation import activate
from ai_engine.lifecycle.audit import read_audit
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.lifecycle.gate import check_gate
from tests.analysis.conftest import build_store

HOURS = 24 * 365.0


def _store(deployment, shadow: str):
    from ai_engine.agents.artifacts import sha256_file
    from ai_engine.model_slots import resolve_model_path

    with deployment.env.open("a") as f:
        f.write("PATCHTST_SHADOW_ONLY=true\n")
    settings = load_settings(deployment.env)
    path, _ = resolve_model_path(settings, "patchtst")
    build_store(settings.store_path, n=1500, shadow=shadow, shadow_sha=sha256_file(path))
    return settings


def test_a_copy_of_the_ensemble_is_ready_but_not_activated(deployment):
    settings = _store(deployment, "copy")
    gate = check_gate(settings, "patchtst", hours=HOURS)
    assert gate.verdict == "READY" and gate.edge == "WORSE" and "edge WORSE" in gate.detail
    before = deployment.env.read_bytes()
    with pytest.raises(ConfigError, match="READY but its edge is WORSE.*--force"):
        activate(settings, "patchtst", 20, gate_hours=HOURS)
    assert deployment.env.read_bytes() == before
    activate(settings, "patchtst", 20, gate_hours=HOURS, force=True)
    assert "PATCHTST_SHADOW_ONLY" not in read_env_file(deployment.env)
    entry = read_audit(settings.home)[-1]
    assert entry["forced"] is True and entry["edge"] == "WORSE"


def test_a_skilled_model_is_activated(deployment):
    settings = _store(deployment, "skilled")
    gate = check_gate(settings, "patchtst", hours=HOURS)
    assert gate.verdict == "READY" and gate.edge in ("BETTER", "NOT DISTINGUISHABLE YET")
    activate(settings, "patchtst", 20, gate_hours=HOURS)
    entry = read_audit(settings.home)[-1]
    assert entry["forced"] is False and entry["gate"] == "READY"
