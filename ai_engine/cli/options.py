"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

EnvFile = typer.Option(
    "auto", "--env-file", help="env file (systemd EnvironmentFile format); default /etc/quantum/ai-engine.env when present"
)
Symbols = typer.Option(None, "--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
Interval = typer.Option(None, "--interval", help="candle interval, e.g. 1h")
DataDir = typer.Option(None, "--data", help="directory of Binance kline CSVs (<SYMBOL>-<interval>.csv)")
Store = typer.Option(None, "--store", help="SQLite telemetry store (overrides AI_ENGINE_STORE)")
ChildOf = typer.Option(None, "--child-of", hidden=True, help="serve's pid: run as its child (child_process)")
AvoidCpu = typer.Option(None, "--avoid-cpu", hidden=True, help="serve's decision CPU: run elsewhere")
MaxBadRows = typer.Option(None, "--max-bad-rows", min=0, help="fail when a candle file has more quarantined (malformed) "
                          "rows than this; default no limit (each file's totals are logged)")


def make_console():
    """The console commands print with. Not a terminal (piped, redirected, captured): no wrapping
    and no width limit, where rich would wrap at 80 columns, splitting the suggested commands
    (copy-paste breaks) and cutting versions and sha256 in tables."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)


def env_arg(env_file: str | None) -> Path | str | None:
    """'auto' keeps the default lookup, '' or 'none' means no env file."""
    if env_file in (None, "auto"):
        return "auto"
    if env_file.lower() in ("", "none"):
        return None
    return Path(env_file)
