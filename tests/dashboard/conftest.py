"""A real telemetry store for the dashboard: decisions written through ``TelemetryStore``'s own API
(four models, one in shadow, an error, a late shadow, blocked decisions with their reasons), the
configuration record the engine writes, an env file, a governor state file and an audit log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai_engine.enums import CLASS_ORDER, Action, GovernorMode, ModelRole, ModelStatus
from ai_engine.governor import FileGovernorBackend, GovernorState
from ai_engine.lifecycle.audit import append_audit
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import (
    INTERVAL_MS,
    DecisionRecord,
    EnsembleDecision,
    ModelResult,
    Prediction,
    event_id_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): "
           "apt-get install -y chromium chromium-driver",
)

IV = "1h"
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
CONFIG_ID = "cfg-dash-1"
XSS = "<script>alert(1)</script>"
MODELS = (("xgb", ModelRole.VOTER, 25.0), ("lgbm", ModelRole.VOTER, 25.0), ("nhits", ModelRole.VOTER, 30.0),
          ("patchtst", ModelRole.SHADOW, 20.0))
SHA = {"xgb": "a1" * 32, "lgbm": "b2" * 32, "nhits": "c3" * 32, "patchtst": "d4" * 32}


def _probs(k: int, c: float) -> tuple[float, float, float]:
    p = [(1 - c) / 2] * 3
    p[k] = c
    return tuple(p)  # type: ignore[return-value]


def make_record(symbol: str, i: int, *, k: int = 2, published: bool | None = None, blocked: str | None = None,
                error_model: str | None = None, latency: float = 2.0) -> DecisionRecord:
    """Decision number ``i`` on ``symbol``: the voters agree on class ``k`` (0 SELL, 1 HOLD, 2 BUY)."""
    t = T0 + i * INTERVAL_MS[IV]
    results = []
    for name, role, weight in MODELS:
        if name == error_model:
            results.append(ModelResult(name, role, ModelStatus.ERROR, weight, "v1", SHA[name], None, 1.0,
                                       f"ValueError: {XSS} in {name}"))
            continue
        results.append(ModelResult(name, role, ModelStatus.OK, weight, "v1", SHA[name],
                                   Prediction.from_probs(_probs(k if role is ModelRole.VOTER else (k + 1) % 3, 0.6)),
                                   latency * (1 + len(results)) + (i % 10) * 0.1, None))
    voters = sum(1 for r in results if r.votes)
    action = CLASS_ORDER[k]
    actionable = action is not Action.HOLD and voters >= 3
    if published is None:
        published = actionable and blocked is None
    d = EnsembleDecision(action, 0.6, voters, voters, actionable, False, _probs(k, 0.6), tuple(results))
    return DecisionRecord(
        event_id=event_id_for("decision", symbol, IV, t), symbol=symbol, interval=IV, candle_open_time=t,
        decided_at=int(time.time() * 1000) - (200 - i) * 1000, entry_price=30_000.0 + i, decision=d,
        published=published, blocked_reason=blocked if actionable and not published else None,
        config_id=CONFIG_ID, decision_latency_ms=3.0 + (i % 7),
        intent_event_id=event_id_for("intent", symbol, IV, t) if published else None,
    )


def config_payload(roles: dict[str, str] | None = None) -> dict:
    roles = roles or {}
    return {"models": {name: {"role": roles.get(name, role.value), "weight": w, "status": "active", "reason": None,
                              "path": f"/models/{name}.bin", "version": "v1", "sha256": SHA[name],
                              "label_config": None} for name, role, w in MODELS},
            "min_consensus": 3, "confidence_boost": 1.15, "confidence_cap": 0.95}


@dataclass
class DashStore:
    home: Path
    store: Path
    env_file: Path

    def writer(self) -> TelemetryStore:
        return TelemetryStore(self.store)


def build(home: Path, n: int = 120) -> DashStore:
    home.mkdir(parents=True, exist_ok=True)
    store_path = home / "telemetry.sqlite"
    store = TelemetryStore(store_path)
    store.record_config(CONFIG_ID, "start", config_payload())
    recs = []
    for i in range(n):
        k = (0, 1, 2)[i % 3]
        blocked = "governor: kill switch on" if i % 10 == 0 else ("mode HALT <b>bold</b>" if i % 10 == 3 else None)
        recs.append(make_record("BTCUSDT", i, k=k, blocked=blocked, error_model="lgbm" if i % 25 == 7 else None))
    recs.append(make_record(XSS, n, k=2, blocked=f"reason {XSS}"))
    store.record_decisions(recs)
    store.close()
    env = home / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={home}\nAI_ENGINE_SYMBOLS=BTCUSDT\nPATCHTST_ROLE=shadow\n"
                   f"GOVERNOR_BACKEND=file\n", encoding="utf-8")
    FileGovernorBackend(home / "governor.json").write(GovernorState.new(False, GovernorMode.PAPER, "dashboard test"))
    append_audit(home, "models activate", before={"patchtst": "voter"}, after={"patchtst": XSS}, reason="test")
    return DashStore(home, store_path, env)


@pytest.fixture
def dash_store(tmp_path) -> DashStore:
    return build(tmp_path / "home")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    # The viewport itself 1280x800 (the window size counts the browser's own frame).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()
