"""Roles, weights and model files changed by command, never by editing code (failure mode 19).

Every change to the env file is computed on a private copy through ``update_env_file`` (keyed,
comments kept, idempotent), validated with ``load_settings`` and, when it points a model at a new
file, by loading that model, BEFORE it replaces the real file atomically. The previous file is
backed up first, the change is appended to the audit log, and a running ``serve`` is told to
reload (SIGHUP to the pid in ``$AI_ENGINE_HOME/ai-engine.pid``). A refused change leaves the env
file byte-identical.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ai_engine.audit import append_audit, current_user
from ai_engine.config import MODEL_ENV_PREFIX, Settings, load_settings
from ai_engine.envfile import read_env_file, update_env_file, write_atomic
from ai_engine.exceptions import ConfigError, DataError, ModelLoadError
from ai_engine.registry import Registry, StagedVersion, artifact_ext

__all__ = [
    "PID_FILE_NAME",
    "EditResult",
    "BackupResult",
    "GateCheck",
    "activate",
    "backup",
    "check_gate",
    "edit_env",
    "parse_weights",
    "read_pid",
    "rollback",
    "shadow",
    "signal_reload",
    "stage",
]

log = logging.getLogger("ai_engine.lifecycle")

PID_FILE_NAME = "ai-engine.pid"
ROLLBACK_LEVELS = ("fast", "full", "nuclear")


@dataclass(frozen=True, slots=True)
class EditResult:
    """What an env edit did. ``before``/``after`` hold the touched keys (None = absent)."""

    action: str
    env_file: Path
    changed: bool
    backup: Path | None
    before: dict[str, str | None]
    after: dict[str, str | None]
    signalled_pid: int | None


@dataclass(frozen=True, slots=True)
class BackupResult:
    models: dict[str, Path]
    env_backup: Path | None
    skipped: dict[str, str]


@dataclass(frozen=True, slots=True)
class GateCheck:
    verdict: str  # READY | NOT_READY | INCONCLUSIVE
    detail: str
    edge: str | None = None  # BETTER | WORSE | NOT DISTINGUISHABLE YET; None without an edge analysis


def _model_key(model: str, suffix: str) -> str:
    if model not in MODEL_ENV_PREFIX:
        raise ConfigError(f"unknown model {model!r}; expected one of {', '.join(MODEL_ENV_PREFIX)}")
    return f"{MODEL_ENV_PREFIX[model]}_{suffix}"


def _env_path(settings: Settings) -> Path:
    if settings.env_file is None:
        raise ConfigError("no env file in use; give --env-file FILE (lifecycle commands edit it)")
    return settings.env_file


# -- the service's pid file and the reload signal ----------------------------------------------
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


# -- env edits -----------------------------------------------------------------------------------
def _backup_copy(env: Path, home: Path) -> Path:
    """Copy of the env file as it was before an edit: ``$AI_ENGINE_HOME/env-backups/<name>.<ts>``."""
    dest_dir = Path(home) / "env-backups"
    dest_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:].replace(".", "_")
    dest = dest_dir / f"{env.name}.{stamp}"
    shutil.copy2(env, dest)
    return dest


def _check_models(new: Settings, old: Settings, models: tuple[str, ...]) -> None:
    """Load each model whose file or role changed, so an edit never points at a file that fails."""
    from ai_engine.enums import ModelRole
    from ai_engine.model_slots import load_slot

    for m in models:
        cfg = new.models[m]
        if cfg.role is ModelRole.DISABLED:
            continue
        if cfg.path == old.models[m].path and cfg.role == old.models[m].role:
            continue
        load_slot(new, m, strict=True)


def edit_env(
    settings: Settings,
    action: str,
    set_values: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    *,
    replace_text: str | None = None,
    check_models: tuple[str, ...] = (),
    detail: dict | None = None,
) -> EditResult:
    """Apply an edit to the env file: validate on a copy, back up, replace atomically, audit, reload.

    ``replace_text`` restores a whole file (nuclear rollback) instead of keyed changes.

    Raises:
        ConfigError: the result would not be a valid configuration (nothing is changed).
        ModelLoadError, FeatureMismatchError: a model the edit points at does not load.
    """
    env = _env_path(settings)
    old_text = env.read_text(encoding="utf-8")
    old_vals = read_env_file(env)
    tmp = env.with_name(f".{env.name}.edit-{os.getpid()}")
    try:
        write_atomic(tmp, old_text)
        shutil.copymode(env, tmp)
        if replace_text is not None:
            write_atomic(tmp, replace_text)
        else:
            update_env_file(tmp, set_values or {}, unset)
        new_text = tmp.read_text(encoding="utf-8")
        if new_text == old_text:
            return EditResult(action, env, False, None, {}, {}, None)
        try:
            new_settings = load_settings(tmp)
        except ConfigError as exc:
            raise ConfigError(f"{action} refused, {env} left unchanged: the result would be invalid: {exc}") from None
        try:
            _check_models(new_settings, settings, check_models)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{action} refused, {env} left unchanged: {exc}") from None
        new_vals = read_env_file(tmp)
        keys = sorted(k for k in set(old_vals) | set(new_vals) if old_vals.get(k) != new_vals.get(k))
        before = {k: old_vals.get(k) for k in keys}
        after = {k: new_vals.get(k) for k in keys}
        backup_path = _backup_copy(env, settings.home)
        write_atomic(env, new_text)  # through a symlink, keeping mode, owner and group
    finally:
        tmp.unlink(missing_ok=True)
    append_audit(settings.home, action, before=before, after=after, env_file=str(env), backup=str(backup_path),
                 **(detail or {}))
    log.info("%s: %s updated (%s); previous file kept at %s", action, env,
             ", ".join(f"{k}={after[k]}" if after[k] is not None else f"-{k}" for k in keys), backup_path)
    pid = signal_reload(settings.home)
    return EditResult(action, env, True, backup_path, before, after, pid)


# -- weights -------------------------------------------------------------------------------------
def parse_weights(text: str, flag: str = "--rebalance") -> dict[str, float]:
    """Parse ``xgb=27.5,lgbm=27.5,nhits=40``; anything malformed is a ConfigError naming ``flag`` and the part."""
    out: dict[str, float] = {}
    if not text or not text.strip():
        raise ConfigError(f"{flag} is empty; expected MODEL=WEIGHT pairs, e.g. xgb=27.5,lgbm=27.5,nhits=40")
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or not name or not value.strip():
            raise ConfigError(f"{flag} item {part.strip()!r} is malformed; expected MODEL=WEIGHT, e.g. xgb=27.5")
        if name not in MODEL_ENV_PREFIX:
            raise ConfigError(f"{flag} names unknown model {name!r}; expected one of {', '.join(MODEL_ENV_PREFIX)}")
        if name in out:
            raise ConfigError(f"{flag} gives {name} twice")
        try:
            w = float(value)
        except ValueError:
            raise ConfigError(f"{flag} weight for {name} is {value.strip()!r}, not a number") from None
        if not math.isfinite(w) or not 0.0 <= w <= 100.0:
            raise ConfigError(f"{flag} weight for {name} is {value.strip()}; expected a number in [0, 100]")
        out[name] = w
    return out


# -- guard rail: the analysis gate ---------------------------------------------------------------
def check_gate(settings: Settings, model: str, hours: float = 168.0) -> GateCheck:
    """The gate verdict of the artifact ``model`` would vote with (the file the env names now),
    judged on that file's own shadow predictions in the last ``hours`` of the telemetry store: rows
    of another version, or made while the model voted, are not evidence for it."""
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
        result = analyze(settings.store_path, hours, model=model, only=("shadow", sha))
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


def _gate_to_vote(settings: Settings, model: str, hours: float, force: bool, refusal: str) -> dict:
    """What makes ``model`` vote needs a READY verdict and an edge that is not WORSE (activating
    it would have made the ensemble forecast or earn worse), or ``force``: the audit fields, or a
    ConfigError with ``refusal`` ({} = the verdict and why)."""
    gate = check_gate(settings, model, hours)
    ok = gate.verdict == "READY" and gate.edge != "WORSE"
    if not ok and not force:
        verdict = gate.verdict if gate.verdict != "READY" else "READY but its edge is WORSE"
        raise ConfigError(refusal.format(f"{verdict} ({gate.detail})"))
    return {"gate": gate.verdict, "edge": gate.edge, "gate_detail": gate.detail, "forced": force and not ok}


# -- commands ------------------------------------------------------------------------------------
def stage(settings: Settings, model: str, src: Path) -> tuple[StagedVersion, bool]:
    """Stage an artifact into the registry (refused unless it loads), audited."""
    _model_key(model, "MODEL_PATH")
    staged, new = Registry(settings.models_dir).stage(model, Path(src), staged_by=current_user())
    if new:
        append_audit(settings.home, "models.stage", before=None,
                     after={"model": model, "version": staged.version, "path": str(staged.path), "sha256": staged.sha256},
                     source=str(Path(src).resolve()))
    return staged, new


def _verified(reg: Registry, model: str, version: str | None) -> StagedVersion:
    from ai_engine.agents.artifacts import sha256_file

    sv = reg.get(model, version)
    if not sv.path.is_file():
        raise ModelLoadError(f"{model} {sv.version}: staged file {sv.path} is missing; re-stage it")
    actual = sha256_file(sv.path)
    if actual != sv.sha256:
        raise ModelLoadError(f"{model} {sv.version}: {sv.path} has sha256 {actual[:16]}…, registry says "
                             f"{sv.sha256[:16]}…; the file changed after staging, refusing to use it")
    return sv


def shadow(settings: Settings, model: str, version: str | None = None) -> EditResult:
    """Run a staged version in shadow: ``<M>_MODEL_PATH`` = its file, ``<M>_SHADOW_ONLY=true``."""
    sv = _verified(Registry(settings.models_dir), model, version)
    return edit_env(
        settings, f"models.shadow {model}",
        {_model_key(model, "MODEL_PATH"): str(sv.path), _model_key(model, "SHADOW_ONLY"): "true"},
        unset=(_model_key(model, "ROLE"),), check_models=(model,),
        detail={"model": model, "version": sv.version, "sha256": sv.sha256},
    )


def _rebalance_hint(weights: dict[str, float], model: str, w: float) -> str:
    """A --rebalance that makes the weights sum to 100: the others scaled to share 100 - w."""
    others = {m: v for m, v in weights.items() if m != model}
    rest = sum(others.values())
    if rest <= 0 or w > 100:
        return ""
    scaled = {m: round(v * (100.0 - w) / rest, 2) for m, v in others.items()}
    last = max(scaled, key=scaled.get)
    scaled[last] = round(100.0 - w - sum(v for m, v in scaled.items() if m != last), 2)
    return ", e.g. --rebalance " + ",".join(f"{m}={v:g}" for m, v in scaled.items())


def activate(
    settings: Settings,
    model: str,
    weight: float | None = None,
    rebalance: dict[str, float] | None = None,
    *,
    force: bool = False,
    gate_hours: float = 168.0,
) -> EditResult:
    """Make ``model`` a voter at ``weight`` (option A), other weights set by ``rebalance`` (option B).

    Raises:
        ConfigError: weights not summing to 100, a rebalance naming ``model``, or a gate verdict
            other than READY, or an edge verdict of WORSE, without ``force``.
    """
    _model_key(model, "WEIGHT")
    rebalance = dict(rebalance or {})
    if model in rebalance:
        raise ConfigError(f"--rebalance must not name {model}; its weight is --weight")
    w = settings.models[model].weight if weight is None else float(weight)
    if not math.isfinite(w) or not 0.0 <= w <= 100.0:
        raise ConfigError(f"--weight {weight} is not valid: expected a number in [0, 100]")
    weights = settings.weights() | rebalance | {model: w}
    total = sum(weights.values())
    if abs(total - 100.0) > 1e-6:
        parts = ", ".join(f"{m}={v:g}" for m, v in weights.items())
        raise ConfigError(f"weights must sum to 100, got {total:g} ({parts}); give --rebalance for the other "
                          f"models{_rebalance_hint(weights, model, w)}")
    gate = _gate_to_vote(settings, model, gate_hours, force, f"{model} gate verdict is {{}}; activation needs READY and an "
                         "edge that is not WORSE, or --force (recorded in the audit log)")
    set_values = {_model_key(m, "WEIGHT"): f"{v:g}" for m, v in weights.items()
                  if m == model or m in rebalance}
    return edit_env(
        settings, f"models.activate {model}", set_values,
        unset=(_model_key(model, "SHADOW_ONLY"), _model_key(model, "ROLE")), check_models=(model,),
        detail={"model": model, "weight": w, "rebalance": rebalance, **gate},
    )


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
    shadow_key, role_key = _model_key(model, "SHADOW_ONLY"), _model_key(model, "ROLE")
    if level == "fast":
        current = read_env_file(_env_path(settings))
        unset = (shadow_key,) + ((role_key,) if current.get(role_key, "").strip().lower() == "shadow" else ())
        gate = _gate_to_vote(settings, model, gate_hours, force,
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
    weight_keys = [_model_key(m, "WEIGHT") for m in MODEL_ENV_PREFIX]
    set_values = {k: base_vals[k] for k in weight_keys if k in base_vals}
    set_values[_model_key(model, "MODEL_PATH")] = str(base_model)
    unset = (shadow_key, role_key) + tuple(k for k in weight_keys if k not in base_vals)
    return edit_env(settings, f"models.rollback.full {model}", set_values, unset, check_models=(model,),
                    detail={"model": model, "level": level, "baseline": str(base_model), "weights_from": str(env_backup)})
