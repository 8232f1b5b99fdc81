"""The dashboard served by a real ``serve`` (real small models, the paced file source) on its own
loopback port, ``AI_ENGINE_DASHBOARD_PORT``: it shows the running service's models and decisions,
and, without a page reload, a role changed by a hot reload, ``models activate`` (with its audit
entry) and the kill switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState
from tests.dashboard.conftest import needs_chromium
from tests.helpers import wait_for
from tests.reliability.conftest import (  # noqa: F401 (models: the shared fixture)
    SERVE,
    SYMBOLS,
    copy_artifact,
    free_port,
    models,
    write_csvs,
)

PREFIX = {"xgb": "XGB", "lgbm": "LGBM", "nhits": "NHITS", "patchtst": "PATCHTST"}


def _api(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:  # noqa: S310
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.fixture
def serving(models, tmp_path):  # noqa: F811 (the fixture imported above)
    """``serve`` with the dashboard on; yields (env file, home, dashboard port, process)."""
    home, port, dash = tmp_path / "home", free_port(), free_port()
    lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}", f"AI_ENGINE_HEALTH_PORT={port}",
             f"AI_ENGINE_DASHBOARD_PORT={dash}", "GOVERNOR_BACKEND=file", "PATCHTST_ROLE=shadow",
             "ENSEMBLE_MIN_CONSENSUS=2"]
    for m, p in PREFIX.items():
        lines.append(f"{p}_MODEL_PATH={copy_artifact(models[m], home / 'models' / models[m].name)}")
    env = tmp_path / "ai-engine.env"
    env.write_text("\n".join(lines) + "\n")
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(False, GovernorMode.PAPER, "test"))
    child_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_", "DASHBOARD_"))}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*SERVE, "--env-file", str(env), "--data", str(write_csvs(tmp_path / "candles", 600)),
                             "--pace", "0.1", "--history", "150"], env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield env, home, dash, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _roles(port: int) -> dict | None:
    doc = _api(port, "/api/models")
    return {m["model"]: m["role"] for m in doc["models"]} if doc and doc["config_id"] else None


def test_serve_serves_the_dashboard_on_its_own_port(serving, models):  # noqa: F811
    env, home, dash, proc = serving
    wait_for(lambda: (s := _api(dash, "/api/summary")) and s["window"] > 5, "decisions on the dashboard", 120)
    assert _roles(dash) == {"xgb": "voter", "lgbm": "voter", "nhits": "voter", "patchtst": "shadow"}
    by = {m["model"]: m for m in _api(dash, "/api/models")["models"]}
    meta = json.loads(Path(f"{models['xgb']}.meta.json").read_text())
    assert by["xgb"]["sha256"] == meta["sha256"] and by["patchtst"]["env_role"] == "shadow"
    lat = {m["model"]: m for m in _api(dash, "/api/latency")["models"]}
    assert set(lat) == set(PREFIX), lat
    assert lat["xgb"]["p50_ms"] is not None and lat["xgb"]["statuses"].get("ok"), lat
    n = _api(dash, "/api/summary")["window"]
    wait_for(lambda: _api(dash, "/api/summary")["window"] > n, "more decisions", 60)
    assert _api(dash, "/api/governor")["mode"] == "PAPER"
    # the shadow analysis runs in the dashboard's process (AI_ENGINE_DASHBOARD_ANALYSIS_HOURS, 24 h)
    a = wait_for(lambda: (d := _api(dash, "/api/analysis")) and d["models"] and d, "the shadow analysis", 120)
    assert a["enabled"] and a["hours"] == 24 and [m["model"] for m in a["models"]] == ["patchtst"]
    assert a["models"][0].get("gates") or a["models"][0]["error"], a
    req = urllib.request.Request(f"http://127.0.0.1:{dash}/api/models", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=2)  # noqa: S310
    assert exc.value.code == 405
    # a hot reload that changes a role: the dashboard shows the configuration now in force
    env.write_text(env.read_text() + "NHITS_ROLE=shadow\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: (r := _roles(dash)) and r["nhits"] == "shadow", "the reloaded role", 60)


@needs_chromium
def test_serve_dashboard_in_chromium(serving, browser, models):  # noqa: F811
    from selenium.webdriver.common.by import By

    from tests.dashboard.test_browser import role_shown, wait_page

    env, home, dash, proc = serving
    wait_for(lambda: _roles(dash), "the service's configuration", 120)
    browser.get(f"http://127.0.0.1:{dash}/")
    wait_page(browser, lambda d: role_shown(d, "patchtst") == "shadow", "patchtst's role", 30)
    assert [role_shown(browser, m) for m in ("xgb", "lgbm", "nhits")] == ["voter"] * 3
    browser.execute_script("window.__no_reload = 7;")
    # the operator's commands on the running service: stage a PatchTST, shadow it, activate it
    for args in (("stage", str(models["patchtst"]), "--model", "patchtst"), ("shadow", "patchtst"),
                 ("activate", "patchtst", "--weight", "20", "--force")):
        res = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "models", *args, "--env-file", str(env)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
    wait_page(browser, lambda d: role_shown(d, "patchtst") == "voter", "the activated role without a reload", 60)
    wait_page(browser, lambda d: "activate" in d.find_element(By.ID, "audit").text, "the audit entry", 10)
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(True, GovernorMode.HALT, "incident"))
    t0 = time.monotonic()
    wait_page(browser, lambda d: "KILL SWITCH ON" in d.find_element(By.ID, "governor").text, "the kill switch", 5)
    assert time.monotonic() - t0 < 3.5
    assert browser.execute_script("return window.__no_reload") == 7
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_serves_dashboard_runs_apart_and_ends_with_it_even_on_sigkill(serving):
    """The dashboard is a process of its own (a client it answers never takes the engine's
    interpreter lock or CPU), at a lower priority, and a serve killed with SIGKILL takes it along."""
    env, home, dash, proc = serving
    wait_for(lambda: _api(dash, "/api/summary") is not None, "the dashboard", 120)
    kids = [c for c in _children(proc.pid) if "\0--child-of\0" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(kids) == 1, kids
    assert int(Path(f"/proc/{kids[0]}/stat").read_text().rsplit(")", 1)[1].split()[16]) >= 10  # nice
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not Path(f"/proc/{kids[0]}").exists() or "Z" in Path(f"/proc/{kids[0]}/stat").read_text().split()[2],
             "the dashboard ended with serve", 20)
    assert _api(dash, "/api/summary") is None


def test_a_taken_dashboard_port_stops_serve_at_start_with_a_clear_error(models, tmp_path):  # noqa: F811
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        home = tmp_path / "home"
        lines = [f"AI_ENGINE_HOME={home}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}", f"AI_ENGINE_DASHBOARD_PORT={port}",
                 "GOVERNOR_BACKEND=file"]
        lines += [f"{p}_MODEL_PATH={copy_artifact(models[m], home / 'models' / models[m].name)}" for m, p in PREFIX.items()]
        env = tmp_path / "ai-engine.env"
        env.write_text("\n".join(lines) + "\n")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
        res = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "serve", "--env-file", str(env), "--data",
                              str(write_csvs(tmp_path / "candles", 600)), "--pace", "0.1"],
                             env=child_env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 2
    assert f"the dashboard on 127.0.0.1:{port} did not start" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
