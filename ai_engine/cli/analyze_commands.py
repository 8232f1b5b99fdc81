"""``ai-engine analyze``: the shadow-metrics report and its gates, as the spec's script prints them.

Exit codes: 0 ready for activation, 1 not ready, 3 inconclusive (too little data, or no
predictions of the model in the window), 2 usage, data or file-system errors (missing or empty
store, bad flags, a model name neither the engine nor the store knows). The window defaults to
24 hours, as the spec's gate commands run it. ``ops/analysis/analyze_shadow_metrics.py`` runs
the same command through ``main``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "start_analyze", "main"]


def start_analyze(
    hours: Annotated[float, typer.Option("--hours", help="length of the window in hours (market time); 24 is the "
                                         "spec's window for running all gates")] = 24.0,
    model: Annotated[str, typer.Option("--model", help="model to analyse (shadow or voter)")] = "patchtst",
    until: Annotated[str | None, typer.Option("--until", help="window end: ISO 8601 time or ms UTC; default newest decision")] = None,
    env_file: Annotated[str, typer.Option("--env-file", help="env file for the store path and Redis prefix ('auto': default lookup)")] = "auto",
    store: Annotated[Path | None, typer.Option("--store", help="SQLite telemetry store; default from settings")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON to stdout instead of text")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML report here")] = None,
    compare: Annotated[str | None, typer.Option("--compare", help="second model shown side by side, e.g. lgbm")] = None,
    horizon: Annotated[int | None, typer.Option("--horizon", help="outcome horizon in bars; default the model's label config")] = None,
    band: Annotated[float | None, typer.Option("--band", help="fixed no-trade band (log return); default the label config")] = None,
    max_action_share: Annotated[float, typer.Option("--max-action-share", help="gate 1: largest action share allowed")] = 0.70,
    min_stddev: Annotated[float, typer.Option("--min-stddev", help="gate 2: minimum confidence stddev")] = 0.05,
    min_agreement: Annotated[float, typer.Option("--min-agreement", help="gate 3: minimum agreement with the ensemble")] = 0.55,
    min_bucket_n: Annotated[int, typer.Option("--min-bucket-n", help="gate 4: scored predictions per confidence bucket")] = 30,
    min_gate_n: Annotated[int, typer.Option("--min-gate-n", help="gates 1-3: valid predictions needed to judge")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="seed of the ECE/Brier bootstrap")] = 0,
    redis: Annotated[str | None, typer.Option("--redis", help="read the ai.decision stream at this Redis URL instead of SQLite")] = None,
    redis_prefix: Annotated[str | None, typer.Option("--redis-prefix", help="key prefix of the streams; default "
                                                     "AI_ENGINE_REDIS_PREFIX of the env file")] = None,
    fee_bps: Annotated[float, typer.Option("--fee-bps", help="money view: fee per side in basis points "
                                           "(10 = Binance spot taker)")] = 10.0,
    slippage_bps: Annotated[float, typer.Option("--slippage-bps", help="money view: slippage per side, bps")] = 0.0,
    hold: Annotated[int | None, typer.Option("--hold", help="money view: bars a position is held; default the "
                                             "model's label horizon")] = None,
    long_only: Annotated[bool, typer.Option("--long-only", help="money view: SELL closes a long, never shorts")] = False,
    rebalance: Annotated[str | None, typer.Option("--rebalance", help="option B's other weights, e.g. "
                                                  "xgb=27.5,lgbm=27.5,nhits=40 (the spec's, the default)")] = None,
    weights: Annotated[list[str] | None, typer.Option("--weights", help="also re-vote with these weights, e.g. "
                                                      "xgb=20,lgbm=20,nhits=30,patchtst=30 (repeatable)")] = None,
    no_edge: Annotated[bool, typer.Option("--no-edge", help="only the spec's gates: skip the counterfactual, "
                                          "money view and paired comparison")] = False,
    version: Annotated[str | None, typer.Option("--version", help="analyse this version's rows only (in the role "
                                                "it last ran in); default the version in force")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="analyse this artifact's rows only (sha256 or a "
                                               "prefix of it)")] = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="every row of the model in the window, "
                                               "whatever its version or role (a mix)")] = False,
    challengers: Annotated[str | None, typer.Option("--challengers", help="also judge these shadows against the "
                                                    "champion at once, corrected for how many (comma list, or 'all': "
                                                    "every shadow in force)")] = None,
) -> None:
    """Analyse shadow metrics over the last N hours, judge the four evaluation gates, then the edge:
    the counterfactual activation (options A and B), the money view and the paired comparison
    with the champion, and a recommendation among A, B and C. By default only the rows of the
    model's version in force (the latest configuration's artifact and role) count: what
    `models activate` judges."""
    import tempfile

    from ai_engine.analysis import (
        Thresholds,
        analyze,
        analyze_challengers,
        render_text,
        shadows_in_force,
        to_json,
        write_html,
    )
    from ai_engine.exceptions import AIEngineError, ConfigError
    from ai_engine.lifecycle.activation import parse_weights
    from ai_engine.money import Execution

    tmp = tempfile.TemporaryDirectory(prefix="ai-engine-analyze-") if redis else None
    try:
        if redis:
            from ai_engine.telemetry.redis_reader import materialize_from_redis

            prefix = redis_prefix if redis_prefix is not None else _settings(env_file).redis_prefix
            bus = materialize_from_redis(redis, prefix, Path(tmp.name) / "from-redis.sqlite")
            store = bus.path
        elif store is None:
            store = _settings(env_file).store_path
        th = Thresholds(max_action_share=max_action_share, min_stddev=min_stddev, min_agreement=min_agreement,
                        min_bucket_n=min_bucket_n, min_gate_n=min_gate_n, seed=seed)
        for flag, name in (("--model", model), ("--compare", compare)):
            _check_known(flag, name, store)
        if sum((version is not None, sha256 is not None, all_versions)) > 1:
            raise ConfigError("give one of --version, --sha256 and --all-versions")
        execution = None
        if not no_edge:
            try:
                execution = Execution(fee_bps=fee_bps, slippage_bps=slippage_bps, long_only=long_only,
                                      hold_bars=hold if hold is not None else 1)
            except ValueError as exc:
                raise ConfigError(f"money view: {exc}") from None
        result = analyze(store, hours, model=model, until=until, thresholds=th, compare=compare,
                         horizon=horizon, band=band, version=version, sha256=sha256, all_versions=all_versions,
                         edge=not no_edge, execution=execution, hold=hold,
                         rebalance=parse_weights(rebalance) if rebalance else None,
                         custom=tuple(parse_weights(w, "--weights") for w in weights or ()))
        if challengers is not None:
            if no_edge:
                raise ConfigError("--challengers compares edges; it cannot go with --no-edge")
            names = shadows_in_force(store) if challengers.strip() == "all" else tuple(
                c.strip() for c in challengers.split(",") if c.strip())
            for name in names:
                _check_known("--challengers", name, store)
            comparison = analyze_challengers(
                store, hours, names, models_dir=_models_dir(env_file), until=until, thresholds=th, horizon=horizon,
                band=band, all_versions=all_versions, execution=execution, hold=hold,
                rebalance=parse_weights(rebalance) if rebalance else None)
            result = dataclasses.replace(result, challengers=comparison)
        if redis:  # the report names the stream, not the temporary copy, and what the copy left out
            result = dataclasses.replace(result, store_path=bus.source, bus_skipped=bus.skipped)
        if html_file is not None:
            write_html(result, html_file)
    except AIEngineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if tmp is not None:
            tmp.cleanup()
    if as_json:
        typer.echo(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        typer.echo(render_text(result), nl=False)
    if html_file is not None:
        typer.echo(f"HTML report written to {html_file}", err=True)
    raise typer.Exit(result.exit_code)


def _settings(env_file: str):
    from ai_engine.cli.options import env_arg
    from ai_engine.config import load_settings

    return load_settings(env_arg(env_file))


def _models_dir(env_file: str) -> Path | None:
    """The registry's directory, when the settings can be read (without them: no registry count)."""
    from ai_engine.exceptions import AIEngineError

    try:
        return _settings(env_file).models_dir
    except AIEngineError:
        return None


