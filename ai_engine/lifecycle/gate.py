"""The guard rail before a model votes: its gate verdict and edge on its own shadow predictions.

What makes a model vote (``models activate``, ``rollback --fast``) needs a READY verdict from the
analysis and an edge that is not WORSE, judged only on the shadow rows of the very file the env
file names now, or ``--force`` (audited).
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_engine.config import Settings
from ai_engine.exceptions import ConfigError, DataError

__all__ = ["GateCheck", "check_gate", "gate_to_vote"]


@dataclass(frozen=True, slots=True)
class GateCheck:
    verdict: str  # READY | NOT_READY | INCONCLUSIVE
    detail: str
    edge: str | None = None  # BETTER | WORSE | NOT DISTINGUISHABLE YET; None without an edge analysis


def check_gate(settings: Settings, model: str, hours: float = 168.0, rows_of: str | None = None) -> GateCheck:
    """The gate verdict of the artifact ``model`` would vote with (the file the env names now),
    judged on that file's own shadow predictions in the last ``hours`` of the telemetry store: rows
    of another version, or made while the model voted, are not evidence for it. ``rows_of``: the
    key they were recorded under when it is not ``model`` (an extra shadow since promoted)."""
    from ai_engine.agents.artifacts import sha256_file
    from ai_engine.model_slots import resolve_model_path

    try:
        from ai_engine.analysis.analyze import analyze
    except ImportError as exc:
        return GateCheck("INCONCLUSIVE", f"analysis module unavailable: {exc}")
    path, _ = resolve_model_path(settings, model)
    try:
        sha = sha256_file(path)
    except OSError as exc:
        return GateCheck("INCONCLUSIVE", f"{model} artifact {path} cannot be read: {exc.strerror or exc}")
    try:
        result = analyze(settings.store_path, hours, model=rows_of or model, only=("shadow", sha))
    except (DataError, ConfigError) as exc:
        return GateCheck("INCONCLUSIVE", str(exc))
    m = result.primary
    if m.n_rows == 0:
        return GateCheck("INCONCLUSIVE", f"no shadow predictions of {path.name} (sha256 {sha[:16]}…) in the last "
                                         f"{hours:g} h of {settings.store_path}; run it in shadow first")
    e = result.edge
    edge = f"; edge {e.verdict}: {e.reason}" if e else f"; no edge analysis: {result.edge_error}"
    return GateCheck(str(result.verdict), f"{m.n_rows} shadow predictions of {path.name} (sha256 {sha[:16]}…), "
                                          f"{m.gates_passed}/4 gates, last {hours:g} h of {settings.store_path}{edge}",
                     e.verdict if e else None)


def gate_to_vote(settings: Settings, model: str, hours: float, force: bool, refusal: str,
                 rows_of: str | None = None) -> dict:
    """What makes ``model`` vote needs a READY verdict and an edge that is not WORSE (activating
    it would have made the ensemble forecast or earn worse), or ``force``: the audit fields, or a
    ConfigError with ``refusal`` ({} = the verdict and why)."""
    gate = check_gate(settings, model, hours, rows_of)
    ok = gate.verdict == "READY" and gate.edge != "WORSE"
    if not ok and not force:
        verdict = gate.verdict if gate.verdict != "READY" else "READY but its edge is WORSE"
        raise ConfigError(refusal.format(f"{verdict} ({gate.detail})"))
    return {"gate": gate.verdict, "edge": gate.edge, "gate_detail": gate.detail, "forced": force and not ok}
