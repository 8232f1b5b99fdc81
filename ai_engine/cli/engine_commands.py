"""`replay`, `governor` and `status`: the decision path over history, and the kill switch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from ai_engine.cli.options import (
    DataDir,
    EnvFile,
    Interval,
    MaxBadRows,
    Store,
    Symbols,
    env_arg,
    make_console,
)

console = make_console()


def _settings(env_file: str, symbols: str | None = None, interval: str | None = None, store: Path | None = None):
    from ai_engine.config import load_settings

    overrides = {}
    if symbols:
        overrides["AI_ENGINE_SYMBOLS"] = symbols
    if interval:
        overrides["AI_ENGINE_INTERVAL"] = interval
    if store:
        overrides["AI_ENGINE_STORE"] = str(store)
    return load_settings(env_arg(env_file), overrides=overrides)


def print_summary(summary, store_path: Path, title: str = "Replay summary") -> None:
    label = " (SYNTHETIC market)" if summary.synthetic else ""
    console.print(f"[bold]{title}{label}[/bold]")
    fmt = lambda ms: time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) if ms else "-"  # noqa: E731
    console.print(f"decisions: {summary.decisions}  window: {fmt(summary.first_time)} → {fmt(summary.last_time)} UTC"
                  f"  (warm-up rows: {summary.warmup_rows}, already recorded: {summary.skipped_existing})")
    console.print(f"actionable: {summary.actionable}  published: {summary.published}  actions: {dict(summary.actions)}")
    cons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.consensus.items()))
    console.print(f"consensus_count distribution: {cons}")
    for reason, n in summary.blocked.most_common(5):
        console.print(f"blocked ({n}): {reason}")
    t = Table(title="Per model")
    for col in ("model", "role", "status", "BUY", "SELL", "HOLD"):
        t.add_column(col)
    for m, role in summary.model_roles.items():
        acts = summary.model_actions.get(m, {})
        tot = sum(acts.values()) or 1
        t.add_row(
            m + ("_shadow" if role == "shadow" else ""), role,
            ", ".join(f"{k}={v}" for k, v in summary.model_status[m].items()),
            *(f"{100 * acts.get(a, 0) / tot:.1f}%" for a in ("BUY", "SELL", "HOLD")),
        )
    console.print(t)
    console.print(f"telemetry: {store_path}")


def replay(
    data: Path = DataDir,
    symbols: str = Symbols,
    interval: str = Interval,
    env_file: str = EnvFile,
    store: Path = Store,
    jsonl: Path = typer.Option(None, "--jsonl", help="write one JSON object per decision"),
    resume: bool = typer.Option(False, "--resume", help="skip candles already decided in the store; append to --jsonl"),
    synthetic: bool = typer.Option(False, "--synthetic", help="replay a seeded synthetic market instead of --data"),
    bars: int = typer.Option(3000, "--bars", help="synthetic bars per symbol"),
    seed: int = typer.Option(0, "--seed"),
    max_bad_rows: int = MaxBadRows,
) -> None:
    """Run the decision path over history as fast as it can, recording every decision."""
    from rich.progress import Progress

    from ai_engine.data import load_dir, synthetic_market
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine, setup_logging

    settings = _settings(env_file, symbols, interval, store)
    setup_logging(settings.log_level)
    import logging

    logging.getLogger("ai_engine.intent").setLevel(logging.WARNING)  # one line per intent floods a replay
    if synthetic:
        series = synthetic_market(list(settings.my_symbols()), interval=settings.interval, n_bars=bars, seed=seed)
    else:
        if data is None:
            raise typer.BadParameter("give --data DIR (or --synthetic)", param_hint="--data")
        series = load_dir(data, list(settings.my_symbols()), settings.interval, max_bad_rows=max_bad_rows)
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("replay", total=None)
            summary = replay_series(engine, series, jsonl=jsonl, resume=resume,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        engine.close()
    print_summary(summary, settings.store_path)


governor_app = typer.Typer(help="Kill switch and execution mode (fails closed when unreadable).", no_args_is_help=True)


def _governor(env_file: str, settings=None):
    from ai_engine.governor import Governor
    from ai_engine.runtime import governor_backend

    return Governor(governor_backend(settings or _settings(env_file)))


@governor_app.command("status")
def governor_status(env_file: str = EnvFile, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the governor state; exit 1 when it blocks intents."""
    gov = _governor(env_file)
    st, err = gov.state()
    if as_json:
        console.print_json(json.dumps({"backend": gov.backend.describe(), "state": st.to_json() if st else None, "error": err}))
    elif st is None:
        console.print(f"[red]BLOCKING[/red]: {err}")
    else:
        from ai_engine.data.validate import iso_utc

        allowed = not st.kill and st.mode.value != "HALT"
        when = iso_utc(st.updated_at) if st.updated_at else "?"
        console.print(f"backend: {gov.backend.describe()}\nkill: {int(st.kill)}  mode: {st.mode.value}  "
                      f"set by {st.updated_by or '?'} at {when}  reason: {st.reason or '-'}\n"
                      + ("[green]intents allowed[/green]" if allowed else "[red]intents BLOCKED[/red]"))
    raise typer.Exit(0 if st is not None and not st.kill and st.mode.value != "HALT" else 1)


@governor_app.command("kill")
def governor_kill(env_file: str = EnvFile, reason: str = typer.Option("", "--reason")) -> None:
    """Engage the kill switch: actionable decisions are recorded as blocked and not published."""
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import GovernorState

    try:
        settings = _settings(env_file)
        gov = _governor(env_file, settings)
        st, _ = gov.state()
        gov.backend.write(GovernorState.new(True, st.mode if st else GovernorMode.HALT, reason))
    except Exception:  # the emergency stop failed: say so before the reason (main prints it, exits non-zero)
        typer.echo("error: kill switch NOT engaged; stop the engine another way "
                   "(systemctl stop quantum-ai-engine)", err=True)
        raise
    console.print(f"kill switch ON ({gov.backend.describe()})")
    _confirm_seen_by_service(settings.health_port, gov.backend.describe())


def _confirm_seen_by_service(port: int, ours: str) -> None:
    """When the service answers on /health, check that it reads the governor just written: after a
    refused reload it may still read another file or Redis, and would ignore this kill switch."""
    from ai_engine.health import fetch_health

    snap = fetch_health(port)
    if snap is None or "governor_backend" not in snap:
        return
    if snap["governor_backend"] != ours or (snap.get("governor") or {}).get("kill") is not True:
        typer.echo(f"error: the running service (pid {snap.get('pid')}) reads its governor from "
                   f"{snap['governor_backend']}, where the kill switch is NOT on; restart it to apply the env file, "
                   "or stop it (systemctl stop quantum-ai-engine)", err=True)
        raise typer.Exit(1)
    console.print(f"the running service (pid {snap.get('pid')}) sees it")


@governor_app.command("release")
def governor_release(
    env_file: str = EnvFile,
    mode: str = typer.Option("PAPER", "--mode", help="LIVE, PAPER or HALT"),
    reason: str = typer.Option("", "--reason"),
) -> None:
    """Release the kill switch and set the execution mode."""
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import GovernorState

    try:
        gm = GovernorMode(mode.upper())
    except ValueError:
        raise typer.BadParameter(f"{mode!r}: expected LIVE, PAPER or HALT", param_hint="--mode") from None
    gov = _governor(env_file)
    gov.backend.write(GovernorState.new(False, gm, reason))
    console.print(f"kill switch OFF, mode {gm.value} ({gov.backend.describe()})")
