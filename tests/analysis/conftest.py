"""Synthetic but realistic stores: a random-walk market, an ensemble, and a shadow model whose
behaviour (flat, copying, skilled, anti-skilled) is defined against the recorded market."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ai_engine.enums import CLASS_ORDER, Action, ModelRole, ModelStatus
from ai_engine.telemetry import TelemetryStore
from ai_engine.types import (
    INTERVAL_MS,
    Candle,
    DecisionRecord,
    EnsembleDecision,
    ModelResult,
    Prediction,
    event_id_for,
)
from tests.reliability.conftest import models, series  # noqa: F401  (real models and market, shared fixtures)

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000
IV = "1h"
CONFIG_ID = "cfg-test-1"


def _probs(k: int, c: float) -> tuple[float, float, float]:
    p = [(1 - c) / 2] * 3
    p[k] = c
    return tuple(p)  # type: ignore[return-value]


def _shadow_actions(kind, rng, real, ens, n):
    """(action index, confidence) per decision for the named behaviour."""
    if callable(kind):
        return kind(rng, real, ens, n)
    if kind == "flat":
        return np.ones(n, dtype=int), np.full(n, 0.6150)
    if kind == "copy":
        return ens.copy(), rng.uniform(0.4, 0.9, n)
    c = rng.uniform(0.34, 0.98, n)
    p_right = c if kind == "skilled" else 1.32 - c
    right = rng.random(n) < p_right
    other = (real + rng.integers(1, 3, n)) % 3
    return np.where(right, real, other), c


def build_store(
    path: Path,
    *,
    n: int = 1500,
    shadow="skilled",
    horizon: int = 4,
    mode: str = "fixed",
    band: float = 0.004,
    history: int = 0,
    tail: int = 0,
    drift: float = 0.0,
    ensemble: str = "random",
    seed: int = 0,
    symbol: str = "BTCUSDT",
    label_config: bool = True,
    shadow_sha: str = "cd" * 32,
    shadow_role: ModelRole = ModelRole.SHADOW,
) -> Path:
    """Record ``n`` decisions on a random walk (1%/bar) with ``history`` candles before the first
    decision and ``tail`` after the last. The shadow model is ``patchtst``; ``lgbm`` votes and
    always says what the ensemble says. Returns the store path."""
    rng = np.random.default_rng(seed)
    iv = INTERVAL_MS[IV]
    total = history + n + tail
    logp = np.cumsum(rng.normal(drift, 0.01, total)) + math.log(30_000.0)
    close = np.exp(logp)
    times = T0 + iv * np.arange(total)
    candles = [Candle(symbol, IV, int(t), float(c), float(c) * 1.002, float(c) * 0.998, float(c), 1.0)
               for t, c in zip(times, close, strict=True)]
    dec = np.arange(history, history + n)
    fwd_idx = np.minimum(dec + horizon, total - 1)
    r = np.log(close[fwd_idx] / close[dec])
    real = np.where(r > band, 2, np.where(r < -band, 0, 1))
    ens = {"random": lambda: rng.choice(3, n, p=[0.3, 0.4, 0.3]), "hold": lambda: np.ones(n, dtype=int)}[ensemble]()
    act, conf = _shadow_actions(shadow, rng, real, ens, n)
    records = []
    for j, i in enumerate(dec):
        t = int(times[i])
        e = CLASS_ORDER[ens[j]]
        voter = ModelResult("lgbm", ModelRole.VOTER, ModelStatus.OK, 25.0, "v1", "ab" * 32,
                            Prediction.from_probs(_probs(int(ens[j]), 0.7)))
        sh = ModelResult("patchtst", shadow_role, ModelStatus.OK, 0.0, "v2", shadow_sha,
                         Prediction.from_probs(_probs(int(act[j]), float(conf[j]))))
        d = EnsembleDecision(e, 0.7, 3, 3, e is not Action.HOLD, False, _probs(int(ens[j]), 0.7), (voter, sh))
        records.append(DecisionRecord(
            event_id=event_id_for("decision", symbol, IV, t), symbol=symbol, interval=IV, candle_open_time=t,
            decided_at=t + iv + 5, entry_price=float(close[i]), decision=d, published=e is not Action.HOLD,
            blocked_reason=None, config_id=CONFIG_ID, decision_latency_ms=3.0,
            intent_event_id=event_id_for("intent", symbol, IV, t) if e is not Action.HOLD else None,
        ))
    store = TelemetryStore(path)
    lc = {"horizon": horizon, "mode": mode, "fee_band": band, "k": 0.5, "vol_window": 168, "band": band}
    store.record_config(CONFIG_ID, "start", {"models": {
        "patchtst": {"role": shadow_role.value, "weight": 0, "version": "v2", "sha256": shadow_sha,
                     **({"label_config": lc} if label_config else {})},
        "lgbm": {"role": "voter", "weight": 25, "version": "v1"},
    }})
    store.record_decisions(records, candles)
    store.close()
    return path


@pytest.fixture
def make_store(tmp_path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(**kw) -> Path:
        return build_store(tmp_path / f"store{next(counter)}.sqlite", **kw)

    return make
