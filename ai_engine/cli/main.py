"""`ai-engine` entry point: one Typer app; each area registers its commands from its own module."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import typer

from ai_engine.exceptions import (
    AIEngineError,
    ConfigError,
    DataError,
    DegenerateModelError,
    ModelLoadError,
)

app = typer.Typer(
    name="ai-engine",
    help="Quantum AI engine: four-model ensemble with safe shadow deployment of retrained models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="Model registry and lifecycle: stage, shadow, activate, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _register() -> None:
    from ai_engine.cli import (
        analyze_commands,
        backtest_commands,
        dashboard_commands,
        data_commands,
        demo_commands,
        engine_commands,
        evaluate_commands,
        init_commands,
        models_commands,
        policy_commands,
        retrain_commands,
        service_commands,
        train_commands,
    )

    app.command("replay")(engine_commands.replay)
    app.add_typer(engine_commands.governor_app, name="governor")
    app.command("demo")(demo_commands.demo)
    init_commands.register(app)
    train_commands.register(app)
    train_commands.register_models_report(models_app)
    models_commands.register_models(models_app)
    service_commands.register(app)
    analyze_commands.register(app)
    data_commands.register(app)
    evaluate_commands.register(app)
    backtest_commands.register(app)
    retrain_commands.register(app)
    dashboard_commands.register(app)
    policy_commands.register(app)


_register()

# Exit codes: 2 = a human must fix input, configuration or a path; 4 = a model was refused.
_EXIT = {ConfigError: 2, DataError: 2, DegenerateModelError: 4, ModelLoadError: 5}


def os_error_line(exc: OSError) -> str:
    """``error: PATH: reason``: the path the OS refused and why, without the errno noise."""
    where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"error: {where}: {exc.strerror}" if where and exc.strerror else f"error: {exc}"


def main(argv: list[str] | None = None, cli: typer.Typer = app, prog_name: str | None = None) -> int:
    """Run the CLI; known errors become one clear line on stderr and an exit code, never a traceback."""
    try:
        rc = cli(args=argv, prog_name=prog_name, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except AIEngineError as exc:
        code = next((c for t, c in _EXIT.items() if isinstance(exc, t)), 1)
        logging.getLogger("ai_engine").debug("error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return code
    except BrokenPipeError:  # the reader went away (`| head`): no error to report, as if killed by SIGPIPE
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except OSError as exc:  # a path that is missing, read-only, a directory, …: a human must fix it
        logging.getLogger("ai_engine").debug("error", exc_info=True)
        print(os_error_line(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # click usage errors (typer bundles click) carry their own message and code
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
