"""`ai-engine train` and `ai-engine models report`. Heavy libraries are imported inside the
commands so `ai-engine --help` stays fast."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ai_engine.exceptions import (
    AIEngineError,
    ConfigError,
    DataError,
    DegenerateModelError,
    ModelLoadError,
)

__all__ = ["register", "register_models_report", "start_train", "start_models_report"]

# 2: a human must fix input or configuration; 4: the degeneracy guard refused the model; 5: unusable artifact.
_EXIT = ((DegenerateModelError, 4), (ConfigError, 2), (DataError, 2), (ModelLoadError, 5))


class ModelChoice(StrEnum):
    xgb = "xgb"
    lgbm = "lgbm"
    nhits = "nhits"
    patchtst = "patchtst"


class BandMode(StrEnum):
    vol = "vol"
    fixed = "fixed"


class Balance(StrEnum):
    weights = "weights"
    sampler = "sampler"
    none = "none"


def _fail(exc: AIEngineError) -> typer.Exit:
    code = next((c for t, c in _EXIT if isinstance(exc, t)), 1)
    note = " (exit 4: degenerate model refused; nothing saved)" if code == 4 else ""
    typer.echo(f"error: {exc}{note}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def training_errors() -> Iterator[None]:
    """A training that failed as the CLI reports it: a refused model's report first (what the guard
    saw), then one ``error:`` line and the exit code of its kind."""
    try:
        yield
    except DegenerateModelError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            from ai_engine.training import render

            typer.echo(render(report))
        raise _fail(exc) from None
    except AIEngineError as exc:
        raise _fail(exc) from None


def start_train(
    model: Annotated[ModelChoice, typer.Argument(help="model to train")],
    symbols: Annotated[str, typer.Option("--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")],
    out: Annotated[Path, typer.Option("--out", help="artifact file (or existing directory: <version><ext> inside)")],
    data: Annotated[Path | None, typer.Option("--data", help="directory of <SYMBOL>-<interval>.csv candles")] = None,
    interval: Annotated[str, typer.Option("--interval", help="candle interval")] = "1h",
    horizon: Annotated[int, typer.Option("--horizon", help="label horizon in bars")] = 4,
    band_mode: Annotated[BandMode, typer.Option("--band-mode", help="vol: max(fee band, k·σ); fixed: ±band")] = BandMode.vol,
    band: Annotated[float | None, typer.Option("--band", help="fixed band half-width (log return) for --band-mode fixed")] = None,
    vol_k: Annotated[float, typer.Option("--vol-k", help="volatility multiple k of the vol band")] = 0.2,
    fee_band: Annotated[float, typer.Option("--fee-band", help="minimum band (log return) covering fees")] = 0.002,
    vol_window: Annotated[int, typer.Option("--vol-window", help="bars in the rolling volatility")] = 168,
    epochs: Annotated[int | None, typer.Option("--epochs", help="epochs (nhits/patchtst) or max boosting rounds (trees)")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="window length for nhits/patchtst (default 64)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    balance: Annotated[Balance, typer.Option("--balance", help="class balancing")] = Balance.weights,
    force: Annotated[bool, typer.Option("--force", help="save even if the degeneracy guard objects")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out file")] = False,
    max_action_share: Annotated[float, typer.Option("--max-action-share", help="guard: max share of one action")] = 0.95,
    min_conf_std: Annotated[float, typer.Option("--min-conf-std", help="guard: min std of the confidence")] = 0.02,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="train on a generated market (no --data)")] = False,
    synthetic_bars: Annotated[int, typer.Option("--synthetic-bars", help="bars per symbol with --synthetic")] = 4000,
    start: Annotated[str | None, typer.Option("--start", help="first date (UTC, YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="end date, exclusive (UTC, YYYY-MM-DD)")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", help="use only the last N bars per symbol")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: the trees use every core, the nets as many as are free at the start)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Train one model, print its report, and save the artifact with its .meta.json sidecar."""
    with training_errors():
        from ai_engine.training import GuardConfig, LabelConfig, TrainOptions, render, train_model

        if band_mode is BandMode.fixed:
            if band is None:
                raise ConfigError("--band-mode fixed needs --band (e.g. --band 0.004)")
            labels = LabelConfig(horizon=horizon, fee_band=band, k=0.0, vol_window=vol_window, mode="fixed")
        else:
            if band is not None:
                raise ConfigError("--band applies to --band-mode fixed; use --fee-band/--vol-k with the vol band")
            labels = LabelConfig(horizon=horizon, fee_band=fee_band, k=vol_k, vol_window=vol_window, mode="vol")
        if synthetic and data is not None:
            raise ConfigError("give either --data or --synthetic, not both")
        if out.exists() and not out.is_dir() and not overwrite:  # it may be the model in use
            raise ConfigError(f"--out {out} exists; pass --overwrite to replace it (nothing was trained)")
        agent_params = {"seq_len": seq_len} if seq_len is not None else None
        if seq_len is not None and model.value not in ("nhits", "patchtst"):
            raise ConfigError(f"--seq-len applies to nhits/patchtst, not {model.value}")
        agent, report = train_model(
            model.value,
            symbols=symbols.split(","),
            out_path=out,
            data_dir=data,
            synthetic=synthetic,
            interval=interval,
            label_config=labels,
            epochs=epochs,
            seed=seed,
            balance=balance.value,
            force=force,
            guard=GuardConfig(max_action_share=max_action_share, min_conf_std=min_conf_std),
            options=TrainOptions(start=start, end=end, max_rows=max_rows, synthetic_bars=synthetic_bars),
            threads=threads,
            agent_params=agent_params,
            verbose=not quiet and sys.stderr.isatty(),
        )
    typer.echo(render(report))
    typer.echo(f"saved {agent.version} sha256={agent.sha256}")


def start_models_report(
    file: Annotated[Path, typer.Argument(help="model artifact (.ubj, .txt, .pth) or its .meta.json")],
    as_json: Annotated[bool, typer.Option("--json", help="print the stored report as JSON")] = False,
) -> None:
    """Print the training report stored with an artifact (sidecar, or embedded in a .pth)."""
    try:
        report_dict = _stored_report(file)
        from ai_engine.training import TrainingReport, render

        if as_json:
            typer.echo(json.dumps(report_dict, indent=2))
            return
        try:
            report = TrainingReport.from_dict(report_dict)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{file}: stored report is malformed ({exc})") from None
        typer.echo(render(report))
    except AIEngineError as exc:
        raise _fail(exc) from None


def _stored_report(file: Path) -> dict:
    from ai_engine.agents.artifacts import meta_path_for, read_meta, safe_torch_load

    if file.name.endswith(".meta.json"):
        file = Path(str(file)[: -len(".meta.json")])
    meta_file = meta_path_for(file)
    if not file.is_file() and not meta_file.is_file():
        raise ModelLoadError(f"model file missing: {file}")
    meta = read_meta(file, required=False)
    if meta is None:
        if file.suffix != ".pth":
            raise ModelLoadError(f"{file}: no sidecar {meta_file.name}; only .pth files embed their report")
        meta = safe_torch_load(file, file)
    report = meta.get("report")
    if not isinstance(report, dict):
        raise ModelLoadError(f"{file}: artifact holds no training report (trained outside `ai-engine train`?)")
    return report


def register(app: typer.Typer) -> None:
    """Add `train` to the top-level app."""
    app.command("train", no_args_is_help=True)(start_train)


def register_models_report(models_app: typer.Typer) -> None:
    """Add `report FILE` to the `models` sub-app."""
    models_app.command("report", no_args_is_help=True)(start_models_report)
