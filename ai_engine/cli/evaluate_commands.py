"""``ai-engine evaluate``: walk-forward evaluation of one model or of the ensemble (``ai_engine.evaluation``).

Exit codes: 0 the evaluation ran (whatever the figures say: it judges nothing), 2 a human must fix
input, options or a path, 1 any other failure. Output paths are checked before the (long) training.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "start_evaluate"]


class EvaluateChoice(StrEnum):
    xgb = "xgb"
    lgbm = "lgbm"
    nhits = "nhits"
    patchtst = "patchtst"
    ensemble = "ensemble"


class WindowChoice(StrEnum):
    rolling = "rolling"
    expanding = "expanding"


def _check_output(path: Path, what: str, *, create: bool) -> None:
    """Refuse, before hours of training, an output path that cannot be written: ``path`` is the
    directory to write in; ``create`` allows it to be made (under a writable existing parent)."""
    from ai_engine.exceptions import ConfigError

    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{what}: {path} is not a directory")
        probe = path
    elif create:
        probe = next((p for p in path.parents if p.exists()), Path("."))
        if not probe.is_dir():
            raise ConfigError(f"{what}: {probe} is not a directory")
    else:
        raise ConfigError(f"{what}: directory {path} does not exist")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: {probe} is not writable")


def start_evaluate(
    model: Annotated[EvaluateChoice, typer.Argument(help="model to evaluate, or 'ensemble' (the four, the engine's rule)")],
    symbols: Annotated[str, typer.Option("--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")],
    data: Annotated[Path | None, typer.Option("--data", help="directory of <SYMBOL>-<interval>.csv candles")] = None,
    interval: Annotated[str, typer.Option("--interval", help="candle interval")] = "1h",
    folds: Annotated[int, typer.Option("--folds", help="test blocks (folds), >= 2")] = 5,
    window: Annotated[WindowChoice, typer.Option("--window", help="rolling: fixed-length window before each test "
                                                 "block; expanding: from the start")] = WindowChoice.rolling,
    train_blocks: Annotated[int, typer.Option("--train-blocks", help="blocks in a rolling window (train + "
                                              "calibration); the span is cut into train-blocks + folds blocks")] = 3,
    cal_frac: Annotated[float, typer.Option("--cal-frac", help="share of a rolling window that calibrates, "
                                            "just before the test block")] = 0.2,
    horizon: Annotated[int | None, typer.Option("--horizon", help="label horizon in bars (purge gap and holding "
                                                "period); default the training default")] = None,
    fee_bps: Annotated[float, typer.Option("--fee-bps", help="money view: fee per side, bps (10 = Binance spot taker)")] = 10.0,
    slippage_bps: Annotated[float, typer.Option("--slippage-bps", help="money view: slippage per side, bps")] = 0.0,
    long_only: Annotated[bool, typer.Option("--long-only", help="money view: SELL closes a long, never shorts")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="epochs (nhits/patchtst) or max boosting rounds (trees)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    start: Annotated[str | None, typer.Option("--start", help="first date (UTC, YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option("--end", help="end date, exclusive (UTC, YYYY-MM-DD)")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="evaluate on a generated market (no --data)")] = False,
    synthetic_bars: Annotated[int, typer.Option("--synthetic-bars", help="bars per symbol with --synthetic")] = 4000,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads and tree jobs (default: all cores)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print every figure as JSON instead of tables")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report (tables and "
                                                   "plots) here")] = None,
    plot_dir: Annotated[Path | None, typer.Option("--plot-dir", help="write one PNG per metric across folds here")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress lines on stderr")] = False,
) -> None:
    """Walk-forward: per fold, train on the window, calibrate on its last part, test on the next block
    (purged as training is); report per fold, mean ± spread and pooled: balanced accuracy, log-loss and
    Brier skill against the prior, ECE, action shares, confidence spread and the money view after fees
    against buy-and-hold."""
    from ai_engine.exceptions import AIEngineError, ConfigError, DataError

    try:
        from ai_engine.evaluation import WalkForwardConfig, load_series, run_walkforward
        from ai_engine.evaluation.render import render_text, write_html, write_plots
        from ai_engine.training import LabelConfig

        if synthetic and data is not None:
            raise ConfigError("give either --data or --synthetic, not both")
        if html_file is not None and plot_dir is not None:
            raise ConfigError("give either --html or --plot-dir, not both")
        if html_file is not None:
            if html_file.is_dir():
                raise ConfigError(f"--html {html_file} is a directory; give a file name")
            _check_output(html_file.parent, "--html", create=False)
        if plot_dir is not None:
            _check_output(plot_dir, "--plot-dir", create=True)
        names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
        if not names:
            raise ConfigError("no symbols given; pass e.g. --symbols BTCUSDT,ETHUSDT")
        if len(set(names)) != len(names):
            raise ConfigError(f"--symbols names a symbol twice: {symbols}")
        labels = LabelConfig() if horizon is None else LabelConfig(horizon=horizon)
        cfg = WalkForwardConfig(model=model.value, folds=folds, window=window.value, train_blocks=train_blocks,
                                cal_frac=cal_frac, label_config=labels, fee_bps=fee_bps,
                                slippage_bps=slippage_bps, long_only=long_only, seed=seed, epochs=epochs,
                                threads=threads).validate()
        series = load_series(data, names, interval, synthetic=synthetic, synthetic_bars=synthetic_bars, seed=seed,
                             start=start, end=end)
        say = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        result = run_walkforward(series, cfg, progress=say)
        if html_file is not None:
            write_html(result, html_file)
        written = write_plots(result, plot_dir) if plot_dir is not None else []
    except AIEngineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if isinstance(exc, ConfigError | DataError) else 1) from None
    except OSError as exc:
        from ai_engine.cli.main import os_error_line

        typer.echo(os_error_line(exc), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_text(result), nl=False)
    if html_file is not None:
        typer.echo(f"HTML report written to {html_file}", err=True)
    if written:
        typer.echo(f"{len(written)} plots written to {plot_dir}", err=True)


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the top-level app."""
    app.command("evaluate", no_args_is_help=True)(start_evaluate)
