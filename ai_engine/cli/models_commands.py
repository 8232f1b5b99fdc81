"""`models stage|list|verify|backup|shadow|unshadow|activate|rollback`: the model lifecycle by command."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ai_engine.cli.options import EnvFile, env_arg, make_console

console = make_console()
ArtifactFile = typer.Argument(..., help="artifact file (its <file>.meta.json sidecar beside it)")
ModelArg = typer.Argument(..., help="model name: xgb, lgbm, nhits or patchtst")


def _settings(env_file: str):
    from ai_engine.config import load_settings

    return load_settings(env_arg(env_file))


def _report_edit(result) -> None:
    if not result.changed:
        console.print(f"{result.action}: {result.env_file} already in that state; nothing changed")
        return
    for k in result.before:
        console.print(f"  {k}: {result.before[k] if result.before[k] is not None else '(unset)'} → "
                      f"{result.after[k] if result.after[k] is not None else '(unset)'}")
    console.print(f"{result.action}: {result.env_file} updated (previous kept at {result.backup})")
    if result.signalled_pid:
        console.print(f"reload signalled to ai-engine serve pid {result.signalled_pid} (SIGHUP)")
    else:
        console.print("no running service found; the change applies at the next start")


def stage(
    file: Path = ArtifactFile,
    model: str = typer.Option(..., "--model", help="xgb, lgbm, nhits or patchtst"),
    env_file: str = EnvFile,
) -> None:
    """Copy an artifact into the registry after it loads, its checksum and features match."""
    from ai_engine.lifecycle.activation import stage as do_stage

    sv, new = do_stage(_settings(env_file), model, file)
    word = "staged" if new else "already staged"
    console.print(f"{word}: {model} {sv.version} → {sv.path} ({sv.size} bytes, sha256 {sv.sha256})")


def list_models(env_file: str = EnvFile, as_json: bool = typer.Option(False, "--json")) -> None:
    """Staged versions with size, sha256, role and whether the engine uses them now."""
    from ai_engine.lifecycle.registry import Registry
    from ai_engine.model_slots import resolve_model_path

    settings = _settings(env_file)
    reg = Registry(settings.models_dir)
    configured = settings.all_models()  # the four, then the extra shadows (each a file of its kind)
    in_use = {m: resolve_model_path(settings, m)[0].resolve() for m in configured}
    rows = []
    for sv in reg.versions():
        user = next((m for m, c in configured.items() if c.kind == sv.model and in_use[m] == sv.path.resolve()), None)
        role = "-" if user is None else configured[user].role.value + (f" ({user})" if user != sv.model else "")
        rows.append({"model": sv.model, "version": sv.version, "size": sv.size, "sha256": sv.sha256,
                     "path": str(sv.path), "role": role, "in_use": user is not None, "staged_at": sv.staged_at})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    t = Table(title=f"Registry {settings.models_dir}")
    for col in ("model", "version", "size", "sha256", "role", "in use", "staged"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["model"], r["version"], f"{r['size'] / 1e6:.2f} MB", r["sha256"][:16], r["role"],
                  "yes" if r["in_use"] else "", r["staged_at"])
    console.print(t)
    for m, p in in_use.items():
        if not any(r["in_use"] and r["path"] and Path(r["path"]).resolve() == p for r in rows):
            state = "not a staged version" if p.is_file() else "[red]MISSING: no such file[/red]"
            console.print(f"{m}: in use {p} ({state}), role {configured[m].role.value}")


def verify(env_file: str = EnvFile) -> None:
    """Re-hash every staged artifact and baseline against the registry; exit 1 on any mismatch."""
    from ai_engine.lifecycle.registry import Registry

    results = Registry(_settings(env_file).models_dir).verify()
    bad = 0
    for r in results:
        mark = "[green]OK[/green]  " if r.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {r.model} {r.version} {r.path}" + (f": {r.problem}" if r.problem else ""))
        bad += not r.ok
    console.print(f"{len(results) - bad}/{len(results)} artifacts verified")
    raise typer.Exit(1 if bad else 0)


def backup(env_file: str = EnvFile) -> None:
    """Baseline copies of the artifacts in use and of the env file (spec step 3)."""
    from ai_engine.lifecycle.rollback import backup as do_backup

    res = do_backup(_settings(env_file))
    for m, p in res.models.items():
        console.print(f"baseline {m}: {p}")
    for m, why in res.skipped.items():
        console.print(f"skipped {m}: {why}")
    console.print(f"env backup: {res.env_backup or '(no env file in use)'}")


def shadow(
    model: str = ModelArg,
    version: str = typer.Option(None, "--version", help="staged version (default: newest staged)"),
    tag: str = typer.Option(None, "--as", help="run it as the extra shadow <model>_<TAG> beside everything else "
                                              "(sets SHADOW_<MODEL>_<TAG>_MODEL_PATH), e.g. --as r2"),
    sample: float = typer.Option(None, "--sample", help="fraction of decisions it predicts on, in (0, 1] (sets "
                                                        "SHADOW_<MODEL>_<TAG>_SAMPLE, or SHADOW_SAMPLE without --as)"),
    env_file: str = EnvFile,
) -> None:
    """Run a staged version in shadow (sets <MODEL>_MODEL_PATH and <MODEL>_SHADOW_ONLY=true; with
    --as TAG, as one more shadow under its own key)."""
    from ai_engine.lifecycle.activation import shadow as do_shadow

    _report_edit(do_shadow(_settings(env_file), model, version, tag, sample))


def unshadow(
    key: str = typer.Argument(..., help="an extra shadow's key, e.g. patchtst_r2"),
    env_file: str = EnvFile,
) -> None:
    """Stop an extra shadow (removes its SHADOW_<MODEL>_<TAG>_MODEL_PATH and _SAMPLE lines)."""
    from ai_engine.lifecycle.activation import unshadow as do_unshadow

    _report_edit(do_unshadow(_settings(env_file), key))


def activate(
    model: str = ModelArg,
    weight: float = typer.Option(None, "--weight", help="its voting weight (default: the configured one)"),
    rebalance: str = typer.Option(None, "--rebalance", help="other weights, e.g. xgb=27.5,lgbm=27.5,nhits=40"),
    force: bool = typer.Option(False, "--force", help="activate although the gate verdict is not READY (audited)"),
    hours: float = typer.Option(168.0, "--hours", help="analysis window of the gate check"),
    env_file: str = EnvFile,
) -> None:
    """Make a model vote: option A (--weight 20) or B (--weight 5 --rebalance ...); all weights sum to 100."""
    from ai_engine.lifecycle.activation import activate as do_activate
    from ai_engine.lifecycle.activation import parse_weights

    reb = parse_weights(rebalance) if rebalance is not None else None
    _report_edit(do_activate(_settings(env_file), model, weight, reb, force=force, gate_hours=hours))


def rollback(
    fast: bool = typer.Option(False, "--fast", help="drop the shadow flag (the new model votes)"),
    full: bool = typer.Option(False, "--full", help="baseline model file, no shadow flag, baseline weights"),
    nuclear: bool = typer.Option(False, "--nuclear", help="restore the backed-up env file"),
    model: str = typer.Option("patchtst", "--model"),
    force: bool = typer.Option(False, "--force", help="--fast although the gate verdict is not READY (audited)"),
    hours: float = typer.Option(168.0, "--hours", help="analysis window of the gate check of --fast"),
    env_file: str = EnvFile,
) -> None:
    """The spec's rollback levels; exactly one of --fast, --full, --nuclear. --fast makes the
    model vote, so it needs a READY gate verdict (or --force), as `activate` does."""
    from ai_engine.exceptions import ConfigError
    from ai_engine.lifecycle.rollback import rollback as do_rollback

    levels = [name for name, on in (("fast", fast), ("full", full), ("nuclear", nuclear)) if on]
    if len(levels) != 1:
        raise ConfigError("give exactly one of --fast, --full, --nuclear")
    _report_edit(do_rollback(_settings(env_file), levels[0], model, force=force, gate_hours=hours))


def register_models(models_app: typer.Typer) -> None:
    """Add the lifecycle commands to the `models` sub-app."""
    models_app.command("stage")(stage)
    models_app.command("list")(list_models)
    models_app.command("verify")(verify)
    models_app.command("backup")(backup)
    models_app.command("shadow")(shadow)
    models_app.command("unshadow")(unshadow)
    models_app.command("activate")(activate)
    models_app.command("rollback")(rollback)
