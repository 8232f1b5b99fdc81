"""Promotion and rollback by policy on a real ``serve`` (issue 18, items 5 and 6).

The market trends in alternating 24-bar legs, so models trained on it learn the same thing: the
challenger (an LGBM retrain) agrees with the ensemble (XGB at 70%), has skill, and its gates pass
on the evidence the paced file source makes. A dry-run policy first says what it would do and
changes nothing; switched on by an env edit, it takes the challenger, shadowing beside its voting
champion, through option B (5%, in the champion's place) to option A (20%) on its own, each step
audited, reloaded and announced on the lifecycle stream; a decision planted in the store that
counts a shadow (consensus 4 with a shadow among the four) is rolled back before the next candle.
Then the spec's way (LGBM itself in shadow), in a market that turns choppy after the promotion:
the live edge turns WORSE and the model is rolled back before the next candle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from ai_engine.health import fetch_health
from ai_engine.lifecycle.audit import read_audit
from ai_engine.lifecycle.envfile import read_env_file, update_env_file
from ai_engine.lifecycle.reload_signal import signal_reload
from tests.helpers import free_port, shared_redis_url, wait_for
from tests.lifecycle.conftest import copy_artifact
from tests.reliability.conftest import SERVE, SYMBOLS, tiny_torch_model

T0 = 1_600_000_000_000 - 1_600_000_000_000 % 3_600_000
# served bars: far more than a run needs when the machine is idle (it stops at the rollback), so a
# busy one, where the policy's low-priority process lags, does not run out of market first
BARS, TRAIN_BARS, LEG, HISTORY, CHOPPY_FROM = 3000, 1400, 24, 300, 560
POLICY = {
    "AI_ENGINE_POLICY_MODEL": "lgbm", "AI_ENGINE_POLICY_SHADOW_HOURS": "100", "AI_ENGINE_POLICY_MIN_PREDICTIONS": "200",
    "AI_ENGINE_POLICY_B_WEIGHT": "5", "AI_ENGINE_POLICY_B_REBALANCE": "xgb=65,nhits=15,patchtst=15",
    "AI_ENGINE_POLICY_B_HOURS": "20", "AI_ENGINE_POLICY_LIVE_HOURS": "20", "AI_ENGINE_POLICY_A_WEIGHT": "20",
    "AI_ENGINE_POLICY_A_REBALANCE": "xgb=60,nhits=10,patchtst=10", "AI_ENGINE_POLICY_INTERVAL_S": "0.5",
}


def trending_market(directory: Path, choppy_from: int = BARS) -> Path:
    """Alternating up and down legs of ``LEG`` bars (0.4%/bar drift, 0.6% noise) for each symbol;
    from ``choppy_from`` on, legs of 3 bars: what the models learnt turns wrong."""
    directory.mkdir(parents=True)
    for k, sym in enumerate(SYMBOLS):
        rng = np.random.default_rng(k)
        legs = np.r_[np.repeat(np.resize([1.0, -1.0], BARS // LEG + 1), LEG)[:choppy_from],
                     np.repeat(np.resize([1.0, -1.0], BARS // 3 + 1), 3)[:BARS - choppy_from]]
        r = legs * 0.004 + rng.normal(0, 0.006, BARS)
        close = 100.0 * (k + 1) * np.exp(np.cumsum(r))
        op = np.r_[close[0], close[:-1]]
        hi = np.maximum(op, close) * (1 + rng.uniform(0, 0.003, BARS))
        lo = np.minimum(op, close) * (1 - rng.uniform(0, 0.003, BARS))
        vol = rng.uniform(50, 150, BARS)
        rows = ["open_time,open,high,low,close,volume"] + [
            f"{T0 + i * 3_600_000},{float(op[i])!r},{float(hi[i])!r},{float(lo[i])!r},{float(close[i])!r},"
            f"{float(vol[i])!r}" for i in range(BARS)]
        (directory / f"{sym}-1h.csv").write_text("\n".join(rows) + "\n")
    return directory


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """The markets (trending; trending then choppy), the four baselines (XGB and LGBM trained on the
    trending one's first TRAIN_BARS) and the LGBM retrain."""
    from ai_engine.training import train_model

    root = tmp_path_factory.mktemp("policy_market")
    data = trending_market(root / "candles")
    choppy = trending_market(root / "choppy", choppy_from=CHOPPY_FROM)
    train = root / "train"
    train.mkdir()
    for csv in data.iterdir():
        (train / csv.name).write_text("".join(csv.read_text().splitlines(keepends=True)[:TRAIN_BARS + 1]))
    arts = {}
    for name, model, seed in (("xgb", "xgb", 0), ("lgbm", "lgbm", 0), ("lgbm_new", "lgbm", 1)):
        arts[name] = root / name / "model"
        train_model(model, symbols=SYMBOLS, out_path=arts[name], data_dir=train, seed=seed, epochs=30, threads=1,
                    force=True)
    for name in ("nhits", "patchtst"):
        arts[name] = tiny_torch_model(name, root / name / "model")
    return data, choppy, arts


@pytest.fixture()
def redis_prefix():
    import redis

    url = shared_redis_url()
    prefix = f"test-policy-{uuid.uuid4().hex[:8]}"
    yield url, prefix
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(f"{prefix}:*"))
    if keys:
        r.delete(*keys)


