"""Baseline copies (``models backup``) and the spec's three rollbacks (fast, full, nuclear).

Full and nuclear undo a deployment from the baselines ``backup`` recorded in the registry (their
checksums checked); fast makes the new model vote, so it passes the gate like ``activate``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ai_engine.config import MODEL_ENV_PREFIX, Settings
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle.audit import append_audit
from ai_engine.lifecycle.edits import EditResult, edit_env, env_path, model_key
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.lifecycle.gate import gate_to_vote
from ai_engine.lifecycle.registry import Registry, artifact_ext

__all__ = ["ROLLBACK_LEVELS", "BackupResult", "backup", "rollback"]

ROLLBACK_LEVELS = ("fast", "full", "nuclear")


@dataclass(frozen=True, slots=True)
class BackupResult:
    models: dict[str, Path]
    env_backup: Path | None
    skipped: dict[str, str]


def backup(settings: Settings) -> BackupResult:
    """Baseline copies (spec step 3): each model's artifact in use as ``<model>_model_BASELINE_<date><ext>``
    (with its sidecar) and the env file as ``<env>.backup.<date>``; an existing copy is never overwritten."""
    from ai_engine.agents.artifacts import meta_path_for, sha256_file
    from ai_engine.enums import ModelRole
    from ai_engine.model_slots import resolve_model_path

    reg = Registry(settings.models_dir)
    date = time.strftime("%Y%m%d", time.gmtime())
    made: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for m, cfg in settings.models.items():
        if cfg.role is ModelRole.DISABLED:
            skipped[m] = "disabled"
            continue
        src, _ = resolve_model_path(settings, m)
        if not src.is_file():
            skipped[m] = f"no artifact at {src}"
            continue
        dest = settings.models_dir / f"{m}_model_BASELINE_{date}{artifact_ext(m)}"
        if dest.exists() and sha256_file(dest) != sha256_file(src):
            dest = dest.with_name(f"{m}_model_BASELINE_{date}_{time.strftime('%H%M%S', time.gmtime())}{artifact_ext(m)}")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            if meta_path_for(src).is_file():
                shutil.copy2(meta_path_for(src), meta_path_for(dest))
        reg.record_baseline(m, dest, sha256_file(dest), src)
        made[m] = dest
    env_backup = None
    if settings.env_file is not None:
        env_backup = settings.env_file.with_name(f"{settings.env_file.name}.backup.{date}")
        if env_backup.exists() and env_backup.read_bytes() != settings.env_file.read_bytes():
            env_backup = env_backup.with_name(f"{env_backup.name}_{time.strftime('%H%M%S', time.gmtime())}")
        if not env_backup.exists():
            shutil.copy2(settings.env_file, env_backup)
        reg.record_baseline("env", env_backup, sha256_file(env_backup), settings.env_file)
    append_audit(settings.home, "models.backup", before=None,
                 after={"models": {m: str(p) for m, p in made.items()}, "env": str(env_backup) if env_backup else None},
                 skipped=skipped)
    return BackupResult(made, env_backup, skipped)


def _baseline(settings: Settings, key: str) -> Path:
    b = Registry(settings.models_dir).baselines().get(key)
    if b is None:
        raise ConfigError(f"no baseline of {key} recorded; run `ai-engine models backup` before deploying")
    path = Path(b["file"])
    from ai_engine.agents.artifacts import sha256_file

    if not path.is_file() or sha256_file(path) != b["sha256"]:
        raise ConfigError(f"baseline {path} is missing or changed since `models backup` (sha256 mismatch)")
    return path


def rollback(settings: Settings, level: str, model: str = "patchtst", *, force: bool = False,
             gate_hours: float = 168.0) -> EditResult:
    """The spec's three rollbacks.

    fast: drop the shadow flag, so the new model votes: like ``activate``, only on a READY gate
    verdict for that file, or with ``force`` (audited). full: the model back on its baseline copy,
    shadow flag dropped, all weights as in the baseline env backup. nuclear: the baseline env
    backup restored as a whole. Full and nuclear undo; they never need the gate.
    """
    if level not in ROLLBACK_LEVELS:
        raise ConfigError(f"rollback level {level!r} is not valid: expected one of {', '.join(ROLLBACK_LEVELS)}")
    if force and level != "fast":
        raise ConfigError(f"--force applies to --fast only (it makes {model} vote); --{level} restores a backup")
    shadow_key, role_key = model_key(model, "SHADOW_ONLY"), model_key(model, "ROLE")
    if level == "fast":
        current = read_env_file(env_path(settings))
        unset = (shadow_key,) + ((role_key,) if current.get(role_key, "").strip().lower() == "shadow" else ())
        gate = gate_to_vote(settings, model, gate_hours, force,
                             f"rollback --fast makes {model} vote; its gate verdict is {{}}; that needs READY, or "
                             "--force (recorded in the audit log). To undo the deployment instead: rollback --full")
        return edit_env(settings, f"models.rollback.fast {model}", unset=unset, check_models=(model,),
                        detail={"model": model, "level": level, **gate})
    env_backup = _baseline(settings, "env")
    if level == "nuclear":
        return edit_env(settings, "models.rollback.nuclear", replace_text=env_backup.read_text(encoding="utf-8"),
                        check_models=tuple(settings.models), detail={"level": level, "restored_from": str(env_backup)})
    base_model = _baseline(settings, model)
    base_vals = read_env_file(env_backup)
    weight_keys = [model_key(m, "WEIGHT") for m in MODEL_ENV_PREFIX]
    set_values = {k: base_vals[k] for k in weight_keys if k in base_vals}
    set_values[model_key(model, "MODEL_PATH")] = str(base_model)
    unset = (shadow_key, role_key) + tuple(k for k in weight_keys if k not in base_vals)
    return edit_env(settings, f"models.rollback.full {model}", set_values, unset, check_models=(model,),
                    detail={"model": model, "level": level, "baseline": str(base_model), "weights_from": str(env_backup)})
