"""`ai-engine dashboard`: the operator dashboard over a telemetry store, without a running service."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import typer

from ai_engine.cli.options import AvoidCpu, ChildOf

__all__ = ["register", "start_dashboard"]

log = logging.getLogger("ai_engine.dashboard")


def start_dashboard(
    store: Path = typer.Option(..., "--store", help="SQLite telemetry store to show (opened read-only)"),
    env_file: Path | None = typer.Option(None, "--env-file", help="the engine's env file: configured roles and "
                                          "weights, the governor state file, the home holding audit.log"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; a non-loopback one needs DASHBOARD_TOKEN"),
    port: int = typer.Option(8780, "--port", min=0, max=65535, help="port to listen on; 0 picks a free one"),
    analysis_hours: float = typer.Option(24.0, "--analysis-hours", min=0.0, help="window of the shadow analysis "
                                         "(gates, edge) run in the background every 5 minutes; 0 = off"),
    child_of: int | None = ChildOf,
    avoid_cpu: int | None = AvoidCpu,
) -> None:
    """Serve the read-only dashboard (page and JSON endpoints) over a store, for a post-mortem or a replay."""
    from ai_engine.dashboard import (
        TOKEN_ENV,
        AnalysisJob,
        DashboardData,
        DashboardServer,
        check_bind,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if child_of is not None:
        from ai_engine.child_process import become_child_of

        become_child_of(child_of, avoid_cpu)
    token = os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)  # before anything is opened
    data = DashboardData(store, env_file)
    job = AnalysisJob(store, hours=analysis_hours) if analysis_hours > 0 else None
    try:
        server = DashboardServer(data, host=host, port=port, token=token, analysis=job)
    except BaseException:
        data.close()
        raise
    if job is not None:
        job.start()

    def stop(signum, frame) -> None:  # SIGTERM ends it like Ctrl-C, once
        # serve's own stop and its parent-death signal may both arrive: a second one landing in
        # the interpreter's shutdown would be a traceback in serve's log, not a cleaner stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"dashboard on {server.url}{' (token required)' if token else ''} — store {store}; Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if job is not None:
            job.close()
        server.close()
        data.close()


def register(app: typer.Typer) -> None:
    """Add the ``dashboard`` command to the main CLI."""
    app.command("dashboard")(start_dashboard)