def _decisions(store: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return db.execute("SELECT rowid, config_id, candle_open_time, decided_at FROM decisions ORDER BY rowid").fetchall()


def _plant_shadow_counted(store: Path) -> int:
    """A copy of the newest decision with ``consensus_count`` 4 and the LGBM entry tagged shadow:
    a shadow counted, the trace failure modes 2 and 5 would leave. Returns its rowid."""
    with sqlite3.connect(store, timeout=10) as db:
        row = db.execute("SELECT * FROM decisions ORDER BY rowid DESC LIMIT 1").fetchone()
        cols = [c[1] for c in db.execute("PRAGMA table_info(decisions)")]
        rec = dict(zip(cols, row, strict=True))
        payload = json.loads(rec["payload"])
        payload["consensus_count"] = 4
        payload["model_breakdown"]["lgbm"]["shadow"] = True
        rec |= {"event_id": f"planted-{uuid.uuid4()}", "consensus_count": 4, "payload": json.dumps(payload)}
        cur = db.execute(f"INSERT INTO decisions ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                         [rec[c] for c in cols])
        return cur.lastrowid


def _deploy(tmp_path: Path, arts: dict, cli, extra: str, tag: str | None = None) -> tuple[Path, Path, int]:
    """The four baselines voting (XGB at 70%), backed up, the LGBM retrain staged and in shadow (as
    LGBM itself, or with ``tag`` beside its voting champion), the policy's keys and ``extra`` in the
    env file. Returns (home, env file, health port)."""
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState

    home = tmp_path / "home"
    for m in ("xgb", "lgbm", "nhits", "patchtst"):
        copy_artifact(arts[m], home / "models" / DEFAULT_ARTIFACT_NAME[m])
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    port = free_port()
    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={home}\nAI_ENGINE_SYMBOLS={','.join(SYMBOLS)}\nAI_ENGINE_HEALTH_PORT={port}\n"
                   "ENSEMBLE_MIN_CONSENSUS=1\nXGB_WEIGHT=70\nLGBM_WEIGHT=10\nNHITS_WEIGHT=10\nPATCHTST_WEIGHT=10\n"
                   + extra + "".join(f"{k}={v}\n" for k, v in POLICY.items() if k not in extra))
    for args in (("models", "backup"), ("models", "stage", str(arts["lgbm_new"]), "--model", "lgbm"),
                 ("models", "shadow", "lgbm", *(("--as", tag) if tag else ()))):
        res = cli(*args, "--env-file", str(env))
        assert res.exit_code == 0, res.output
    return home, env, port


def _serve(env: Path, data: Path, log: Path, pace: str = "0.05") -> subprocess.Popen:
    penv = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET"))}
    with open(log, "w") as out:
        return subprocess.Popen([*SERVE, "--env-file", str(env), "--data", str(data), "--pace", pace,
                                 "--history", str(HISTORY)], env=penv | {"PYTHONUNBUFFERED": "1"},
                                stdout=out, stderr=subprocess.STDOUT)


def _policy_children(pid: int) -> list[int]:
    """serve's live `ai-engine policy run` children."""
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for c in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{c}/stat").read_text()
                if "\0policy\0run\0" in Path(f"/proc/{c}/cmdline").read_text() and stat.rsplit(")", 1)[1].split()[0] != "Z":
                    kids.append(int(c))
    return kids


def test_policy_dry_run_then_shadow_to_b_to_a_then_rollback_before_next_candle(tmp_path, market, cli, redis_prefix):
    import redis
    from typer.testing import CliRunner

    from ai_engine.cli.policy_commands import policy_app

    data, _, arts = market
    url, prefix = redis_prefix
    home, env, port = _deploy(tmp_path, arts, cli, f"REDIS_URL={url}\nAI_ENGINE_REDIS_PREFIX={prefix}\n"
                              "AI_ENGINE_POLICY=dry-run\nAI_ENGINE_POLICY_MODEL=lgbm_r2\n", tag="r2")
    store = home / "telemetry.sqlite"
    bus = redis.Redis.from_url(url, decode_responses=True)

    def lifecycle(event: str) -> list[dict]:
        entries = bus.xrange(f"{prefix}:stream:lifecycle")
        return [json.loads(f["payload"]) for _, f in entries if f["event_type"] == f"lifecycle.{event}"]

    log = tmp_path / "serve.log"
    proc = _serve(env, data, log)
    try:
        # dry-run: it says what it would do, on the bus and in the log, and changes nothing
        (would,) = wait_for(lambda: lifecycle("dry_run"), "the dry-run's would-promote", timeout=120)
        assert would["reason"].startswith("would activate lgbm_r2 at 5% (option B)") and would["dry_run"] is True
        env_before = env.read_bytes()
        _plant_shadow_counted(store)
        (alert,) = wait_for(lambda: lifecycle("alert"), "the dry-run's would-roll-back")
        assert alert["reason"].startswith("dry-run: would roll back (full): FAIL criterion: decision planted-")
        assert env.read_bytes() == env_before
        assert not [e for e in read_audit(home) if e["what"].startswith(("models.activate", "models.rollback"))]
        assert len({c for _, c, _, _ in _decisions(store) if c}) == 1  # one configuration all along
        assert "policy dry_run: would activate lgbm_r2 at 5%" in log.read_text()

        # its process killed: serve starts a new one (the promotions below are that one's)
        (first,) = wait_for(lambda: _policy_children(proc.pid), "the policy process")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (kids := _policy_children(proc.pid)) and kids != [first], "a new policy process", timeout=60)
        assert "policy process exited with code -9; starting a new one" in log.read_text()

        # on: shadow beside its champion -> option B (in the champion's place) -> option A on its own,
        # each step an audited activation
        update_env_file(env, {"AI_ENGINE_POLICY": "on"})
        signal_reload(home)
        wait_for(lambda: len(lifecycle("promote")) == 2, "option B then option A", timeout=150)
        acts = [e for e in read_audit(home) if e["what"].startswith("models.activate")]
        assert [(a["what"], a["after"]["LGBM_WEIGHT"]) for a in acts] == [("models.activate lgbm_r2", "5"),
                                                                          ("models.activate lgbm", "20")]
        assert all(a["gate"] == "READY" and a["forced"] is False and a["edge"] != "WORSE" for a in acts)
        steps = [(e["before"]["stage"], e["after"]["stage"]) for e in read_audit(home) if e["what"] == "policy.promote"]
        assert steps == [("shadow", "option_b"), ("option_b", "option_a")]
        vals = read_env_file(env)
        assert "SHADOW_LGBM_R2_MODEL_PATH" not in vals and (vals["XGB_WEIGHT"], vals["LGBM_WEIGHT"]) == ("60", "20")
        assert vals["LGBM_MODEL_PATH"] == acts[0]["path"] and Path(acts[0]["path"]).parent.name == "lgbm"  # the retrain
        health = wait_for(lambda: (h := fetch_health(port)) and h["weights"]["lgbm"] == 20.0 and h, "option A applied")
        assert health["roles"]["lgbm"] == "voter" and "lgbm_r2" not in health["roles"]
        assert health["pid"] == proc.pid  # hot reloads, no restart

        # a decision that counts a shadow: rolled back (full) before the next candle
        cfg_a = health["config_id"]
        planted = _plant_shadow_counted(store)
        wait_for(lambda: any(e["what"] == "policy.rollback" for e in read_audit(home)), "the rollback")
        rb = [e for e in read_audit(home) if e["what"] == "policy.rollback"][-1]
        assert rb["level"] == "full" and "consensus_count 4" in rb["reason"]
        vals = read_env_file(env)
        assert Path(vals["LGBM_MODEL_PATH"]).name.startswith("lgbm_model_BASELINE_") and vals["LGBM_WEIGHT"] == "10"
        after = wait_for(lambda: (h := fetch_health(port)) and h["config_id"] != cfg_a and h, "the rollback applied")
        assert after["pid"] == proc.pid
        wait_for(lambda: any(c == after["config_id"] for _, c, _, _ in _decisions(store)), "a decision after it")
        late = {t for rid, c, t, _ in _decisions(store) if rid > planted and c == cfg_a}
        assert len(late) <= 1  # only the candle being decided when it was planted ran on the old configuration
        (crit,) = wait_for(lambda: [a for a in lifecycle("alert") if a.get("severity") == "critical"], "the alert")
        assert crit["level"] == "full" and crit["reason"].startswith("rolled back (full): FAIL criterion")
        status = CliRunner().invoke(policy_app, ["status", "--env-file", str(env)])
        assert "stage rolled_back" in status.output, status.output
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_promoted_model_whose_live_edge_turns_worse_is_rolled_back_before_the_next_candle(tmp_path, market, cli):
    _, choppy, arts = market
    home, env, port = _deploy(tmp_path, arts, cli, "AI_ENGINE_POLICY=on\nAI_ENGINE_POLICY_B_HOURS=100000\n"
                              "AI_ENGINE_POLICY_LIVE_HOURS=60\n")
    store = home / "telemetry.sqlite"
    proc = _serve(env, choppy, tmp_path / "serve.log")
    try:
        rb = wait_for(lambda: next((e for e in read_audit(home) if e["what"] == "policy.rollback"), None),
                      "the rollback of the promoted model", timeout=150)
        whats = [e["what"] for e in read_audit(home)]
        assert whats.index("policy.promote") < whats.index("models.rollback.full lgbm") < whats.index("policy.rollback")
        assert rb["level"] == "full" and rb["before"]["stage"] == "option_b" and "live edge WORSE" in rb["reason"]
        vals = read_env_file(env)
        assert Path(vals["LGBM_MODEL_PATH"]).name.startswith("lgbm_model_BASELINE_") and vals["XGB_WEIGHT"] == "70"
        edit = next(e for e in read_audit(home) if e["what"] == "models.rollback.full lgbm")
        final = wait_for(lambda: (h := fetch_health(port)) and h["weights"]["lgbm"] == 10.0 and h, "the rollback applied")
        wait_for(lambda: any(c == final["config_id"] for _, c, _, _ in _decisions(store)), "a decision after it")
        late = {t for _, c, t, at in _decisions(store) if at > edit["ts_ms"] and c != final["config_id"]}
        assert len(late) <= 1  # only the candle being decided as the edit landed ran on option B
        first_bad = T0 + CHOPPY_FROM * 3_600_000
        assert max(t for _, c, t, _ in _decisions(store) if c != final["config_id"]) >= first_bad  # not before the turn
        assert final["pid"] == proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
