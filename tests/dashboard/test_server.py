"""The dashboard's endpoints over a real store, and its safety: read-only, token, headers, caps."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ai_engine.dashboard import CSP, DashboardData, DashboardServer
from ai_engine.exceptions import ConfigError
from tests.dashboard.conftest import CONFIG_ID, XSS, config_payload, make_record


@pytest.fixture
def server(dash_store):
    data = DashboardData(dash_store.store, dash_store.env_file)
    srv = DashboardServer(data, port=0).start()
    yield srv
    srv.close()
    data.close()


def get(url: str, headers: dict | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback test server)
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def api(server, path: str) -> dict:
    code, _, body = get(server.url.rstrip("/") + path)
    assert code == 200, body
    return json.loads(body)


def test_models_from_the_recorded_configuration_and_the_env_file(server):
    doc = api(server, "/api/models")
    assert doc["config_id"] == CONFIG_ID and doc["env_error"] is None
    by = {m["model"]: m for m in doc["models"]}
    assert set(by) == {"xgb", "lgbm", "nhits", "patchtst"}
    assert by["patchtst"]["role"] == "shadow" and by["patchtst"]["env_role"] == "shadow"
    assert by["nhits"]["weight"] == 30 and by["xgb"]["sha256"] == "a1" * 32 and by["xgb"]["version"] == "v1"


def test_summary_counts_match_the_store(server, dash_store):
    import sqlite3

    doc = api(server, "/api/summary")
    db = sqlite3.connect(dash_store.store)
    n, actionable, published = db.execute("SELECT COUNT(*), SUM(actionable), SUM(published) FROM decisions").fetchone()
    assert (doc["window"], doc["actionable"], doc["published"]) == (n, actionable, published)
    assert doc["blocked"] == actionable - published == sum(doc["blocked_reasons"].values())
    assert doc["blocked_reasons"][f"reason {XSS}"] == 1
    assert sum(doc["consensus"].values()) == n and doc["consensus"]["2"] > 0  # lgbm's errors leave two voters
    assert sum(d["count"] for d in doc["decisions_per_minute"]) == n


def test_latency_and_errors_per_model(server):
    by = {m["model"]: m for m in api(server, "/api/latency")["models"]}
    assert by["lgbm"]["errors"] == 5 and XSS in by["lgbm"]["last_error"]
    assert by["xgb"]["errors"] == 0 and 2.0 <= by["xgb"]["p50_ms"] <= by["xgb"]["p99_ms"] <= 2.9 and by["patchtst"]["role"] == "shadow"


def test_recent_decisions_carry_their_breakdown(server):
    doc = api(server, "/api/decisions?limit=3")
    assert len(doc["decisions"]) == 3 and doc["decisions"][0]["symbol"] == XSS
    assert doc["decisions"][0]["model_breakdown"]["patchtst"]["shadow"] is True
    assert api(server, "/api/decisions?limit=100000")["limit"] == 200
    assert get(server.url + "api/decisions?limit=x")[0] == 400


def test_governor_and_audit(server):
    g = api(server, "/api/governor")
    assert g["available"] and g["kill"] is False and g["mode"] == "PAPER" and g["reason"] == "dashboard test"
    a = api(server, "/api/audit")
    assert a["entries"][0]["what"] == "models activate" and a["entries"][0]["after"] == {"patchtst": XSS}


def test_new_decisions_and_configurations_show_on_the_next_read(server, dash_store):
    w = dash_store.writer()
    w.record_decisions([make_record("SOLUSDT", 500, k=0)])
    w.record_config("cfg-dash-2", "reload", config_payload({"patchtst": "voter"}))
    w.close()
    assert api(server, "/api/decisions?limit=1")["decisions"][0]["symbol"] == "SOLUSDT"
    doc = api(server, "/api/models")
    assert doc["config_id"] == "cfg-dash-2" and {m["model"]: m["role"] for m in doc["models"]}["patchtst"] == "voter"


def test_clients_within_the_cache_interval_share_one_read(dash_store):
    """Ten open pages cost the engine's store one read per interval; the governor is never stale."""
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import FileGovernorBackend, GovernorState

    data = DashboardData(dash_store.store, dash_store.env_file)
    srv = DashboardServer(data, port=0, cache_s=60.0).start()
    fresh = DashboardServer(data, port=0, cache_s=0).start()
    try:
        before = api(srv, "/api/summary")["window"]
        w = dash_store.writer()
        w.record_decisions([make_record("SOLUSDT", 900, k=0)])
        w.close()
        assert api(srv, "/api/summary")["window"] == before  # the shared answer
        assert api(fresh, "/api/summary")["window"] == before + 1  # cache_s=0 reads every time
        FileGovernorBackend(dash_store.store.parent / "governor.json").write(
            GovernorState.new(True, GovernorMode.PAPER, "operator stop"))
        assert api(srv, "/api/governor")["kill"] is True
    finally:
        srv.close()
        fresh.close()
        data.close()


