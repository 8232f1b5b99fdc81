"""`ai-engine policy status|pause|resume|abort`: the operator's hold on the promotion policy
(``lifecycle/policy.py``), and `policy run`, the process ``serve`` starts for it."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time

import typer

from ai_engine.cli.options import AvoidCpu, ChildOf, EnvFile, env_arg, make_console

__all__ = ["register"]

console = make_console()
policy_app = typer.Typer(help="The promotion policy: status, pause, resume, abort.", no_args_is_help=True)


def _settings(env_file: str):
    from ai_engine.config import load_settings

    return load_settings(env_arg(env_file))


@policy_app.command("status")
def status(env_file: str = EnvFile, as_json: bool = typer.Option(False, "--json")) -> None:
    """Where the policy's run stands: model, artifact, stage, paused, what it last said."""
    from dataclasses import asdict

    from ai_engine.lifecycle.policy import read_state

    settings = _settings(env_file)
    state = read_state(settings.home)
    pol = settings.policy
    mode = "off" if pol is None else "dry-run" if pol.dry_run else "on"
    if as_json:
        console.print_json(json.dumps({"mode": mode, "state": asdict(state) if state else None}))
        return
    console.print(f"policy: {mode}" + (f" for {pol.model}" if pol else ""))
    if state is None:
        console.print("run: none yet (one starts when the policy's model runs in shadow)")
        return
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.stage_since_ms / 1000))
    console.print(f"run: {state.model} {state.sha256[:16]}… stage {state.stage} since {since}"
                  + (" (PAUSED: promotions wait for `policy resume`)" if state.paused else ""))
    console.print(f"last: {state.said or '-'}")


def _control(what: str, env_file: str) -> None:
    from ai_engine.lifecycle.policy import control

    state = control(_settings(env_file), what)
    console.print(f"policy {what}: {state.model} {state.sha256[:16]}… stage {state.stage}"
                  + (", paused" if state.paused else ""))


@policy_app.command("pause")
def pause(env_file: str = EnvFile) -> None:
    """Stop promoting (the FAIL criteria are still watched and roll back); audited."""
    _control("pause", env_file)


@policy_app.command("resume")
def resume(env_file: str = EnvFile) -> None:
    """Promote again when the evidence says so; audited."""
    _control("resume", env_file)


@policy_app.command("abort")
def abort(env_file: str = EnvFile) -> None:
    """End the run: nothing more is promoted or rolled back by the policy; the configuration stays
    as it is (`models rollback` undoes it). A new version in shadow starts a new run."""
    _control("abort", env_file)


@policy_app.command("run", hidden=True)
def run(
    env_file: str = EnvFile,
    child_of: int | None = ChildOf,
    avoid_cpu: int | None = AvoidCpu,
) -> None:
    """The policy's loop (``serve`` starts it in a process of its own while AI_ENGINE_POLICY is on)."""
    from ai_engine.child_process import become_child_of
    from ai_engine.lifecycle.policy import run_policy
    from ai_engine.runtime import setup_logging

    settings = _settings(env_file)
    setup_logging(settings.log_level)
    logging.getLogger("ai_engine.policy").info("policy process for %s started", settings.env_file)
    if child_of is not None:
        become_child_of(child_of, avoid_cpu)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    run_policy(settings.env_file, stop)


def register(app: typer.Typer) -> None:
    """Add the ``policy`` command group to the main CLI."""
    app.add_typer(policy_app, name="policy")
