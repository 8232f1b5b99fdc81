"""``ai-engine backtest``: the decision path over history (as ``replay``), then the analysis with
its counterfactual activation, money view and paired comparison, in one command.

The backtest never touches the running engine: it decides into a store of its own (temporary
unless ``--store`` names a new file), with a governor of its own that lets decisions through and
no bus. The models, roles, weights and ensemble rule come from the env file, as the service reads
them.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ai_engine.cli.options import DataDir, EnvFile, Interval, Symbols

__all__ = ["backtest", "register"]


def backtest(
    data: Path = DataDir,
    symbols: str = Symbols,
    interval: str = Interval,
    env_file: str = EnvFile,
    model: Annotated[str | None, typer.Option("--model", help="challenger; default the first shadow model of the "
                                              "configuration, else patchtst")] = None,
    start: Annotated[str | None, typer.Option("--start", help="decide from this date on (UTC, YYYY-MM-DD); earlier "
                                              "candles only warm the features up")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="keep the backtest's decisions in this new SQLite "
                                               "file (default: a temporary one)")] = None,
    fee_bps: Annotated[float, typer.Option("--fee-bps", help="fee per side in basis points")] = 10.0,
    slippage_bps: Annotated[float, typer.Option("--slippage-bps", help="slippage per side in basis points")] = 0.0,
    hold: Annotated[int | None, typer.Option("--hold", help="bars a position is held; default the label horizon")] = None,
    long_only: Annotated[bool, typer.Option("--long-only", help="SELL closes a long, never shorts")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as JSON")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="also write the HTML report here")] = None,
) -> None:
    """Backtest the configured ensemble and its shadow challenger on history: decisions, money after
    costs, counterfactual activation, paired comparison with the champion."""
    from ai_engine.analysis import analyze, render_text, to_json, write_html
    from ai_engine.cli.engine_commands import _settings
    from ai_engine.data import load_dir
    from ai_engine.enums import GovernorMode, ModelRole
    from ai_engine.exceptions import ConfigError
    from ai_engine.governor import FileGovernorBackend, GovernorState
    from ai_engine.money import Execution
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine, setup_logging
    from ai_engine.training.trainer import parse_date

    if data is None:
        raise typer.BadParameter("give --data DIR", param_hint="--data")
    if store is not None and store.exists():
        raise ConfigError(f"--store {store} exists; give a new file (a backtest never mixes its decisions with others)")
    try:
        execution = Execution(fee_bps=fee_bps, slippage_bps=slippage_bps, long_only=long_only, hold_bars=hold or 1)
    except ValueError as exc:
        raise ConfigError(f"money view: {exc}") from None
    start_ms = parse_date(start, "--start")
    settings = _settings(env_file, symbols, interval)
    challenger = model or next((m for m, c in settings.models.items() if c.role is ModelRole.SHADOW), "patchtst")
    if challenger not in settings.all_models():
        raise ConfigError(f"--model {challenger!r}: no such model; expected one of {', '.join(settings.all_models())}")
    with tempfile.TemporaryDirectory(prefix="ai-engine-backtest-") as tmp:
        home = Path(tmp)
        bt = dataclasses.replace(settings, store_path=store or home / "backtest.sqlite", governor_backend="file",
                                 governor_state_file=home / "governor.json", redis_url="", health_port=0)
        FileGovernorBackend(bt.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "backtest"))
        setup_logging(settings.log_level)
        import logging

        logging.getLogger("ai_engine.intent").setLevel(logging.WARNING)
        series = load_dir(data, list(settings.my_symbols()), settings.interval)
        engine = open_engine(bt, wait_for_shadow=True)
        try:
            summary = replay_series(engine, series, start_ms=start_ms)
        finally:
            engine.close()
        if summary.decisions == 0:
            raise ConfigError("nothing to backtest: no decidable candle (too little history, or --start after the data)")
        result = analyze(bt.store_path, 24 * 365 * 1000.0, model=challenger, execution=execution, hold=hold)
        if html_file is not None:
            write_html(result, html_file)
    if as_json:
        typer.echo(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_text(result), nl=False)
        if store is not None:
            typer.echo(f"Backtest decisions kept in {store} (ai-engine analyze --store {store} --hours …)")
    if html_file is not None:
        typer.echo(f"HTML report written to {html_file}", err=True)


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
