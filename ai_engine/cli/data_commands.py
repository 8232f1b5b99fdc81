"""`data fetch`: download Binance klines into the local candle cache the engine reads."""

from __future__ import annotations

from pathlib import Path

import typer

from ai_engine.cli.options import make_console

console = make_console()

OutDir = typer.Option(Path("data/candles"), "--out", help="cache directory (<SYMBOL>-<interval>.csv)")

data_app = typer.Typer(help="Market data: download Binance klines into the local CSV cache.", no_args_is_help=True)


@data_app.command("fetch")
def fetch(
    symbol: str = typer.Option(..., "--symbol", help="symbol(s), comma-separated, e.g. BTCUSDT,ETHUSDT"),
    interval: str = typer.Option("1h", "--interval", help="kline interval, e.g. 1h"),
    days: float = typer.Option(90.0, "--days", help="how many days back from now"),
    out: Path = OutDir,
    base_url: str = typer.Option("https://api.binance.com", "--base-url", help="Binance REST base URL"),
) -> None:
    """Fetch closed klines (GET /api/v3/klines, paged, rate-limit aware) and merge them into the cache."""
    from ai_engine.data.validate import iso_utc
    from ai_engine.market.binance_rest import update_cache

    symbols = [s.strip().upper() for s in symbol.split(",") if s.strip()]
    if not symbols:
        raise typer.BadParameter("give at least one symbol, e.g. BTCUSDT", param_hint="--symbol")
    for sym in symbols:
        res = update_cache(out, sym, interval, days, base_url=base_url)
        span = f"{iso_utc(res.first_open_time)} → {iso_utc(res.last_open_time)}" if res.total else "empty"
        console.print(f"{sym} {interval}: fetched {res.fetched}, added {res.added}, total {res.total} ({span}) → {res.path}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the CLI."""
    app.add_typer(data_app, name="data")
