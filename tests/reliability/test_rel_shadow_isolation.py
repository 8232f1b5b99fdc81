"""Shadow isolation under faults, on real candles: whatever the shadow model does (raise, hang,
return NaN or garbage, be slow), the voters' decisions are exactly those of a run without it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from ai_engine.engine import DecisionEngine
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.model_slots import load_slots
from ai_engine.replay import replay_series
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import Prediction
from tests.helpers import AgentWrapper
from tests.reliability.conftest import SYMBOLS, settings_for

N_BARS = 1500
COMPARED = ("event_id", "action", "confidence", "consensus_count", "total_models", "actionable", "published",
            "blocked_reason")


@pytest.fixture(scope="module")
def real(candles_dir, models, tmp_path_factory):
    """xgb and lgbm trained on real BTCUSDT/ETHUSDT 1h (data before the replayed span) + the last bars."""
    from ai_engine.data import load_dir
    from ai_engine.training import TrainOptions, train_model

    series = load_dir(candles_dir, list(SYMBOLS), "1h")
    cut = max(int(s.open_time[-N_BARS]) for s in series.values())
    out = tmp_path_factory.mktemp("real_models")
    trained = dict(models)
    for name, ext in (("xgb", ".ubj"), ("lgbm", ".txt")):
        trained[name] = out / f"{name}_real{ext}"
        train_model(name, symbols=SYMBOLS, out_path=trained[name], data_dir=candles_dir, epochs=30, seed=0,
                    threads=2, force=True, options=TrainOptions(max_rows=3000, end=datetime.fromtimestamp(cut / 1000, UTC).isoformat()))
    return trained, {s: v.slice(len(v) - N_BARS, None) for s, v in series.items()}


class BrokenShadow(AgentWrapper):
    def __init__(self, agent, mode: str, release: threading.Event) -> None:
        super().__init__(agent)
        self.mode, self.release = mode, release

    def predict(self, X):
        if self.mode == "raise":
            raise RuntimeError("shadow exploded")
        if self.mode == "hang":
            self.release.wait(60.0)
        if self.mode == "slow":
            time.sleep(0.05)
        preds = self._agent.predict(X)
        if self.mode == "nan":
            return [Prediction(p.action, float("nan"), (float("nan"),) * 3, float("nan")) for p in preds]
        if self.mode == "garbage":
            return [Prediction(p.action, 7.0, (0.9, 0.9, 0.9), 1e30) for p in preds] + preds
        return preds


def run(tmp, models, series, shadow: str | None):
    env = {"ENSEMBLE_MIN_CONSENSUS": "2", "NHITS_ROLE": "disabled", "SHADOW_DEADLINE_MS": "20"}
    env["PATCHTST_ROLE"] = "disabled" if shadow is None else "shadow"
    settings = settings_for(tmp, models, **env)
    slots = load_slots(settings)
    release = threading.Event()
    if shadow not in (None, "healthy"):
        slots["patchtst"].agent = BrokenShadow(slots["patchtst"].agent, shadow, release)
    store = TelemetryStore(settings.store_path)
    engine = DecisionEngine(settings, store=store, governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                            slots=slots, wait_for_shadow=False)
    summary = replay_series(engine, series, chunk=64)
    finished_while_hung = not release.is_set()
    release.set()
    engine.close(shadow_grace_s=5.0)
    rows = store.decisions_json()
    store.close()
    return summary, rows, finished_while_hung


SHADOWS = ("healthy", "raise", "hang", "nan", "garbage", "slow")


@pytest.fixture(scope="module")
def runs(real, tmp_path_factory):
    models, series = real
    tmp = tmp_path_factory.mktemp("shadow_runs")
    return {shadow or "none": run(tmp / (shadow or "none"), models, series, shadow) for shadow in (None, *SHADOWS)}


def _key(d: dict) -> dict:
    return {k: d[k] for k in COMPARED}


def test_broken_shadows_change_no_voter_decision_on_real_candles(runs):
    _, none, _ = runs["none"]
    assert len(none) > 2 * (N_BARS - 200)
    assert sum(d["actionable"] for d in none) > 20 and len({d["action"] for d in none}) == 3
    _, healthy, _ = runs["healthy"]
    by_id = {d["event_id"]: _key(d) for d in none}
    # the same decisions wherever both decided (see the warm-up test below for the first bars)
    assert [_key(d) for d in healthy] == [by_id[d["event_id"]] for d in healthy]
    expected = [_key(d) for d in healthy]
    for shadow in SHADOWS:
        _, got, finished_while_hung = runs[shadow]
        assert [_key(d) for d in got] == expected, f"shadow {shadow} changed a decision"
        statuses = {d["model_breakdown"]["patchtst"]["status"] for d in got}
        assert all(d["model_breakdown"]["patchtst"]["shadow"] for d in got)
        if shadow == "healthy":
            assert "ok" in statuses
        elif shadow == "hang":
            assert finished_while_hung, "the decisions waited for a hung shadow"
            assert "ok" not in statuses
        elif shadow == "slow":
            assert "late" in statuses
        else:  # an error, or "late" when the shadow thread was not even scheduled within the deadline
            assert "error" in statuses and statuses <= {"error", "late"}, statuses
            assert all(d["model_breakdown"]["patchtst"]["reason"] for d in got)


def test_a_shadow_model_delays_no_decision_at_warm_up(runs):
    _, none, _ = runs["none"]
    _, healthy, _ = runs["healthy"]
    missing = {d["event_id"] for d in none} - {d["event_id"] for d in healthy}
    assert not missing, f"{len(missing)} voter decisions not made because the shadow was warming up"
