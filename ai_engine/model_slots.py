"""Loading the configured models into slots: role, weight, loaded agent or the reason it is not.

A model that cannot be loaded is *inactive* with a reason; it never falls back to random weights
or a default vote (failure mode 11). Every load logs what was applied (failure mode 20), including
the spec's lines ``[PatchTST] Using PATCHTST_MODEL_PATH env var: <path>`` and
``[PatchTST] ✅ Model weights loaded from <file>``. Extra shadows (``config`` says how they are
configured) load the same way under their own key and display name (``[PatchTST r2] …``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ai_engine.config import Settings, config_id_for
from ai_engine.enums import ModelRole
from ai_engine.exceptions import FeatureMismatchError, ModelLoadError

__all__ = ["ModelSlot", "load_slots", "isolate_shadows", "applied_config", "DISPLAY_NAMES", "display_name",
           "resolve_model_path"]

log = logging.getLogger("ai_engine.models")

DISPLAY_NAMES = {"xgb": "XGBoost", "lgbm": "LightGBM", "nhits": "NHiTS", "patchtst": "PatchTST"}


def display_name(name: str, kind: str | None = None) -> str:
    """The name in log lines: ``PatchTST``, or ``PatchTST r2`` for the extra shadow ``patchtst_r2``."""
    kind = kind or name
    disp = DISPLAY_NAMES.get(kind, kind)
    return disp if name == kind else f"{disp} {name[len(kind) + 1:]}"


@dataclass(slots=True)
class ModelSlot:
    """One configured model. ``agent`` is None when the slot is disabled or failed to load.
    ``name`` is its key (``patchtst``, or an extra shadow's ``patchtst_r2``), ``kind`` the model
    that loads it (empty: ``name``)."""

    name: str
    role: ModelRole
    weight: float
    path: Path | None
    agent: object | None = None
    reason: str | None = None
    input_index: object | None = field(default=None, repr=False)  # column indices into the feature frame
    input_whole: bool = field(default=False, repr=False)  # input_index is every column, in order
    kind: str = ""

    def __post_init__(self) -> None:
        self.kind = self.kind or self.name

    @property
    def display(self) -> str:
        """The name in log lines (``display_name``)."""
        return display_name(self.name, self.kind)

    @property
    def active(self) -> bool:
        return self.agent is not None

    @property
    def isolated(self) -> bool:
        """Served from a process of its own (``agents.isolated``)."""
        return getattr(self.agent, "isolated", False)

    @property
    def version(self) -> str | None:
        return getattr(self.agent, "version", None)

    @property
    def sha256(self) -> str | None:
        return getattr(self.agent, "sha256", None)

    @property
    def label_config(self) -> dict | None:
        meta = getattr(self.agent, "metadata_", None) or {}
        return meta.get("label_config")


def resolve_model_path(settings: Settings, name: str) -> tuple[Path, str]:
    """The artifact path for ``name`` and where it came from: the env file's path, else the
    default file in the models directory."""
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME

    cfg = settings.all_models()[name]
    if cfg.path is not None:
        return cfg.path, "env"
    return settings.models_dir / DEFAULT_ARTIFACT_NAME[cfg.kind], "default"


def _bind_inputs(slot: ModelSlot) -> None:
    """Map the agent's expected feature names onto the engine's feature columns, or refuse."""
    from ai_engine.features import FEATURE_NAMES, SEQUENCE_CHANNELS

    agent = slot.agent
    provided = FEATURE_NAMES if agent.input_kind == "tabular" else SEQUENCE_CHANNELS
    wanted = tuple(agent.feature_names_in_)
    missing = [n for n in wanted if n not in provided]
    if missing:
        raise FeatureMismatchError(
            f"{slot.name} artifact expects features the engine does not compute: {missing} "
            f"({len(wanted)} expected, {len(provided)} provided)"
        )
    slot.input_index = [provided.index(n) for n in wanted]
    slot.input_whole = slot.input_index == list(range(len(provided)))


def load_slot(settings: Settings, name: str, *, strict: bool = False) -> ModelSlot:
    """Load one model. With ``strict`` a load failure raises instead of giving an inactive slot."""
    from ai_engine.agents import load_agent
    from ai_engine.lifecycle.registry import registry_record

    cfg = settings.all_models()[name]
    if cfg.role is ModelRole.DISABLED:
        return ModelSlot(name, cfg.role, cfg.weight, cfg.path, reason="disabled by configuration", kind=cfg.kind)
    path, origin = resolve_model_path(settings, name)
    slot = ModelSlot(name, cfg.role, cfg.weight, path, kind=cfg.kind)
    disp = slot.display
    if origin == "env":
        log.info("[%s] Using %s env var: %s", disp, cfg.path_key, path)
    else:
        log.info("[%s] Using %s model path: %s", disp, origin, path)
    try:  # an unreadable registry index is a load failure of the model too, never a crash
        recorded = registry_record(settings.models_dir, path)
        slot.agent = load_agent(cfg.kind, path, expected_sha256=recorded[1] if recorded else None)
        _bind_inputs(slot)
    except ModelLoadError as exc:
        slot.agent, slot.reason = None, str(exc)
        if strict:
            raise
        log.error("[%s] ❌ model not loaded, excluded from the ensemble: %s", disp, exc)
        return slot
    except Exception as exc:  # an unexpected loader failure is still a load failure, never a crash
        slot.agent, slot.reason = None, f"{type(exc).__name__}: {exc}"
        if strict:
            raise ModelLoadError(f"{name}: {slot.reason}") from exc
        log.error("[%s] ❌ model not loaded, excluded from the ensemble: %s", disp, slot.reason)
        return slot
    mode = " (mode=SHADOW_ONLY)" if cfg.role is ModelRole.SHADOW else ""
    if recorded and recorded[0] == "baseline":  # the spec checks a full rollback with grep "PatchTST.*baseline"
        mode += " (baseline)"
    log.info("[%s] ✅ Model weights loaded from %s%s", disp, path.name, mode)
    _warn_if_degenerate(disp, slot)
    return slot


def _warn_if_degenerate(disp: str, slot: ModelSlot) -> None:
    """A model saved with ``--force`` past the degeneracy guard still loads, but loudly."""
    from ai_engine.training.guard import GuardConfig

    report = (getattr(slot.agent, "metadata_", None) or {}).get("report") or {}
    val = report.get("val") or {}
    share, std = max(val.get("action_share") or [0.0]), val.get("confidence_std")
    guard = GuardConfig()
    if share > guard.max_action_share or (std is not None and std < guard.min_conf_std):
        log.warning(
            "[%s] ⚠ degenerate at training: validation put %.0f%% into one action, confidence std %s "
            "(guard: ≤ %.0f%%, ≥ %.2f); it was saved with --force",
            disp, 100 * share, f"{std:.4f}" if std is not None else "?", 100 * guard.max_action_share, guard.min_conf_std,
        )


def load_slots(settings: Settings, *, strict: bool = False) -> dict[str, ModelSlot]:
    """The four models, then the extra shadows (``Settings.all_models``), by key."""
    return {name: load_slot(settings, name, strict=strict) for name in settings.all_models()}


def isolate_shadows(settings: Settings, slots: dict[str, ModelSlot], previous: dict[str, ModelSlot] | None = None,
                    *, strict: bool = False) -> None:
    """With ``SHADOW_ISOLATION=process``, serve each active shadow from its own process
    (``agents.isolated``). The process of the same artifact in ``previous`` is kept, so a reload
    that leaves the shadow as it is starts nothing. The child starts in the background; a child
    that cannot be spawned at all leaves the slot inactive with the reason (``strict``: raises)."""
    from ai_engine.agents.isolated import IsolatedAgent

    if settings.shadow_isolation != "process":
        return
    for name, slot in slots.items():
        if slot.role is not ModelRole.SHADOW or not slot.active or slot.isolated:
            continue
        old = (previous or {}).get(name)
        if old is not None and old.isolated and old.sha256 == slot.sha256 and old.path == slot.path:
            slot.agent = old.agent
            continue
        try:
            slot.agent = IsolatedAgent(slot.agent, slot.path, key=slot.name)
        except ModelLoadError as exc:
            if strict:
                raise
            slot.agent, slot.reason = None, str(exc)
            log.error("[%s] ❌ model not loaded, excluded from the ensemble: %s", slot.display, exc)


def applied_config(settings: Settings, slots: dict[str, ModelSlot]) -> tuple[str, dict]:
    """The configuration actually in force (roles, weights, versions, checksums) and its id."""
    configs = settings.all_models()
    payload = {
        "models": {
            s.name: {
                "role": s.role.value,
                "weight": s.weight,
                "status": "active" if s.active else ("disabled" if s.role is ModelRole.DISABLED else "inactive"),
                "reason": s.reason,
                "path": str(s.path) if s.path else None,
                "version": s.version,
                "sha256": s.sha256,
                "label_config": s.label_config,
            } | ({"kind": s.kind} if s.kind != s.name else {})  # an extra shadow; the four's entries as before
            | ({"sample": configs[s.name].sample}  # a budgeted shadow (``sampling``); unbudgeted ones as before
               if s.role is ModelRole.SHADOW and s.name in configs and configs[s.name].sample < 1.0 else {})
            for s in slots.values()
        },
        "min_consensus": settings.min_consensus,
        "confidence_boost": settings.confidence_boost,
        "confidence_cap": settings.confidence_cap,
    }
    return config_id_for(payload), payload


def log_applied(config_id: str, payload: dict, reason: str) -> None:
    voters = [m for m, c in payload["models"].items() if c["role"] == "voter" and c["status"] == "active"]
    log.info("Applied configuration %s (%s): %d active voters %s", config_id, reason, len(voters), voters)
    for m, c in payload["models"].items():
        log.info(
            "  %-8s role=%-8s weight=%-5g status=%-8s version=%s sha256=%s%s",
            m, c["role"], c["weight"], c["status"], c["version"], (c["sha256"] or "-")[:16],
            f" reason={c['reason']}" if c["reason"] else "",
        )