def test_concurrent_requests_wait_for_one_computation():
    import threading

    from ai_engine.dashboard.server import _SharedReads

    shared, calls, gate = _SharedReads(ttl_s=60.0), [], threading.Event()

    def compute() -> dict:
        calls.append(1)
        gate.wait(5)
        return {"n": len(calls)}

    out: list[dict] = []
    threads = [threading.Thread(target=lambda: out.append(shared.get(("summary",), compute))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # every thread is now waiting on the first one's read
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1 and out == [{"n": 1}] * 8
    with pytest.raises(ZeroDivisionError):  # a failed read is not kept
        shared.get(("bad",), lambda: 1 / 0)
    assert shared.get(("bad",), lambda: {"ok": True}) == {"ok": True}


def test_governor_in_redis_as_the_engine_reads_it(dash_store):
    """GOVERNOR_BACKEND=redis: the page shows the Redis keys the engine obeys; a Redis that cannot
    be reached is shown as unavailable (the engine blocks then), never as a stale 'off'."""
    from ai_engine.enums import GovernorMode
    from ai_engine.governor import GovernorState
    from ai_engine.telemetry.redis_governor import RedisGovernorBackend
    from tests.helpers import free_port, redis_prefix

    with redis_prefix("dash") as (url, prefix):
        env = dash_store.env_file
        base = env.read_text().replace("GOVERNOR_BACKEND=file\n", "")
        env.write_text(base + f"GOVERNOR_BACKEND=redis\nREDIS_URL={url}\nAI_ENGINE_REDIS_PREFIX={prefix}\n")
        data = DashboardData(dash_store.store, env)
        srv = DashboardServer(data, port=0).start()
        try:
            assert api(srv, "/api/governor")["available"] is False  # no keys yet: the engine blocks
            RedisGovernorBackend(url, prefix).write(GovernorState.new(True, GovernorMode.HALT, "ops: exchange down"))
            g = api(srv, "/api/governor")
            assert (g["available"], g["kill"], g["mode"], g["reason"]) == (True, True, "HALT", "ops: exchange down")
            assert prefix in g["source"]
            env.write_text(base + f"GOVERNOR_BACKEND=redis\nREDIS_URL=redis://127.0.0.1:{free_port()}/0\n"
                           f"AI_ENGINE_REDIS_PREFIX={prefix}\n")
            time.sleep(0.05)  # a new mtime for the env file's cache
            g = api(srv, "/api/governor")
            assert g["available"] is False and "unreachable" in g["error"]
        finally:
            srv.close()
            data.close()


def test_policy_settings_and_run_state(dash_store):
    """/api/policy: what the env file sets and where the run stands, as `ai-engine policy status`."""
    from ai_engine.dashboard.data import POLICY_STATE_FILE
    from ai_engine.lifecycle.policy import STATE_FILE_NAME

    assert POLICY_STATE_FILE == STATE_FILE_NAME
    env = dash_store.env_file
    off = DashboardData(dash_store.store, env)
    assert off.policy()["mode"] == "off" and off.policy()["state"] is None
    off.close()
    env.write_text(env.read_text() + "AI_ENGINE_POLICY=dry-run\nAI_ENGINE_POLICY_SHADOW_HOURS=48\n")
    state = {"model": "patchtst", "sha256": "ab" * 32, "stage": "shadow", "paused": True, "started_ms": 1,
             "stage_since_ms": 1_700_000_000_000, "store_bytes": 0, "said": f"wait: {XSS}"}
    (dash_store.home / STATE_FILE_NAME).write_text(json.dumps(state))
    data = DashboardData(dash_store.store, env)
    srv = DashboardServer(data, port=0).start()
    try:
        doc = api(srv, "/api/policy")
        assert doc["mode"] == "dry-run" and doc["config"]["shadow_hours"] == 48 and doc["config"]["model"] == "patchtst"
        assert doc["state"] == state and doc["error"] is None
        (dash_store.home / STATE_FILE_NAME).write_text("{not json")
        time.sleep(1.1)  # past the shared-read interval
        doc = api(srv, "/api/policy")
        assert doc["state"] is None and "unreadable" in doc["error"]
    finally:
        srv.close()
        data.close()
    bare = DashboardData(dash_store.store)  # no env file: the settings are unknown, the state beside the store
    assert bare.policy()["mode"] is None
    bare.close()


def test_page_and_assets_with_strict_headers(server):
    for path, ctype in (("", "text/html"), ("app.js", "text/javascript"), ("app.css", "text/css"),
                        ("api/summary", "application/json")):
        code, headers, body = get(server.url + path)
        assert code == 200 and headers["Content-Type"].startswith(ctype) and body
        assert headers["Content-Security-Policy"] == CSP and "default-src 'self'" in CSP
        assert "unsafe-inline" not in CSP and headers["X-Content-Type-Options"] == "nosniff"
    html = get(server.url)[2].decode()
    assert "<script src=\"app.js\"" in html and "<script>" not in html and " style=" not in html
    assert "http://" not in html and "https://" not in html  # nothing from outside


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_anything_but_get_and_head_is_405(server, method):
    code, headers, body = get(server.url + "api/summary", method=method)
    assert code == 405 and headers["Allow"] == "GET, HEAD" and b"read-only" in body


def test_head_has_headers_and_no_body(server):
    code, headers, body = get(server.url + "api/models", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_unknown_path_is_404(server):
    assert get(server.url + "etc/passwd")[0] == 404
    assert get(server.url + "../pyproject.toml")[0] == 404


def test_non_loopback_without_token_is_refused(dash_store):
    data = DashboardData(dash_store.store)
    try:
        with pytest.raises(ConfigError, match="DASHBOARD_TOKEN"):
            DashboardServer(data, host="0.0.0.0", port=0)
    finally:
        data.close()


def test_cli_refuses_non_loopback_without_token(dash_store, monkeypatch):
    env = {k: v for k, v in __import__("os").environ.items() if k != "DASHBOARD_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "dashboard", "--store", str(dash_store.store),
                           "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing") and "DASHBOARD_TOKEN" in lines[0]


def test_token_required_compared_and_never_logged(dash_store, caplog):
    token = "s3cret-t0ken"
    data = DashboardData(dash_store.store)
    srv = DashboardServer(data, host="0.0.0.0", port=0, token=token).start()
    base = f"http://127.0.0.1:{srv.port}/"
    try:
        with caplog.at_level(logging.DEBUG, logger="ai_engine.dashboard"):
            assert get(base + "api/summary")[0] == 401
            assert get(base + "api/summary?token=wrong")[0] == 401
            assert get(base + "api/summary", {"Authorization": "Bearer wrong"})[0] == 401
            assert get(base + "api/summary", {"Authorization": f"Bearer {token}"})[0] == 200
            code, headers, _ = get(base + f"?token={token}")
            assert code == 200 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
            cookie = headers["Set-Cookie"].split(";")[0]
            assert get(base + "app.js", {"Cookie": cookie})[0] == 200  # the page's own requests
            assert get(base + "app.js", {"Cookie": "ai_engine_dashboard=wrong"})[0] == 401
            assert get(base + "nope?token=" + token)[0] == 404
        assert caplog.records and token not in caplog.text
    finally:
        srv.close()
        data.close()


def test_compare_is_constant_time(monkeypatch, dash_store):
    import hmac

    from ai_engine.dashboard import server as server_mod

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(server_mod.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    data = DashboardData(dash_store.store)
    srv = DashboardServer(data, port=0, token="tok").start()
    try:
        assert get(srv.url + "api/models?token=tok")[0] == 200 and calls
    finally:
        srv.close()
        data.close()


def test_slow_clients_do_not_block_the_others(dash_store):
    """Clients that open a connection and send nothing hold a worker for at most the timeout; past
    the connection cap new connections are closed at once; a normal request is still answered."""
    data = DashboardData(dash_store.store)
    srv = DashboardServer(data, port=0, workers=2, max_connections=4, timeout_s=1.0).start()
    idle = []
    try:
        for _ in range(2):  # both workers held by silent clients
            idle.append(socket.create_connection(("127.0.0.1", srv.port)))
        time.sleep(0.1)
        t0 = time.monotonic()
        code, _, _ = get(srv.url + "api/overview")
        assert code == 200 and time.monotonic() - t0 < 4.0  # answered once the silent ones time out
        for _ in range(8):  # far past the cap
            idle.append(socket.create_connection(("127.0.0.1", srv.port)))
        time.sleep(0.3)
        assert srv._server.refused_connections > 0
        for s in idle:
            s.close()
        time.sleep(1.5)
        assert get(srv.url + "api/overview")[0] == 200
    finally:
        for s in idle:
            s.close()
        srv.close()
        data.close()


def test_every_static_file_ships_as_package_data():
    """A non-editable install carries the page: pyproject's package-data covers each static file."""
    import fnmatch
    import tomllib
    from pathlib import Path

    import ai_engine.dashboard as pkg

    root = Path(pkg.__file__).parent
    globs = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = [p.relative_to(root).as_posix() for p in (root / "static").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs["ai_engine.dashboard"]) for f in files)


def test_public_names():
    import ai_engine.dashboard as pkg

    assert sorted(pkg.__all__) == sorted(n for n in vars(pkg) if not n.startswith("_") and n not in
                                         ("annotations", "analysis", "data", "server"))


def test_foreign_host_names_are_refused_without_a_token(server):
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as Host."""
    assert get(server.url + "api/summary", {"Host": "evil.example"})[0] == 403
    assert get(server.url + "api/summary", {"Host": f"evil.example:{server.port}"})[0] == 403
    assert get(server.url + "api/summary", {"Host": f"localhost:{server.port}"})[0] == 200
    assert get(server.url + "api/summary", {"Host": f"[::1]:{server.port}"})[0] == 200


def test_a_trickling_client_is_cut_at_the_deadline(dash_store):
    data = DashboardData(dash_store.store)
    srv = DashboardServer(data, port=0, workers=1, max_connections=4, timeout_s=1.0, deadline_s=1.5).start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port))
        t0 = time.monotonic()
        cut = False
        try:
            for ch in b"GET /api/summary HTTP/1.0\r\nX-Slow: " + b"a" * 40:
                s.sendall(bytes([ch]))  # each byte well within the socket timeout
                time.sleep(0.3)
                if time.monotonic() - t0 > 6:
                    break
        except OSError:
            cut = True
        s.settimeout(2)
        try:
            cut = cut or s.recv(1) == b""
        except OSError:
            cut = True
        s.close()
        assert cut and srv._server.cut_connections >= 1 and time.monotonic() - t0 < 6
        assert get(srv.url + "api/overview")[0] == 200  # the one worker is free again
    finally:
        srv.close()
        data.close()


def test_non_finite_numbers_in_the_store_become_null(dash_store):
    import dataclasses

    w = dash_store.writer()
    w.record_decisions([dataclasses.replace(make_record("NANUSDT", 700), decision_latency_ms=float("nan"))])
    w.close()
    data = DashboardData(dash_store.store)
    srv = DashboardServer(data, port=0).start()

    def strict(path: str) -> dict:
        code, _, body = get(srv.url + path)
        assert code == 200
        return json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in {path}"))

    try:
        assert strict("api/decisions?limit=1")["decisions"][0]["decision_latency_ms"] is None
        strict("api/summary")
    finally:
        srv.close()
        data.close()


def test_flat_lined_models_by_the_engine_rule(dash_store):
    env = dash_store.env_file
    env.write_text(env.read_text() + "FLATLINE_WINDOW=50\nFLATLINE_MIN_STD=0.01\n")
    data = DashboardData(dash_store.store, env)
    try:
        doc = data.latency()
        by = {m["model"]: m for m in doc["models"]}
        assert (doc["flatline_window"], doc["flatline_min_std"]) == (50, 0.01)
        assert by["patchtst"]["flatline"] and by["patchtst"]["confidence_std"] == 0.0  # always 0.6
    finally:
        data.close()
    data = DashboardData(dash_store.store)  # the engine's default window (200) is more than the 121 rows
    try:
        assert not any(m["flatline"] for m in data.latency()["models"])
    finally:
        data.close()


def test_shadow_lines_in_the_log_format(server):
    doc = api(server, "/api/shadow")
    assert [m["model"] for m in doc["models"]] == ["patchtst"]  # the one shadow
    lines = doc["models"][0]["lines"]
    assert len(lines) == 20 and lines[0]["line"].startswith(f"[SHADOW] PatchTST | {XSS} | action=")
    assert lines[0]["line"].endswith("| mode=SHADOW_ONLY") and "conf=0.6000" in lines[0]["line"]


def test_the_dashboard_loads_no_model_library(dash_store):
    """Reading every endpoint imports neither torch nor xgboost nor lightgbm (a light process)."""
    code = ("import sys; from ai_engine.dashboard import DashboardData as D; "
            f"d = D({str(dash_store.store)!r}, {str(dash_store.env_file)!r}); "
            "[getattr(d, n)() for n in ('models', 'governor', 'summary', 'latency', 'shadow', 'decisions', 'audit')]; "
            "print(sorted(m for m in ('torch', 'xgboost', 'lightgbm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("case", ["missing store", "missing env file", "bad port"])
def test_cli_errors_exit_2_without_a_traceback(dash_store, tmp_path, case):
    store = ["--store", str(dash_store.store)]
    args = {"missing store": ["--store", str(tmp_path / "nope.sqlite"), "--port", "0"],
            "missing env file": [*store, "--env-file", str(tmp_path / "nope.env"), "--port", "0"],
            "bad port": [*store, "--port", "70000"]}[case]
    env = {k: v for k, v in __import__("os").environ.items() if k != "DASHBOARD_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "dashboard", *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    if case != "bad port":  # a port out of range gets click's own usage message
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "nope" in lines[0], lines


@pytest.mark.parametrize("value", ["-1", "abc", "nan"])
def test_a_bad_analysis_window_for_serves_dashboard_is_refused_naming_the_key(tmp_path, value):
    from ai_engine.config import load_settings

    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\nAI_ENGINE_DASHBOARD_ANALYSIS_HOURS={value}\n")
    with pytest.raises(ConfigError, match="AI_ENGINE_DASHBOARD_ANALYSIS_HOURS"):
        load_settings(env, environ={})
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\nAI_ENGINE_DASHBOARD_ANALYSIS_HOURS=0\n")
    assert load_settings(env, environ={}).dashboard_analysis_hours == 0.0  # 0: off
