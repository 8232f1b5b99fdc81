"""`serve`, `status` and `verify-shadow`: the running service and what it reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from ai_engine.cli.options import DataDir, EnvFile, MaxBadRows, env_arg, make_console

console = make_console()
LogFile = typer.Option(None, "--log", help="service log file to check")


def serve(
    env_file: str = EnvFile,
    source: str = typer.Option("file", "--source", help="file (paced CSV replay), redis (klines stream) or binance"),
    data: Path = DataDir,
    pace: float = typer.Option(1.0, "--pace", help="seconds between candle batches of the file source"),
    history: int = typer.Option(500, "--history", help="bars that prime the features when the store is empty"),
    exit_at_end: bool = typer.Option(False, "--exit-at-end", help="stop when the file source is exhausted"),
    ws_url: str = typer.Option("wss://stream.binance.com:9443", "--ws-url", help="Binance websocket base (binance source)"),
    rest_url: str = typer.Option("https://api.binance.com", "--rest-url", help="Binance REST base (binance source)"),
    group: str = typer.Option(None, "--group", help="Redis consumer group (redis source; default one per shard)"),
    max_bad_rows: int = MaxBadRows,
) -> None:
    """Run the engine in the foreground (systemd Type=notify): SIGHUP reloads, SIGTERM stops gracefully."""
    from ai_engine.config import load_settings
    from ai_engine.runtime import setup_logging
    from ai_engine.service import ServeOptions, Service

    settings = load_settings(env_arg(env_file))
    setup_logging(settings.log_level)
    opts = ServeOptions(source=source, data_dir=data, pace=pace, history=history, exit_at_end=exit_at_end,
                        ws_url=ws_url, rest_url=rest_url, group=group, max_bad_rows=max_bad_rows)
    raise typer.Exit(Service(settings, opts).run())


def _fmt_ms(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "-"


def _offline_status(settings) -> dict:
    """What is configured (env file) and what the store last recorded, when the service is down."""
    from ai_engine.governor import Governor
    from ai_engine.runtime import governor_backend
    from ai_engine.telemetry.sqlite import TelemetryStore

    out: dict = {"state": "not running", "roles": {m: c.role.value for m, c in settings.all_models().items()},
                 "weights": {m: c.weight for m, c in settings.all_models().items()}, "versions": {}, "config_id": None, "last_decision_at": None,
                 "decisions_made": None}
    if settings.store_path.is_file():
        store = TelemetryStore(settings.store_path, readonly=True)
        db = store.connection
        row = db.execute("SELECT config_id, payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()
        if row:
            out["config_id"] = f"{row[0]} (last applied)"
            out["versions"] = {m: c.get("version") for m, c in json.loads(row[1])["models"].items()}
        out["last_decision_at"] = db.execute("SELECT MAX(decided_at) FROM decisions").fetchone()[0]
        out["decisions_made"] = store.count("decisions")
        store.close()
    st, err = Governor(governor_backend(settings)).state()
    out["governor"] = st.to_json() | {"error": None} if st is not None else {"error": err}
    return out


def _check_store(path: Path) -> None:
    """A store path that is not a file (a directory, say) is a configuration error; none yet is fine."""
    from ai_engine.exceptions import ConfigError

    if path.exists() and not path.is_file():
        raise ConfigError(f"telemetry store {path} is not a file; point AI_ENGINE_STORE at the SQLite file")


def _missing_model_files(settings) -> dict[str, str]:
    """Configured artifacts that do not exist (disabled models excepted): the engine cannot load them."""
    from ai_engine.enums import ModelRole
    from ai_engine.model_slots import resolve_model_path

    paths = {m: resolve_model_path(settings, m)[0] for m, c in settings.all_models().items()
             if c.role is not ModelRole.DISABLED}
    return {m: str(p) for m, p in paths.items() if not p.is_file()}


def status(env_file: str = EnvFile, as_json: bool = typer.Option(False, "--json")) -> None:
    """What runs: roles, weights, versions, last decision, governor (live from /health when the service is up)."""
    from ai_engine.config import load_settings
    from ai_engine.health import fetch_health
    from ai_engine.lifecycle.reload_signal import read_pid

    settings = load_settings(env_arg(env_file))
    _check_store(settings.store_path)
    snap = fetch_health(settings.health_port)
    source = "health endpoint"
    if snap is None:
        snap = _offline_status(settings)
        pid = read_pid(settings.home)
        source = "env file + store" + (f" (serve pid {pid} up, health endpoint off)" if pid else "")
        if pid:
            snap["state"] = f"running (pid {pid})"
    snap["status_source"] = source
    snap["store_path"] = str(settings.store_path) if settings.store_path.is_file() else None
    snap["missing_model_files"] = _missing_model_files(settings)
    if as_json:
        console.print_json(json.dumps(snap, default=str))
        return
    console.print(f"state: [bold]{snap['state']}[/bold]  (from {source})")
    console.print(f"config_id: {snap.get('config_id') or '-'}  last decision: {_fmt_ms(snap.get('last_decision_at'))}"
                  f"  decisions: {snap.get('decisions_made') if snap.get('decisions_made') is not None else '-'}")
    t = Table()
    for col in ("model", "role", "weight", "version"):
        t.add_column(col)
    for m, role in snap["roles"].items():
        t.add_row(m, role, f"{snap['weights'][m]:g}", str(snap.get("versions", {}).get(m) or "-"))
    console.print(t)
    for m, p in snap["missing_model_files"].items():
        console.print(f"[red]{m}: model file MISSING[/red] {p}")
    for m, f in (snap.get("flatlined") or {}).items():
        console.print(f"[yellow]{m}: output FLAT-LINED[/yellow] (confidence std {f['std']:g} over its last "
                      f"{f['window']} outputs, below {f['min_std']:g})")
    if snap["store_path"] is None:
        console.print(f"store: no store yet at {settings.store_path} (nothing recorded)")
    store = snap.get("store") or {}
    if store.get("status", "ok") != "ok":
        console.print(f"store: [red]{store['status'].upper()}[/red] {store['pending_rows']} rows waiting (bound "
                      f"{store['max_pending_rows']}), {store['unkept_decisions']} decisions not kept: "
                      f"{store.get('reason') or store.get('error')}")
    shards = snap.get("shards") or {}
    if shards.get("mode") == "lease":
        console.print(f"shards: lease, instance {shards['instance']} owns {','.join(shards['owned']) or 'nothing'}; "
                      + "; ".join(f"{m}: {','.join(s) or '-'}" for m, s in shards["assignment"].items()))
    elif shards.get("mode") == "static":
        console.print(f"shards: static {shards['shard']}, owns {','.join(shards['owned'])}")
    gov = snap.get("governor") or {}
    if gov.get("error"):
        console.print(f"governor: [red]BLOCKING[/red] {gov['error']}")
    else:
        console.print(f"governor: kill={gov.get('kill')} mode={gov.get('mode')}")


def verify_shadow(
    env_file: str = EnvFile,
    model: str = typer.Option("patchtst", "--model", help="the shadow to verify: a model, or an extra shadow's key"),
    since: str = typer.Option("10m", "--since", help="window, e.g. 10m, 2h, 1d"),
    log: Path = LogFile,
    journal: bool = typer.Option(False, "--journal", help="read journalctl -u quantum-ai-engine.service"),
) -> None:
    """Automated verification of a shadow deployment: PASS/FAIL per criterion; exit 1 on any FAIL."""
    from ai_engine.config import load_settings
    from ai_engine.lifecycle.verification import parse_since, read_log_lines
    from ai_engine.lifecycle.verification import verify_shadow as run

    settings = load_settings(env_arg(env_file))
    since_s = parse_since(since)
    source = "journalctl -u quantum-ai-engine.service" if journal else f"log file {log}"
    results = run(settings, model, since_s, read_log_lines(since_s, log, journal), log_source=source)
    colour = {"PASS": "green", "FAIL": "red", "SKIP": "yellow", "INFO": "cyan"}
    for c in results:
        console.print(f"[{colour[c.status]}]{c.status:4}[/{colour[c.status]}] {c.name}: {c.detail}")
    failed = [c for c in results if c.status == "FAIL"]
    console.print(f"{'FAIL' if failed else 'PASS'}: {len(failed)} of {len(results)} criteria failed")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    """Add `serve`, `status` and `verify-shadow` to the top-level app."""
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("verify-shadow")(verify_shadow)
