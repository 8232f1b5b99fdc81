"""`data fetch`: download Binance klines into the local candle cache the engine reads."""

from __future__ import annotations

from pathlib import Path

import typer

from ai_engine.cli.options import DataDir, MaxBadRows, make_console

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


@data_app.command("check")
def check(
    data: Path = DataDir,
    symbols: str = typer.Option(None, "--symbols", help="comma-separated symbols (default: every <SYMBOL>-<interval>.csv)"),
    interval: str = typer.Option("1h", "--interval"),
    max_bad_rows: int = MaxBadRows,
) -> None:
    """Validate candle files: per symbol rows read, kept, quarantined by reason, gaps; exit 2 when a
    file has more quarantined rows than --max-bad-rows (the rows themselves are logged by line)."""
    from ai_engine.data import load_dir
    from ai_engine.data.validate import ValidationReport
    from ai_engine.exceptions import ConfigError, DataError

    if data is None:
        raise ConfigError("give --data DIR (a directory of <SYMBOL>-<interval>.csv)")
    syms = ([s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else
            sorted(p.name.removesuffix(f"-{interval}.csv") for p in Path(data).glob(f"*-{interval}.csv")))
    if not syms:
        raise DataError(f"no {interval} candle files (<SYMBOL>-{interval}.csv) in {data}")
    reports: dict[str, ValidationReport] = {}
    load_dir(data, syms, interval, reports=reports)
    print(f"{'symbol':<12} {'read':>8} {'kept':>8} {'quarantined':>11} {'gaps':>5} {'missing':>8}  reasons")
    for sym, r in reports.items():
        why = ", ".join(f"{k} {n}" for k, n in sorted(r.quarantined.items())) or "-"
        print(f"{sym:<12} {r.rows_read:>8,} {r.rows_kept:>8,} {r.n_quarantined:>11,} {len(r.gaps):>5,} "
              f"{r.missing_bars:>8,}  {why}")
    total = sum(r.n_quarantined for r in reports.values())
    print(f"{'total':<12} {sum(r.rows_read for r in reports.values()):>8,} "
          f"{sum(r.rows_kept for r in reports.values()):>8,} {total:>11,}")
    over = {s: r.n_quarantined for s, r in reports.items() if max_bad_rows is not None and r.n_quarantined > max_bad_rows}
    if over:
        raise DataError(f"more quarantined rows than --max-bad-rows {max_bad_rows}: "
                        + ", ".join(f"{s} {n}" for s, n in over.items()))


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the CLI."""
    app.add_typer(data_app, name="data")
