"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium), served by the real ``ai-engine dashboard`` over a real store.

Writes a 1280x800 screenshot to the test's tmp dir, and also to ``$DASHBOARD_SCREENSHOT`` when
set (how docs/dashboard.png is made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ai_engine.enums import GovernorMode
from ai_engine.governor import FileGovernorBackend, GovernorState
from tests.dashboard.conftest import XSS, config_payload, make_record, needs_chromium

pytestmark = needs_chromium


@pytest.fixture
def dashboard(dash_store):
    """``ai-engine dashboard`` on a free loopback port; yields its URL."""
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "ai_engine.cli.main", "dashboard", "--store", str(dash_store.store),
                             "--env-file", str(dash_store.env_file), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert m, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield m.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_page(driver, cond, what: str, timeout: float = 10.0):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            got = cond(driver)
            if got:
                return got
        except Exception as exc:  # the element may be replaced between two polls
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


def role_shown(driver, model: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#models tr[data-model="{model}"] td:nth-child(2)').text


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_dashboard_in_chromium(dashboard, browser, dash_store, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(dashboard)
    wait_page(browser, lambda d: role_shown(d, "patchtst") == "shadow", "patchtst's role")
    assert [role_shown(browser, m) for m in ("xgb", "lgbm", "nhits")] == ["voter"] * 3
    wait_page(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#decisions tbody tr"), "the recent decisions")

    # A symbol, a reason and an error containing <script> are shown as text, never run or parsed.
    cells = browser.find_elements(By.CSS_SELECTOR, "#decisions tbody td")
    assert any(c.text == XSS for c in cells)
    assert any(c.text == f"reason {XSS}" for c in cells)
    assert XSS in browser.find_element(By.ID, "latency").text
    assert XSS in browser.find_element(By.ID, "blocked-reasons").text
    wait_page(browser, lambda d: "[SHADOW] PatchTST | " + XSS in d.find_element(By.ID, "shadow").text, "the shadow lines")
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1  # app.js alone
    assert browser.execute_script("return typeof window.alert_ran") == "undefined"
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-consensus rect")  # the SVG charts are drawn
    # the shadow analysis, computed in the background by the command, shows its gates and verdict
    text = 'return document.getElementById("analysis").textContent'
    wait_page(browser, lambda d: "patchtst: ⏳ INCONCLUSIVE" in d.execute_script(text), "the shadow analysis", timeout=30)
    assert "Action Diversity" in browser.execute_script(text) and "edge: " in browser.execute_script(text)

    # Data changes without a reload: a new decision and a new configuration written to the store.
    browser.execute_script("window.__no_reload = 42;")
    w = dash_store.writer()
    w.record_decisions([make_record("SOLUSDT", 900, k=0)])
    w.record_config("cfg-dash-2", "reload", config_payload({"patchtst": "voter"}))
    w.close()
    wait_page(browser, lambda d: role_shown(d, "patchtst") == "voter", "the new role without a reload", timeout=5)
    wait_page(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#decisions tbody tr td:nth-child(2)").text == "SOLUSDT",
          "the new decision without a reload", timeout=5)
    assert browser.execute_script("return window.__no_reload") == 42
    # The policy run's state shows as it changes (its last words escaped like every stored value).
    (dash_store.home / "policy.json").write_text(json.dumps(
        {"model": "patchtst", "sha256": "cd" * 32, "stage": "option_b", "paused": False, "started_ms": 1,
         "stage_since_ms": 1_700_000_000_000, "store_bytes": 0, "said": f"promote: {XSS}"}))
    wait_page(browser, lambda d: "option_b" in d.find_element(By.ID, "policy").text, "the policy stage", timeout=5)
    assert f"promote: {XSS}" in browser.find_element(By.ID, "policy").text
    assert browser.execute_script("return typeof window.alert_ran") == "undefined"

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert _png_size(shot) == (1280, 800)
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])

    # The kill switch shows within a second or two.
    FileGovernorBackend(dash_store.home / "governor.json").write(
        GovernorState.new(True, GovernorMode.HALT, "incident <img src=x onerror=alert(1)>"))
    t0 = time.monotonic()
    wait_page(browser, lambda d: "KILL SWITCH ON" in d.find_element(By.ID, "governor").text, "the kill switch", timeout=5)
    assert time.monotonic() - t0 < 3.5
    assert "<img src=x onerror=alert(1)>" in browser.find_element(By.ID, "governor").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#governor img")

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors


def test_shadow_analysis_panel_in_chromium(browser, tmp_path):
    """Over a store with a market the analysis can score: gates, verdicts and the equity curves."""
    from selenium.webdriver.common.by import By

    from ai_engine.dashboard import AnalysisJob, DashboardData, DashboardServer
    from tests.analysis.conftest import build_store

    store = build_store(tmp_path / "s.sqlite", n=600, history=200, tail=10)
    job = AnalysisJob(store, hours=24 * 30)
    job.run_once()
    data = DashboardData(store)
    srv = DashboardServer(data, port=0, analysis=job).start()
    try:
        browser.get(srv.url)
        panel = '#analysis [data-model="patchtst"]'
        wait_page(browser, lambda d: d.find_elements(By.CSS_SELECTOR, panel + " polyline.curve"), "the equity curves")
        assert len(browser.find_elements(By.CSS_SELECTOR, panel + " polyline.curve")) == 4
        text = browser.execute_script(f"return document.querySelector('{panel}').textContent")
        assert "Calibration" in text and "option A" in text and "recommendation: option" in text
        browser.execute_script(f"document.querySelector('{panel}').scrollIntoView()")
        browser.save_screenshot(str(tmp_path / "analysis.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
    finally:
        srv.close()
        data.close()
