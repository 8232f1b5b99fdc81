"""Roles, weights and model files changed by command, never by editing code (failure mode 19).

Every change to the env file is computed on a private copy through ``update_env_file`` (keyed,
comments kept, idempotent), validated with ``load_settings`` and, when it points a model at a new
file, by loading that model, BEFORE it replaces the real file atomically. The previous file is
backed up first, the change is appended to the audit log, and a running ``serve`` is told to
reload (SIGHUP to the pid in ``$AI_ENGINE_HOME/ai-engine.pid``). A refused change leaves the env
file byte-identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ai_engine.config import MODEL_ENV_PREFIX, Settings, load_settings
from ai_engine.exceptions import ConfigError, ModelLoadError
from ai_engine.lifecycle.audit import append_audit
from ai_engine.lifecycle.envfile import read_env_file, update_env_file, write_atomic
from ai_engine.lifecycle.reload_signal import signal_reload

__all__ = ["EditResult", "edit_env", "env_path", "model_key"]

log = logging.getLogger("ai_engine.lifecycle")


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


def model_key(model: str, suffix: str) -> str:
    if model not in MODEL_ENV_PREFIX:
        raise ConfigError(f"unknown model {model!r}; expected one of {', '.join(MODEL_ENV_PREFIX)}")
    return f"{MODEL_ENV_PREFIX[model]}_{suffix}"


def env_path(settings: Settings) -> Path:
    if settings.env_file is None:
        raise ConfigError("no env file in use; give --env-file FILE (lifecycle commands edit it)")
    return settings.env_file


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

    new_models, old_models = new.all_models(), old.all_models()
    for m in models:
        cfg = new_models.get(m)
        if cfg is None or cfg.role is ModelRole.DISABLED:  # disabled, or an extra shadow the edit removed
            continue
        before = old_models.get(m)
        if before is not None and cfg.path == before.path and cfg.role == before.role:
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
    env = env_path(settings)
    with _one_editor(settings.home):
        return _edit_locked(env, settings, action, set_values, unset, replace_text, check_models, detail)


@contextlib.contextmanager
def _one_editor(home: Path) -> Iterator[None]:
    """One editor of the env file at a time (an operator's command, the policy's process, a
    retrain): each reads the file it changes under this lock, so no edit is lost to another made
    meanwhile. The lock file is in the engine's home (beside the audit log it also serialises)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".env-edit.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _edit_locked(env: Path, settings: Settings, action: str, set_values: dict[str, str] | None,
                 unset: tuple[str, ...], replace_text: str | None, check_models: tuple[str, ...],
                 detail: dict | None) -> EditResult:
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
