"""Soak: simulated days of 1-minute candles for many symbols through the service path.

CandleProcessor + DecisionEngine (small xgb/lgbm voters, the others disabled; ``--all-models``:
NHiTS votes too and PatchTST shadows in its own process, so every decision has four prediction rows), a private
redis-server with the bus publisher, one hot reload per simulated day, a Redis outage on day 2
(or midway for runs shorter than 3 days), hourly retention (delivered outbox rows; decisions only
with --keep-days). Prints RSS growth after warm-up, log lines per simulated minute, store size,
unhandled exceptions and the decision accounting; exits 1 when a pass criterion fails.

    python bench/soak.py --days 7 --symbols 30
    python bench/soak.py --days 1 --symbols 400 --all-models    # issue 20: 576,000 decisions at exchange scale
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

DAY_MS = 86_400_000
MIN_MS = 60_000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


class LineCounter(logging.Handler):
    """Counts log records per simulated minute (the candle time being processed)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.minute = 0
        self.per_minute: Counter = Counter()
        self.by_level: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.per_minute[self.minute] += 1
        self.by_level[record.levelname] += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    import redis

    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--symbols", type=int, default=30)
    ap.add_argument("--keep-days", type=float, default=None, help="delete decisions older than this (default: keep all)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--all-models", action="store_true", help="NHiTS votes and PatchTST shadows too (four rows per decision)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    from ai_engine.config import load_settings
    from ai_engine.data import synthetic_market, time_batches
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState
    from ai_engine.live import CandleProcessor
    from ai_engine.runtime import open_engine
    from ai_engine.training import TrainOptions, train_model

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ai-engine-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    counter = LineCounter()
    logging.basicConfig(level=logging.INFO, handlers=[counter, logging.FileHandler(work / "soak.log")], force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    errors: list[str] = []
    threading.excepthook = lambda a: errors.append(f"thread {a.thread.name}: {a.exc_type.__name__}: {a.exc_value}")

    t0 = time.perf_counter()
    syms = [f"S{i:02d}USDT" for i in range(args.symbols)]
    models = {}
    for name, ext in (("xgb", ".ubj"), ("lgbm", ".txt")):
        models[name] = work / "models" / f"{name}{ext}"
        train_model(name, symbols=syms[:2], out_path=models[name], synthetic=True, interval="1m", epochs=30,
                    threads=2, force=True, options=TrainOptions(synthetic_bars=3000))
    roles = {"NHITS_ROLE": "disabled", "PATCHTST_ROLE": "disabled", "ENSEMBLE_MIN_CONSENSUS": "2"}
    if args.all_models:
        for name in ("nhits", "patchtst"):
            models[name] = work / "models" / f"{name}.pth"
            train_model(name, symbols=syms[:2], out_path=models[name], synthetic=True, interval="1m", epochs=1,
                        threads=2, force=True, options=TrainOptions(synthetic_bars=3000))
        roles = {"NHITS_MODEL_PATH": str(models["nhits"]), "PATCHTST_MODEL_PATH": str(models["patchtst"]),
                 "PATCHTST_ROLE": "shadow"}
    warm_bars = 200
    n_bars = int(args.days * 1440) + warm_bars
    series = synthetic_market(syms, interval="1m", n_bars=n_bars, seed=11)
    batches = time_batches(series)
    port = free_port()
    (work / "redis").mkdir(exist_ok=True)
    redis_proc = start_redis(port, work / "redis")
    env = {"AI_ENGINE_HOME": str(work / "home"), "AI_ENGINE_SYMBOLS": ",".join(syms), "AI_ENGINE_INTERVAL": "1m",
           "XGB_MODEL_PATH": str(models["xgb"]), "LGBM_MODEL_PATH": str(models["lgbm"]), **roles,
           "REDIS_URL": f"redis://127.0.0.1:{port}/0", "GOVERNOR_BACKEND": "file", "AI_ENGINE_STREAM_MAXLEN": "50000"}
    settings = load_settings(None, environ=env)
    FileGovernorBackend(settings.governor_state_file).write(GovernorState.new(False, GovernorMode.PAPER, "soak"))
    engine = open_engine(settings)
    publisher = engine.sinks[0]
    proc = CandleProcessor(engine, "1m")
    setup_s = time.perf_counter() - t0

    first = int(series[syms[0]].open_time[0])
    outage_day = 2 if args.days >= 3 else args.days / 2
    outage = (first + int(outage_day * DAY_MS), first + int(outage_day * DAY_MS) + 2 * 3_600_000)
    returned = published = reloads = refused = 0
    rss_warm = rss_peak = 0.0
    disk: list[tuple[float, int]] = []
    pruned: Counter = Counter()
    redis_down = False
    warm_at = warm_bars + min(1440, (n_bars - warm_bars) // 4)
    t_run = time.perf_counter()
    for i, batch in enumerate(batches):
        t = batch[0].open_time
        counter.minute = (t - first) // MIN_MS
        if i and (t - first) % DAY_MS == 0:  # a hot reload a day, alternating the voters' weights
            day = (t - first) // DAY_MS
            w = ("30", "20") if day % 2 else ("25", "25")
            new = load_settings(None, environ=env | {"XGB_WEIGHT": w[0], "LGBM_WEIGHT": w[1],
                                                     "NHITS_WEIGHT": "30", "PATCHTST_WEIGHT": "20"})
            ok = engine.reload(new)
            reloads += ok
            refused += not ok
            disk.append((day, store_bytes(settings.store_path)))
        if not redis_down and outage[0] <= t < outage[1]:
            redis_proc.terminate()
            redis_proc.wait(10)
            redis_down = True
        elif redis_down and t >= outage[1]:
            redis_proc = start_redis(port, work / "redis")
            redis_down = False
        try:
            recs = proc.process(batch) if i >= warm_bars else (proc.prime(batch), [])[1]
        except Exception as exc:  # counted: the pass criterion is zero
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        returned += len(recs)
        published += sum(r.published for r in recs)
        if i and (t - first) % 3_600_000 == 0:  # hourly retention
            cut_dec = t - int(args.keep_days * DAY_MS) if args.keep_days else None
            for k, v in engine.store.prune(int(time.time() * 1000) - 1000, decisions_before_ms=cut_dec).items():
                pruned[k] += v
        if i == warm_at:  # one simulated day after warm-up (a quarter of a shorter run)
            gc.collect()
            rss_warm = rss_mb()
        if i % 60 == 0:
            rss_peak = max(rss_peak, rss_mb())
    run_s = time.perf_counter() - t_run
    rss_peak = max(rss_peak, rss_mb())
    if redis_down:
        redis_proc = start_redis(port, work / "redis")
    engine.close()
    left = publisher.pending()
    decisions = engine.store.count("decisions")
    intents = engine.store.count("intents")
    predictions = engine.store.count("predictions")
    engine.store.close()
    redis_proc.terminate()
    expected = args.symbols * (n_bars - warm_bars)
    minutes = max(1, n_bars - warm_bars)
    max_lines = max(counter.per_minute.values(), default=0)
    figures = {
        "days": args.days, "symbols": args.symbols, "decisions_expected": expected, "decisions_returned": returned,
        "decisions_stored": decisions, "predictions_stored": predictions, "models": len(models),
        "intents_stored": intents, "published": published,
        "bus_delivered": publisher.delivered, "bus_duplicates_skipped": publisher.duplicates_skipped,
        "bus_left_spooled": left, "reloads_applied": reloads, "reloads_refused": refused,
        "unhandled_exceptions": len(errors), "errors": errors[:5],
        "rss_after_warmup_mb": round(rss_warm, 1), "rss_peak_mb": round(rss_peak, 1),
        "rss_growth_pct": round(100 * (rss_peak - rss_warm) / rss_warm, 2) if rss_warm else None,
        "log_lines_total": sum(counter.by_level.values()), "log_lines_by_level": dict(counter.by_level),
        "log_lines_max_per_sim_minute": max_lines,
        "log_lines_mean_per_sim_minute": round(sum(counter.per_minute.values()) / minutes, 3),
        "store_bytes_by_day": disk, "store_bytes_final": store_bytes(settings.store_path), "pruned": dict(pruned),
        "setup_s": round(setup_s, 1), "run_s": round(run_s, 1),
        "decisions_per_s": round(returned / run_s, 1) if run_s else None,
        "projected_7d_30sym_s": round(7 * 1440 * 30 / (returned / run_s), 0) if returned else None,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    kept_dec, kept_int = decisions + pruned["decisions"], intents + pruned["intents"]  # retention deletes some
    ok = (not errors and returned == kept_dec == expected and left == 0 and refused == 0
          and (args.keep_days is not None or predictions == len(models) * expected)
          and publisher.delivered == kept_dec + kept_int and max_lines <= 1000
          and (figures["rss_growth_pct"] is None or figures["rss_growth_pct"] <= 5.0))
    print("SOAK", "PASS" if ok else "FAIL")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
