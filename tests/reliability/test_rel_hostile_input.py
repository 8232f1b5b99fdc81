"""Hostile input, property-based: env files and settings, CLI arguments, telemetry readers. Never a
traceback, always a clear error, nothing lost, nothing half-written. (Candle CSV parsing is fuzzed
in tests/data/test_load_csv_property.py.)"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ai_engine.config import KEYS, load_settings
from ai_engine.exceptions import AIEngineError, ConfigError, DataError
from ai_engine.lifecycle.envfile import parse_env_text, read_env_file, update_env_file
from tests.helpers import redis_prefix

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEY_NAMES = sorted(KEYS)
values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "true", "ture", "1", "-1", "nan", "inf", "1e309", "0/2", "3/2", "a/b", "BTCUSDT,", ",",
                     "redis://:pw@h:1/0", "xgb=50,lgbm=50", "100", "0", "1h", "7m", "DEBUG", "shadow", "voter"]),
)


@given(st.text(max_size=300))
def test_env_text_parses_or_raises_config_error_naming_the_line(text):
    try:
        lines = parse_env_text(text, "f.env")
    except ConfigError as exc:
        assert str(exc).startswith("f.env:")
        return
    assert [ln.raw for ln in lines] == text.splitlines()


@FAST
@given(key=st.sampled_from(["REDIS_URL", "AI_ENGINE_SYMBOLS", "bad key", "1X", "XGB_WEIGHT"]), value=st.text(max_size=40))
def test_env_edit_round_trips_or_leaves_the_file_byte_identical(tmp_path, key, value):
    path = tmp_path / "e.env"
    original = b"# managed by ops\nAI_ENGINE_HOME=/var/lib/ai-engine\nREDIS_URL=redis://127.0.0.1:6379/0\n"
    path.write_bytes(original)
    try:
        update_env_file(path, {key: value})
    except ConfigError as exc:
        assert str(path) in str(exc)
        assert path.read_bytes() == original
        return
    got = read_env_file(path)
    assert got[key] == value and got["AI_ENGINE_HOME"] == "/var/lib/ai-engine"
    assert path.read_text().startswith("# managed by ops\n")


def test_env_edit_of_a_malformed_file_changes_nothing(tmp_path):
    path = tmp_path / "e.env"
    original = b"A=1\nA=2\n"
    path.write_bytes(original)
    with pytest.raises(ConfigError, match="duplicate key A"):
        update_env_file(path, {"B": "3"})
    assert path.read_bytes() == original


@FAST
@given(env=st.dictionaries(st.sampled_from(KEY_NAMES), values, max_size=6))
def test_load_settings_gives_settings_or_a_config_error_naming_a_key(tmp_path, env):
    env = {"AI_ENGINE_HOME": str(tmp_path), **env}
    try:
        s = load_settings(None, environ=env)
    except ConfigError as exc:
        msg = str(exc)
        assert any(k in msg for k in KEY_NAMES) or "weights" in msg, msg
        return
    assert abs(sum(s.weights().values()) - 100) < 1e-6 and s.symbols


@FAST
@given(lines=st.lists(st.tuples(st.sampled_from(KEY_NAMES + ["XGB_WIEGHT", "REDIS_PORT", "lower_key"]), values), max_size=5))
def test_env_file_settings_or_config_error(tmp_path, lines):
    path = tmp_path / "x.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in lines), encoding="utf-8", errors="surrogatepass")
    with contextlib.suppress(ConfigError):
        load_settings(path, environ={"AI_ENGINE_HOME": str(tmp_path)})


# -- the CLI through its real entry point --------------------------------------------------------
WORDS = ["governor", "status", "kill", "release", "models", "list", "stage", "activate", "rollback", "rebalance",
         "shadow", "verify", "analyze", "--json", "--hours", "--model", "--env-file", "none", "--store", "--reason",
         "--force", "--mode", "LIVE", "PAPER", "HALT", "patchtst", "xgb", "nosuch", "-1", "0", "1e9", "nan",
         "/nonexistent/x.pth", "xgb=50,lgbm=50", "--percent", "--", "", "☃", "--help"]
COMMANDS = [["governor", "status"], ["governor", "kill"], ["governor", "release"], ["models", "list"],
            ["models", "stage"], ["models", "activate"], ["models", "rollback"], ["models", "rebalance"],
            ["analyze"], ["status"]]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli_home")
    return {"AI_ENGINE_HOME": str(home), "AI_ENGINE_ENV_FILE": ""}


@settings(max_examples=80, deadline=None)
@given(cmd=st.sampled_from(COMMANDS), args=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=5))
def test_cli_never_tracebacks(cli_env, cmd, args):
    """Over the Typer app: click usage errors exit 2 with a message; our own errors are
    AIEngineErrors, which ``main()`` prints as one ``error: ...`` line with an exit code."""
    from ai_engine.cli.main import app

    argv = [*cmd, *args, "--env-file", "none"]
    result = CliRunner().invoke(app, argv, env=cli_env)
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit | AIEngineError), f"{argv}: {type(exc).__name__}: {exc}"
    if isinstance(exc, AIEngineError):
        assert str(exc)
    elif result.exit_code != 0:
        assert result.output.strip(), f"exit {result.exit_code} without a message for {argv}"


def test_usage_errors_through_the_entry_point_are_one_clear_line(cli_env, capsys):
    from ai_engine.cli.main import main

    assert main(["nosuch-command"]) == 2
    assert "No such command" in capsys.readouterr().err


# -- telemetry readers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_store(models, tmp_path_factory):
    from ai_engine.data import synthetic_market
    from ai_engine.replay import replay_series
    from ai_engine.runtime import open_engine
    from tests.reliability.conftest import settings_for

    home = tmp_path_factory.mktemp("reader_home")
    settings = settings_for(home, models, PATCHTST_SHADOW_ONLY="true", ENSEMBLE_MIN_CONSENSUS="2")
    engine = open_engine(settings, wait_for_shadow=True)
    replay_series(engine, synthetic_market(["BTCUSDT", "ETHUSDT"], "1h", 300, seed=4))
    engine.close()
    engine.store.close()
    return settings.store_path


COLUMNS = {
    "predictions": ["role", "status", "action", "confidence", "prob", "p_buy", "weight", "version", "candle_open_time",
                    "model", "latency_ms"],
    "decisions": ["action", "confidence", "consensus_count", "candle_open_time", "config_id", "payload", "symbol",
                  "published", "entry_price"],
    "candles": ["close", "high", "open_time", "volume", "interval"],
    "configs": ["payload", "config_id"],
}
junk = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=10),
                 st.binary(max_size=6), st.sampled_from(["BUY", "buy", "shadow", "ok", "{}", "[", "1e400"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(COLUMNS)), st.data()), min_size=1, max_size=4))
def test_analysis_over_malformed_rows_reports_or_refuses_clearly(good_store, tmp_path, edits):
    from ai_engine.analysis.analyze import analyze

    path = tmp_path / f"{uuid.uuid4().hex}.sqlite"
    shutil.copyfile(good_store, path)
    db = sqlite3.connect(path)
    for table, data in edits:
        col = data.draw(st.sampled_from(COLUMNS[table]))
        value = data.draw(junk)
        frac = data.draw(st.sampled_from([1, 3, 50]))
        db.execute(f"UPDATE OR IGNORE {table} SET {col}=? WHERE abs(random()) % ? = 0", (value, frac))
    db.commit()
    db.close()
    try:
        analyze(path, hours=1e6)
    except AIEngineError as exc:
        assert str(exc)
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture
def stream_prefix():
    with redis_prefix("test:rel") as url_prefix:
        yield url_prefix


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["payload", "event_id", "x", ""]), st.one_of(st.text(max_size=20), st.binary(max_size=20)), max_size=3),
    st.builds(lambda d: {"payload": json.dumps(d)}, st.dictionaries(st.sampled_from(
        ["event_id", "symbol", "interval", "candle_open_time", "decided_at", "action", "confidence", "model_breakdown"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.none(), max_size=2)), max_size=8)),
), min_size=1, max_size=8), n_good=st.integers(0, 3))
def test_materialize_from_redis_keeps_every_readable_entry(good_store, stream_prefix, tmp_path, entries, n_good):
    from ai_engine.telemetry.redis_reader import materialize_from_redis
    from ai_engine.telemetry.redis_streams import stream_key

    url, base = stream_prefix
    prefix = f"{base}:{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(url)
    with sqlite3.connect(good_store) as db:
        good = [p for (p,) in db.execute("SELECT payload FROM decisions ORDER BY rowid LIMIT ?", (n_good,))]
    key = stream_key(prefix, "ai.decision")
    for i in range(max(len(entries), len(good))):  # junk and good entries interleaved
        if i < len(entries):
            client.xadd(key, entries[i] or {"empty": ""})
        if i < len(good):
            client.xadd(key, {"payload": good[i], "event_id": json.loads(good[i])["event_id"]})
    dest = tmp_path / f"{uuid.uuid4().hex}.sqlite"
    try:
        copy = materialize_from_redis(url, prefix, dest)
    except DataError as exc:
        assert not good and "holds no readable decision" in str(exc)
        return
    assert copy.read + sum(copy.skipped.values()) == len(entries) + len(good)  # every entry read or counted
    with sqlite3.connect(dest) as db:
        got = {r[0] for r in db.execute("SELECT event_id FROM decisions")}
    assert {json.loads(p)["event_id"] for p in good} <= got
