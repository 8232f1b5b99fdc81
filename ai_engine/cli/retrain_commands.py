"""`ai-engine retrain MODEL`: train on the newest window, stage, and run it as an extra shadow (``lifecycle/retrain.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ai_engine.cli.options import AvoidCpu, ChildOf, EnvFile, env_arg, make_console
from ai_engine.cli.train_commands import ModelChoice, training_errors
from ai_engine.exceptions import ConfigError

__all__ = ["register", "start_retrain"]

console = make_console()


def start_retrain(
    model: ModelChoice = typer.Argument(..., help="model to retrain: xgb, lgbm, nhits or patchtst"),
    data: Path = typer.Option(None, "--data", help="directory of <SYMBOL>-<interval>.csv candles; default "
                              "AI_ENGINE_RETRAIN_DATA_DIR, else AI_ENGINE_DATA_DIR"),
    symbols: str = typer.Option(None, "--symbols", help="comma-separated symbols; default AI_ENGINE_SYMBOLS"),
    interval: str = typer.Option(None, "--interval", help="candle interval; default AI_ENGINE_INTERVAL"),
    window_days: float = typer.Option(None, "--window-days", help="train on the newest N days of candles; default "
                                      "AI_ENGINE_RETRAIN_WINDOW_DAYS (90)"),
    tag: str = typer.Option("retrain", "--tag", help="the extra shadow's tag: it runs as <model>_<tag> "
                            "(SHADOW_<MODEL>_<TAG>_MODEL_PATH), replacing the previous retrain of that tag"),
    sample: float = typer.Option(None, "--sample", help="its shadow budget in (0, 1] (SHADOW_<MODEL>_<TAG>_SAMPLE)"),
    epochs: int = typer.Option(None, "--epochs", help="epochs (nhits/patchtst) or max boosting rounds (trees)"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for training"),
    env_file: str = EnvFile,
    child_of: int | None = ChildOf,
    avoid_cpu: int | None = AvoidCpu,
) -> None:
    """Train MODEL on the newest window, stage it with its report, and shadow it beside everything
    else; it votes only through `models activate` or the policy, never because it is newer."""
    if child_of is not None:
        from ai_engine.child_process import become_child_of

        become_child_of(child_of, avoid_cpu)
        console.print(f"retrain {model.value}: child of serve pid {child_of} at nice {os.nice(0)}")
    from ai_engine.training import render

    with training_errors():
        from ai_engine.config import load_settings
        from ai_engine.lifecycle.retrain import retrain

        settings = load_settings(env_arg(env_file))
        plan = settings.retrain
        data = data or plan.data_dir
        if data is None:
            raise ConfigError("retrain needs candles: give --data DIR (or set AI_ENGINE_RETRAIN_DATA_DIR or "
                              "AI_ENGINE_DATA_DIR)")
        res = retrain(settings, model.value, data_dir=data,
                      symbols=tuple(symbols.split(",")) if symbols else settings.symbols,
                      interval=interval or settings.interval,
                      window_days=plan.window_days if window_days is None else window_days,
                      tag=tag, sample=sample, epochs=epochs, seed=seed, threads=threads)
    typer.echo(render(res.report))
    sv = res.staged
    console.print(f"staged {sv.model} {sv.version} → {sv.path} (sha256 {sv.sha256})")
    from ai_engine.cli.models_commands import _report_edit

    _report_edit(res.edit)
    console.print(f"{res.key} runs in shadow; it votes only through `ai-engine models activate` or the policy")


def register(app: typer.Typer) -> None:
    """Add `retrain` to the top-level app."""
    app.command("retrain", no_args_is_help=True)(start_retrain)