def _check_known(flag: str, name: str | None, store: Path) -> None:
    """A name neither the engine nor the store knows is a typo, not an inconclusive analysis."""
    from ai_engine.config import MODEL_ENV_PREFIX
    from ai_engine.exceptions import ConfigError
    from ai_engine.telemetry.sqlite import TelemetryStore

    if name is None or name in MODEL_ENV_PREFIX:
        return
    with closing(TelemetryStore(store, readonly=True)) as db:
        seen = [r[0] for r in db.connection.execute("SELECT DISTINCT model FROM predictions ORDER BY model")]
    if name not in seen:
        raise ConfigError(f"{flag} {name!r}: no such model; the engine's models are {', '.join(MODEL_ENV_PREFIX)}, "
                          f"the store has predictions of {', '.join(seen) or 'none'}")


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command to the main CLI."""
    app.command("analyze")(start_analyze)


def main(argv: list[str] | None = None) -> int:
    """Run ``analyze`` as a stand-alone program (the ops wrapper script); returns the exit code."""
    from ai_engine.cli.main import main as run_cli

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      help="Shadow-metrics analysis (same as `ai-engine analyze`).")
    register(app)
    return run_cli(argv, cli=app, prog_name="analyze_shadow_metrics.py")


if __name__ == "__main__":
    sys.exit(main())
