"""`ai-engine analyze` and the ops wrapper: output formats, exit codes and bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ai_engine.cli.analyze_commands import register
from ai_engine.telemetry import TelemetryStore

REPO = Path(__file__).resolve().parents[2]
HOURS = str(24 * 365)
READY_LINE = "✅ READY FOR ACTIVATION (≥3/4 gates passed)"
NOT_READY_LINE = "❌ NOT READY (need ≥3/4 gates)"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command("noop")  # a second command, so `analyze` is a subcommand as in the main CLI
    def _noop() -> None: ...

    return a


def run(app, *args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def last_line(text: str) -> str:
    """The spec's verdict line: the last line of the spec's report, before the edge sections."""
    return text.split("\n── Edge:")[0].rstrip().splitlines()[-1]


def test_exit_codes_follow_the_verdict(app, make_store):
    ready = run(app, "--hours", HOURS, "--store", make_store(shadow="copy"))
    assert ready.exit_code == 0, ready.output
    assert last_line(ready.stdout) == READY_LINE
    flat = run(app, "--hours", HOURS, "--store", make_store(shadow="flat"))
    assert flat.exit_code == 1 and last_line(flat.stdout) == NOT_READY_LINE
    short = run(app, "--hours", "5", "--store", make_store(n=50))
    assert short.exit_code == 3 and last_line(short.stdout).startswith("⏳ INCONCLUSIVE")


def test_a_copy_of_the_ensemble_is_ready_by_the_gates_but_never_recommended(app, make_store):
    """The spec's gates pass a model that only repeats the ensemble (they measure similarity); the
    edge sees that it forecasts worse than the class prior and recommends keeping it in shadow."""
    d = json.loads(run(app, "--hours", HOURS, "--store", make_store(shadow="copy"), "--json").stdout)
    assert d["verdict"] == "READY"
    assert d["edge"]["verdict"] == "WORSE"
    assert d["recommendation"]["option"] == "C"


def test_gate_lines_are_greppable_as_in_the_spec(app, make_store):
    out = run(app, "--hours", HOURS, "--store", make_store()).stdout
    for needle in ("Action Diversity", "Stddev", "Agreement Rate", "Calibration"):
        gate = [line for line in out.splitlines() if needle in line and line.startswith("Gate")]
        assert gate and any(s in gate[0] for s in ("PASS", "FAIL", "INCONCLUSIVE")), needle
    for section in ("Action Distribution", "Confidence Statistics", "Shadow vs Ensemble", "Calibration", "Progress vs plan"):
        assert section in out


def test_json_has_the_documented_keys(app, make_store):
    res = run(app, "--hours", HOURS, "--store", make_store(), "--json", "--compare", "lgbm")
    d = json.loads(res.stdout)
    for key in ("window", "n_decisions", "n_shadow", "n_scored", "gates", "gates_passed", "verdict",
                "action_distribution", "confidence", "agreement", "calibration", "models"):
        assert key in d, key
    assert set(d["gates"]) == {"action_diversity", "confidence_spread", "shadow_correlation", "calibration"}
    for g in d["gates"].values():
        assert {"value", "threshold", "status"} <= set(g)
    assert d["verdict"] in ("READY", "NOT_READY", "INCONCLUSIVE")
    assert set(d["models"]) == {"patchtst", "lgbm"} and d["compare"] == "lgbm"
    assert res.exit_code == {"READY": 0, "NOT_READY": 1, "INCONCLUSIVE": 3}[d["verdict"]]


def test_html_report_is_self_contained(app, make_store, tmp_path):
    out = tmp_path / "report.html"
    res = run(app, "--hours", HOURS, "--store", make_store(n=400), "--html", out, "--compare", "lgbm")
    assert res.exit_code in (0, 1, 3), res.output
    text = out.read_text()
    # reliability, histogram, action shares, agreement; then equity with drawdown, paired difference
    assert text.count('<img src="data:image/png;base64,') == 6
    assert 'alt="Equity curves and drawdown"' in text and 'alt="Cumulative paired difference"' in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_store_from_env_file(app, make_store, tmp_path):
    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_STORE={make_store(n=50)}\n")
    res = run(app, "--hours", "5", "--env-file", env)
    assert res.exit_code == 3 and "Window:" in res.stdout


def test_missing_store_is_a_clear_error(app, tmp_path):
    res = run(app, "--hours", "2", "--store", tmp_path / "nope.sqlite")
    assert res.exit_code == 2
    assert "nope.sqlite does not exist" in res.stderr and "Traceback" not in res.output


def test_empty_store_is_a_clear_error(app, tmp_path):
    path = tmp_path / "empty.sqlite"
    TelemetryStore(path).close()
    res = run(app, "--hours", "2", "--store", path)
    assert res.exit_code == 2 and "holds no decisions" in res.stderr


def test_not_a_database_is_a_clear_error(app, tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    res = run(app, "--hours", "2", "--store", path)
    assert res.exit_code == 2 and "cannot be opened" in res.stderr


def test_window_without_shadow_data_is_inconclusive(app, make_store):
    res = run(app, "--hours", HOURS, "--store", make_store(n=50), "--model", "nhits")
    assert res.exit_code == 3
    assert "no predictions of model 'nhits'" in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["--hours", "-1"], "--hours"),
    (["--hours", "2", "--until", "not-a-time"], "--until"),
    (["--hours", "2", "--band", "0"], "--band"),
    (["--hours", "2", "--min-agreement", "1.5"], "min_agreement"),
])
def test_bad_flags_exit_2_with_the_flag_named(app, make_store, args, needle):
    res = run(app, *args, "--store", make_store(n=20))
    assert res.exit_code == 2 and needle in res.stderr and "Traceback" not in res.output


def test_malformed_rows_are_counted_by_reason(app, make_store):
    path = make_store(n=200)
    db = sqlite3.connect(path)
    rows = db.execute("SELECT event_id FROM predictions WHERE model='patchtst' ORDER BY candle_open_time LIMIT 6").fetchall()
    ids = [r[0] for r in rows]
    db.execute("UPDATE predictions SET action=NULL WHERE model='patchtst' AND event_id=?", (ids[0],))
    db.execute("UPDATE predictions SET confidence=1.3 WHERE model='patchtst' AND event_id=?", (ids[1],))
    db.execute("UPDATE predictions SET action='buy' WHERE model='patchtst' AND event_id IN (?, ?)", ids[2:4])
    db.execute("UPDATE predictions SET status='error', action=NULL, confidence=NULL WHERE model='patchtst' AND event_id=?",
               (ids[4],))
    db.execute("UPDATE predictions SET status='inactive', action=NULL WHERE model='patchtst' AND event_id=?", (ids[5],))
    db.commit()
    db.close()
    d = json.loads(run(app, "--hours", HOURS, "--store", path, "--json").stdout)
    assert d["skipped"] == {"status error": 1, "status inactive": 1, "action is NULL": 1,
                            "unknown action string": 2, "confidence outside [0, 1]": 1}
    assert d["unknown_actions"] == {"buy": 2}
    assert d["n_shadow"] == 194 and d["n_rows"] == 200
    text = run(app, "--hours", HOURS, "--store", path).stdout
    assert "status error" in text and "'buy'×2" in text and "confidence outside [0, 1]" in text


def test_wrapper_script_prints_what_the_command_prints(app, make_store):
    path = make_store(n=300)
    args = ["--hours", HOURS, "--store", str(path), "--compare", "lgbm"]
    cmd = run(app, *args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AI_ENGINE_")}
    proc = subprocess.run([sys.executable, str(REPO / "ops/analysis/analyze_shadow_metrics.py"), *args],
                          capture_output=True, text=True, cwd="/", env=env, timeout=120)
    assert proc.stdout == cmd.stdout
    assert proc.returncode == cmd.exit_code


@pytest.mark.parametrize("junk", [1e400, 2**63 - 1, -(2**63), "2026", 1.5e12])
def test_a_junk_candle_time_opens_no_window(app, make_store, junk):
    """A store edited by hand: the window still ends at the newest real candle time, with no
    numpy warning (an infinite or int64-extreme time used to give a window of NaN edges)."""
    path = make_store(n=200)
    db = sqlite3.connect(path)
    newest = db.execute("SELECT MAX(candle_open_time) FROM decisions").fetchone()[0]
    db.execute("UPDATE decisions SET candle_open_time=? WHERE candle_open_time=(SELECT MIN(candle_open_time) "
               "FROM decisions)", (junk,))
    db.commit()
    db.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run(app, "--hours", HOURS, "--store", path, "--json")
    assert res.exit_code in (0, 1, 3), res.output
    assert json.loads(res.stdout)["window"]["end_ms"] == newest


@pytest.mark.parametrize("args,needle", [
    (["--until", "99999999999999999999"], "--until"),  # beyond any time the store can hold
    (["--until", "1500-01-01"], "--until"),
])
def test_until_out_of_range_is_refused_naming_the_flag(app, make_store, args, needle):
    res = run(app, "--hours", "2", *args, "--store", make_store(n=20))
    assert res.exit_code == 2 and needle in res.stderr and "out of range" in res.stderr and "Traceback" not in res.output


def test_hours_longer_than_the_epoch_take_everything(app, make_store):
    res = run(app, "--hours", "1e300", "--store", make_store(n=50), "--json")
    d = json.loads(res.stdout)
    assert d["window"]["start_ms"] == -1 and d["n_rows"] == 50
