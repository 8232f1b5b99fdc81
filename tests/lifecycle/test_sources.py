"""`serve --source redis` and `--source binance` as real subprocesses: history primed from the store
(or Binance REST), decisions recorded, Redis entries acknowledged after them, and a restart that
decides nothing twice."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bus"))
from binance_fake import FakeKlineSocket, FakeRest, kline_event  # noqa: E402

from ai_engine.data import synthetic_market  # noqa: E402
from ai_engine.health import fetch_health  # noqa: E402
from ai_engine.market import kline_entry  # noqa: E402
from ai_engine.service import kline_group  # noqa: E402
from ai_engine.telemetry.sqlite import TelemetryStore  # noqa: E402
from ai_engine.types import Candle  # noqa: E402
from tests.helpers import redis_prefix  # noqa: E402

H = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def bus(deployment):
    """The real Redis with a fresh key prefix (deleted afterwards), configured in the deployment."""
    with redis_prefix() as (url, prefix):
        with deployment.env.open("a") as fh:
            fh.write(f"REDIS_URL={url}\nAI_ENGINE_REDIS_PREFIX={prefix}\nGOVERNOR_BACKEND=file\n")
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        yield client, prefix
        client.close()


def _candles(n_bars: int) -> dict[str, list[Candle]]:
    out = {}
    for sym, s in synthetic_market(list(SYMBOLS), "1h", n_bars=n_bars, seed=11).items():
        cols = zip(s.open_time, s.open, s.high, s.low, s.close, s.volume, strict=True)
        out[sym] = [Candle(sym, "1h", int(t), *map(float, rest)) for t, *rest in cols]
    return out


class Serve:
    """``ai-engine serve`` as a subprocess with its log in a file."""

    def __init__(self, dep, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
        self.log = dep.home.parent / f"serve-{uuid.uuid4().hex[:6]}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ai_engine.cli.main", "serve", "--env-file", str(dep.env),
                                      *args], env=env | {"PYTHONUNBUFFERED": "1"}, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """SIGTERM; returns the number of decisions this process made (from its last log line)."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self._out.close()
        assert rc == 0, self.text()[-3000:]
        return int(re.findall(r"stopped after (\d+) decisions", self.text())[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def serve():
    started: list[Serve] = []

    def start(dep, *args: str) -> Serve:
        s = Serve(dep, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def _decisions(dep) -> list[tuple[str, int]]:
    path = dep.home / "telemetry.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT symbol, candle_open_time FROM decisions ORDER BY symbol, candle_open_time").fetchall()
    except sqlite3.OperationalError:  # the service is still creating the schema
        return []


def _wait(cond, what: str, proc: Serve, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        assert proc.proc.poll() is None, f"serve exited while waiting for {what}:\n{proc.text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{proc.text()[-3000:]}")


def test_redis_source_primes_from_store_acks_after_deciding_and_never_decides_twice(deployment, bus, serve):
    client, prefix = bus
    stream = f"{prefix}:stream:market.klines"
    group = "ai-engine"
    candles = _candles(1030)
    history = {s: c[:1000] for s, c in candles.items()}
    live = {s: c[1000:] for s, c in candles.items()}
    store = TelemetryStore(deployment.home / "telemetry.sqlite")
    store.record_candles([c for cs in history.values() for c in cs])  # what an earlier run recorded
    store.close()

    def push(i: int, closed: bool = True) -> None:
        for s in SYMBOLS:
            client.xadd(stream, kline_entry(live[s][i], closed))

    for i in range(4):
        push(i)
    push(4, closed=False)  # an open candle: acknowledged, never decided
    client.xadd(stream, {"payload": "{not json"})  # malformed: acknowledged and logged
    first = serve(deployment, "--source", "redis")
    _wait(lambda: len(_decisions(deployment)) == 8, "8 decisions", first)
    assert _decisions(deployment) == sorted((s, live[s][i].open_time) for s in SYMBOLS for i in range(4))
    _wait(lambda: client.xpending(stream, group)["pending"] == 0, "every entry acknowledged", first)
    assert "primed features with 2000 history candles" in first.text()
    # SIGHUP between two closes: the next ones are decided on the new configuration
    with deployment.env.open("a") as fh:
        fh.write("PATCHTST_SHADOW_ONLY=true\n")
    first.proc.send_signal(signal.SIGHUP)
    _wait(lambda: (h := fetch_health(deployment.port)) and h["reloads"]["applied"] == 1 and h["state"] == "running",
          "the reload", first)
    for i in range(4, 7):
        push(i)
    _wait(lambda: len(_decisions(deployment)) == 14, "14 decisions", first)
    with sqlite3.connect(deployment.home / "telemetry.sqlite") as db:
        roles = db.execute("SELECT candle_open_time >= ?, role FROM predictions WHERE model='patchtst'",
                           (live["BTCUSDT"][4].open_time,)).fetchall()
    assert sorted(set(roles)) == [(0, "voter"), (1, "shadow")]
    _wait(lambda: client.xpending(stream, group)["pending"] == 0, "acknowledged after the decisions", first)
    assert first.stop() == 14

    # While it is down: candles 7-8 are read by its consumer but not acknowledged (a crash between
    # reading and deciding), candle 9 is new, and candles 5-6 are delivered a second time.
    consumer = f"{socket.gethostname()}-{group}"
    for i in (7, 8):
        push(i)
    client.xreadgroup(group, consumer, {stream: ">"})
    assert client.xpending(stream, group)["pending"] == 4
    for i in (5, 6, 9):
        push(i)
    second = serve(deployment, "--source", "redis")
    _wait(lambda: len(_decisions(deployment)) == 20, "20 decisions", second)
    _wait(lambda: client.xpending(stream, group)["pending"] == 0, "every entry acknowledged", second)
    assert second.stop() == 6  # candles 7, 8 and 9 of both symbols; 5 and 6 were not decided again
    assert "already handled; not deciding them again" in second.text()
    assert _decisions(deployment) == sorted((s, live[s][i].open_time) for s in SYMBOLS for i in range(10))
    # the decisions went out on the bus once each
    published = [f[b"event_id"] for _, f in client.xrange(f"{prefix}:stream:ai.decision")]
    assert len(published) == len(set(published)) == 20


def test_redis_group_is_one_per_shard(deployment):
    from ai_engine.config import load_settings

    settings = load_settings(deployment.env, environ={})
    assert kline_group(settings) == "ai-engine"
    sharded = load_settings(deployment.env, environ={}, overrides={"AI_ENGINE_SHARD": "1/2"})
    assert kline_group(sharded) == "ai-engine-shard1of2"


def test_binance_source_backfills_history_over_rest_then_decides_live_closes(deployment, serve):
    last_closed = int(time.time() * 1000) // H * H - H
    # REST has history up to three bars ago; the websocket then streams the three latest closes
    # (and the candle still open, which is never decided).
    rest = FakeRest({s: [last_closed - i * H for i in range(3, 500)][::-1] for s in SYMBOLS}, "1h")
    live_times = [last_closed - 2 * H, last_closed - H, last_closed]
    sock = FakeKlineSocket([[kline_event(s, t, "1h") for t in live_times for s in SYMBOLS]
                            + [kline_event("BTCUSDT", last_closed + H, "1h", closed=False)]])
    try:
        args = ("--source", "binance", "--ws-url", sock.url, "--rest-url", rest.url, "--history", "400")
        first = serve(deployment, *args)
        _wait(lambda: len(_decisions(deployment)) == 6, "6 decisions", first)
        assert _decisions(deployment) == sorted((s, t) for s in SYMBOLS for t in live_times)
        # the last 400 bars, less the 3 the websocket brings, per symbol
        assert "primed features with 794 history candles" in first.text()
        assert first.stop() == 6
        # a restart resumes after the last decision: the same closes streamed again are dropped
        second = serve(deployment, *args)
        _wait(lambda: len(sock.paths) == 2 and "serving" in second.text(), "the second connection", second)
        time.sleep(1.0)
        assert second.stop() == 0
        assert "primed features with 800 history candles" in second.text()  # from the store, not REST
        assert len(_decisions(deployment)) == 6
    finally:
        sock.close()
        rest.close()
