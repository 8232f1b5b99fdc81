"""`ai-engine demo`: train four small models, replay with PatchTST in shadow, summarise. Offline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from ai_engine.cli.options import DataDir, MaxBadRows, make_console

console = make_console()

DEMO_EPOCHS = {"xgb": None, "lgbm": None, "nhits": 6, "patchtst": 4}
# PatchTST without dropout for the demo: generating dropout masks was a quarter of its CPU time
# (9.5 of 40 s, cProfile, 1 thread); 4 epochs without it took 44 s where 4 with it took 58 s (load 7).
DEMO_AGENT_PARAMS = {"patchtst": {"net_params": {"dropout": 0.0, "head_dropout": 0.0}}}
MARKER = ".ai-engine-demo"


def fresh_workdir(home: Path) -> None:
    """Start from an empty workdir, deleting only one an earlier demo created (it holds ``MARKER``):
    ``--workdir`` may name a directory of the user's own."""
    from ai_engine.exceptions import ConfigError

    empty = home.is_dir() and not any(home.iterdir())
    if home.exists() and not empty:
        if not (home / MARKER).is_file():
            raise ConfigError(f"workdir {home} exists and was not created by `ai-engine demo`; "
                              "give --workdir a new or empty directory (nothing was deleted)")
        shutil.rmtree(home)
    (home / "models").mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by `ai-engine demo`, which deletes this directory when run on it again\n")


def demo(
    data: Path = DataDir,
    symbols: str = typer.Option("BTCUSDT,ETHUSDT", "--symbols"),
    interval: str = typer.Option("1h", "--interval"),
    workdir: Path = typer.Option(None, "--workdir", help="where models, telemetry and env file go (default: $AI_ENGINE_HOME/demo)"),
    bars: int = typer.Option(4000, "--bars", help="bars per symbol (synthetic market, or the last N real bars)"),
    seed: int = typer.Option(0, "--seed"),
    max_bad_rows: int = MaxBadRows,
) -> None:
    """Train small models (synthetic market unless --data), replay with PatchTST in shadow, print a summary."""
    import logging

    import torch

    from ai_engine.config import load_settings
    from ai_engine.cpu_affinity import ALL_CPUS, free_cpus
    from ai_engine.data import load_dir, synthetic_market
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState
    from ai_engine.lifecycle.envfile import update_env_file
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine, setup_logging
    from ai_engine.training import TrainOptions, train_model

    t_start = time.perf_counter()
    setup_logging("WARNING")
    logging.getLogger("ai_engine.models").setLevel(logging.INFO)
    home = workdir or load_settings(None).home / "demo"
    fresh_workdir(home)
    syms = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    source = f"real candles from {data}" if data else "SYNTHETIC market (seeded, not real prices)"
    # Threads sized to the CPUs free now: fixed at 2 beside one busy process, LightGBM's OpenMP
    # spin-waits took 0.5 s to 60 s and the demo 28 s to 4-6 minutes (issue 17).
    threads = free_cpus()
    torch.set_num_threads(threads)  # the replay's inference too
    console.print(f"[bold]ai-engine demo[/bold]: {', '.join(syms)} {interval}, {source}; workdir {home}; "
                  f"{threads} thread{'s' if threads > 1 else ''} ({len(ALL_CPUS) or 1} CPUs, {threads} free now)")

    paths = {}
    opts = TrainOptions(max_rows=bars if data else None, synthetic_bars=bars)
    for name, ext in (("xgb", ".ubj"), ("lgbm", ".txt"), ("nhits", ".pth"), ("patchtst", ".pth")):
        t0 = time.perf_counter()
        paths[name] = home / "models" / f"{name}_model{ext}"
        _, report = train_model(
            name, symbols=syms, out_path=paths[name], data_dir=data,
            synthetic=data is None, interval=interval, epochs=DEMO_EPOCHS[name], seed=seed, options=opts, threads=threads,
            agent_params=DEMO_AGENT_PARAMS.get(name),
        )
        t = report.test
        console.print(f"  trained {name:<8} in {time.perf_counter() - t0:5.1f}s: held-out balanced accuracy "
                      f"{t.balanced_accuracy:.3f} (majority baseline {t.baselines[0].balanced_accuracy:.3f}), "
                      f"max action share {t.max_action_share:.0%}")

    env = home / "ai-engine.env"
    update_env_file(env, {
        "AI_ENGINE_HOME": str(home),
        "AI_ENGINE_SYMBOLS": ",".join(syms),
        "AI_ENGINE_INTERVAL": interval,
        **{f"{p}_MODEL_PATH": str(paths[m]) for m, p in (("xgb", "XGB"), ("lgbm", "LGBM"), ("nhits", "NHITS"), ("patchtst", "PATCHTST"))},
        "PATCHTST_SHADOW_ONLY": "true",
    })
    settings = load_settings(env, environ={})
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "demo"))

    if data:
        series = load_dir(data, list(syms), interval, max_bad_rows=max_bad_rows)
        series = {s: v.slice(len(v) - bars, None) for s, v in series.items()}
    else:
        series = synthetic_market(list(syms), interval=interval, n_bars=bars, seed=seed)
    # Decide on the last 20% of time: the part no model saw in training or calibration.
    first = min(int(v.open_time[int(len(v) * 0.8)]) for v in series.values())
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        summary = replay_series(engine, series, start_ms=first)
    finally:
        engine.close()

    from ai_engine.cli.engine_commands import print_summary

    print_summary(summary, settings.store_path, title="Demo replay (held-out 20%, PatchTST in shadow)")
    hours = (summary.last_time - summary.first_time) // 3_600_000 + 1 if summary.decisions else 24
    console.print(f"env file: {env}\nnext: ai-engine analyze --env-file {env} --hours {hours}")
    console.print(f"finished in {time.perf_counter() - t_start:.0f}s")
