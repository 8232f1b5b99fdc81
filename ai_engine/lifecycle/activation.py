"""The commands that bring a model in: ``stage`` into the registry, ``shadow``, ``activate``.

Each is one audited env-file edit (``edits.edit_env``): ``shadow`` points ``<M>_MODEL_PATH`` at a
verified staged file and sets ``<M>_SHADOW_ONLY=true``, or with a tag runs the file as an extra
shadow beside everything else (``SHADOW_<M>_<TAG>_MODEL_PATH``, ``unshadow`` removes it);
``activate`` makes the model a voter at a weight, the other weights given by ``--rebalance``
(options A and B), behind the gate.
"""

from __future__ import annotations

import math
from pathlib import Path

from ai_engine.config import MODEL_ENV_PREFIX, Settings, extra_shadow_key
from ai_engine.exceptions import ConfigError, ModelLoadError
from ai_engine.lifecycle.audit import append_audit, current_user
from ai_engine.lifecycle.edits import EditResult, edit_env, model_key
from ai_engine.lifecycle.gate import gate_to_vote
from ai_engine.lifecycle.registry import Registry, StagedVersion

__all__ = ["activate", "parse_weights", "shadow", "stage", "unshadow"]


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


def stage(settings: Settings, model: str, src: Path) -> tuple[StagedVersion, bool]:
    """Stage an artifact into the registry (refused unless it loads), audited."""
    model_key(model, "MODEL_PATH")
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


def shadow(settings: Settings, model: str, version: str | None = None, tag: str | None = None,
           sample: float | None = None) -> EditResult:
    """Run a staged version in shadow: ``<M>_MODEL_PATH`` = its file, ``<M>_SHADOW_ONLY=true``.

    With ``tag``, as the extra shadow ``<model>_<tag>`` instead (``SHADOW_<M>_<TAG>_MODEL_PATH`` =
    its file): the model's own keys, the voters and the other shadows are left as they are.
    ``sample`` is its budget (``SHADOW_<M>_<TAG>_SAMPLE``, or ``SHADOW_SAMPLE`` without a tag),
    validated with the rest of the edit."""
    sv = _verified(Registry(settings.models_dir), model, version)
    if tag is not None:
        key, name = extra_shadow_key(model, tag), f"{model}_{tag.lower()}"
        budget = {} if sample is None else {extra_shadow_key(model, tag, "_SAMPLE"): repr(float(sample))}
        return edit_env(settings, f"models.shadow {name}", {key: str(sv.path)} | budget, check_models=(name,),
                        detail={"model": model, "key": name, "version": sv.version, "sha256": sv.sha256})
    return edit_env(
        settings, f"models.shadow {model}",
        {model_key(model, "MODEL_PATH"): str(sv.path), model_key(model, "SHADOW_ONLY"): "true"}
        | ({} if sample is None else {"SHADOW_SAMPLE": repr(float(sample))}),
        unset=(model_key(model, "ROLE"),), check_models=(model,),
        detail={"model": model, "version": sv.version, "sha256": sv.sha256},
    )


def unshadow(settings: Settings, key: str) -> EditResult:
    """Stop the extra shadow ``key`` (``patchtst_r2``): its env lines (file and budget) removed, audited."""
    cfg = settings.shadows.get(key)
    if cfg is None:
        where = settings.env_file or "the configuration"
        hint = (f"{key} is one of the four models: it leaves shadow by `models activate` or `models rollback`"
                if key in MODEL_ENV_PREFIX else f"extra shadows in {where}: {', '.join(settings.shadows) or 'none'}")
        raise ConfigError(f"{key!r} is not an extra shadow; {hint}")
    return edit_env(settings, f"models.unshadow {key}", unset=(cfg.path_key, cfg.sample_key),
                    detail={"model": cfg.kind, "key": key, "path": str(cfg.path)})


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


def activation_gate(settings: Settings, key: str, gate_hours: float = 168.0, *, force: bool = False,
                    shadowed_as: str | None = None) -> dict:
    """The gate and edge verdict ``activate`` needs for ``key`` (the audit fields); raises ConfigError
    unless READY with an edge that is not WORSE, or ``force``."""
    return gate_to_vote(settings, key, gate_hours, force, f"{key} gate verdict is {{}}; activation needs READY and an "
                        "edge that is not WORSE, or --force (recorded in the audit log)", rows_of=shadowed_as)


def activate(
    settings: Settings,
    model: str,
    weight: float | None = None,
    rebalance: dict[str, float] | None = None,
    *,
    force: bool = False,
    gate_hours: float = 168.0,
    shadowed_as: str | None = None,
    gate: dict | None = None,
) -> EditResult:
    """Make ``model`` a voter at ``weight`` (option A), other weights set by ``rebalance`` (option B).

    ``model`` may be an extra shadow's key (``patchtst_r2``, a retrain beside its champion): its file
    becomes its model's voter, in place of the champion's, and its own lines go, in one edit (the
    edge judged it as replacing the champion). ``shadowed_as`` names the extra shadow a voting
    file was promoted from: its shadow rows are that file's evidence. ``gate``: the verdict
    :func:`activation_gate` already gave for these arguments (the policy computes it before it
    takes its lock, so a rollback never waits on an analysis); None: computed here.

    Raises:
        ConfigError: weights not summing to 100, a rebalance naming ``model``, or a gate verdict
            other than READY, or an edge verdict of WORSE, without ``force``.
    """
    extra = settings.shadows.get(model)
    key, model = model, extra.kind if extra is not None else model
    model_key(model, "WEIGHT")
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
    if gate is None:
        gate = activation_gate(settings, key, gate_hours, force=force, shadowed_as=shadowed_as)
    set_values = {model_key(m, "WEIGHT"): f"{v:g}" for m, v in weights.items()
                  if m == model or m in rebalance}
    unset = (model_key(model, "SHADOW_ONLY"), model_key(model, "ROLE"))
    if extra is not None:
        set_values[model_key(model, "MODEL_PATH")] = str(extra.path)
        unset += (extra.path_key, extra.sample_key)
    return edit_env(
        settings, f"models.activate {key}", set_values, unset=unset, check_models=(model,),
        detail={"model": model, "weight": w, "rebalance": rebalance, **gate}
        | ({"from_shadow": key, "path": str(extra.path)} if extra is not None else {}),
    )
