"""Hot-reload benchmark: time from a lifecycle command to the first decision on the new configuration.

Starts ``serve`` on a paced replay of a synthetic market (small trained xgb/lgbm/nhits/patchtst),
switches PatchTST between shadow and voter N times with the real commands, and reports the
latency of each switch and whether the store holds exactly one decision per candle, in order.
Target: every switch ≤ 1 s, zero missed or duplicated candles.

    python bench/bench_reload.py --switches 6 --pace 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
H = 3_600_000


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _setup(root: Path, port: int, bars: int) -> tuple[Path, Path, Path]:
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME
    from ai_engine.data import synthetic_market
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState
    from ai_engine.training import TrainOptions, train_model

    home, data = root / "home", root / "candles"
    data.mkdir(parents=True)
    for m in ("xgb", "lgbm", "nhits", "patchtst"):
        train_model(m, symbols=SYMBOLS, out_path=home / "models" / DEFAULT_ARTIFACT_NAME[m], synthetic=True,
                    options=TrainOptions(synthetic_bars=1500), epochs=1 if m in ("nhits", "patchtst") else 30,
                    threads=1, force=True)
    new = root / "new" / "patchtst.pth"
    train_model("patchtst", symbols=SYMBOLS, out_path=new, synthetic=True, options=TrainOptions(synthetic_bars=1500),
                epochs=1, seed=1, threads=1, force=True)
    for sym, s in synthetic_market(SYMBOLS, "1h", n_bars=bars, seed=7).items():
        rows = ["open_time,open,high,low,close,volume"]
        rows += [f"{int(t)}," + ",".join(repr(float(x)) for x in r)
                 for t, *r in zip(s.open_time, s.open, s.high, s.low, s.close, s.volume, strict=True)]
        (data / f"{sym}-1h.csv").write_text("\n".join(rows) + "\n")
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(False, GovernorMode.PAPER, "bench"))
    env = root / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={home}\nAI_ENGINE_SYMBOLS={','.join(SYMBOLS)}\nAI_ENGINE_HEALTH_PORT={port}\n")
    return env, data, new


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=6)
    ap.add_argument("--pace", type=float, default=0.2)
    ap.add_argument("--port", type=int, default=18731)
    args = ap.parse_args()

    from ai_engine.config import load_settings
    from ai_engine.lifecycle.activation import activate, shadow, stage

    root = Path(tempfile.mkdtemp(prefix="bench_reload_"))
    env, data, new = _setup(root, args.port, bars=500 + int(60 / max(args.pace, 0.05)) + 40 * args.switches)
    stage(load_settings(env), "patchtst", new)
    cmd = [sys.executable, "-c", "import typer; from ai_engine.cli import service_commands as s; "
           "app = typer.Typer(); s.register(app); app()", "serve", "--env-file", str(env), "--data", str(data),
           "--pace", str(args.pace)]
    log = open(root / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AI_ENGINE_")})
    db_path = root / "home" / "telemetry.sqlite"
    latencies = []
    try:
        while not ((h := _health(args.port)) and h.get("decisions_made")):
            time.sleep(0.05)
        for i in range(args.switches):
            t0 = time.perf_counter()
            t0_ms = int(time.time() * 1000)
            settings = load_settings(env)
            res = shadow(settings, "patchtst") if i % 2 == 0 else activate(settings, "patchtst", 20.0, force=True)
            assert res.signalled_pid == proc.pid, "service not signalled"
            while True:  # first decision made after the command on a config with the new role
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                    row = db.execute(
                        "SELECT p.role FROM decisions d JOIN predictions p ON p.event_id=d.event_id AND p.model='patchtst' "
                        "WHERE d.decided_at >= ? ORDER BY d.decided_at DESC LIMIT 1", (t0_ms,)).fetchone()
                if row and row[0] == ("shadow" if i % 2 == 0 else "voter"):
                    break
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        bad = 0
        total = 0
        for sym in SYMBOLS:
            times = [t for (t,) in db.execute("SELECT candle_open_time FROM decisions WHERE symbol=? ORDER BY decided_at, rowid", (sym,))]
            total += len(times)
            bad += sum(1 for a, b in zip(times, times[1:], strict=False) if b - a != H)
    print(f"switches: {len(latencies)}  pace: {args.pace}s  (pace bounds the wait for the next candle)")
    print(f"command → first decision on new config: median {statistics.median(latencies):.3f}s  "
          f"max {max(latencies):.3f}s  all: {[round(x, 3) for x in latencies]}")
    print(f"decisions: {total}  missed or duplicated candles: {bad}  serve exit code: {rc}")
    ok = max(latencies) <= 1.0 and bad == 0 and rc == 0
    print("PASS" if ok else "FAIL", "(target ≤ 1 s, zero missed/duplicated)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
