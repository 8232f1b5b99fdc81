"""The one decision path: features → agents → ensemble → governor → telemetry.

Replay, demo and the live service all call ``DecisionEngine.decide`` with a batch of rows (one
symbol's candle in the live case, many symbols or many candles in replay), so there is exactly one
implementation of the rule. Shadow models run on a separate worker, concurrently with the voters;
the decision waits for them at most ``shadow_deadline_ms`` (or fully in replay), and a late shadow
result is joined to the stored record when it arrives. Nothing a shadow model does can reach the
vote: its results carry role ``shadow`` and the ensemble only counts ``ModelResult.votes``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from ai_engine.config import Settings
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import ModelRole, ModelStatus
from ai_engine.exceptions import TransientError
from ai_engine.governor import Governor
from ai_engine.model_slots import DISPLAY_NAMES, ModelSlot, applied_config, load_slots, log_applied
from ai_engine.monitor import FlatlineMonitor
from ai_engine.telemetry.shadow_log import ShadowLogger, log_intent
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import Candle, DecisionRecord, ModelResult, Prediction, event_id_for

__all__ = ["DecisionInputs", "DecisionEngine", "EngineState"]

log = logging.getLogger("ai_engine.engine")


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """A batch of rows to decide on.

    Attributes:
        candles: the n candles being decided (one per row).
        tabular: (n, F) features in ``FEATURE_NAMES`` order.
        windows: (n, L, C) float32 sequence windows in ``SEQUENCE_CHANNELS`` order, L ≥ every
            sequence model's ``seq_len_``; ``None`` when no sequence model is loaded.
        arrived_at: ``time.perf_counter()`` when the candles arrived; None in replay, where the
            batch time is shared out over its rows.
    """

    candles: Sequence[Candle]
    tabular: np.ndarray
    windows: np.ndarray | None
    arrived_at: float | None = None


@dataclass(frozen=True, slots=True)
class EngineState:
    """Everything a decision depends on; replaced as a whole on reload, never edited in place."""

    settings: Settings
    slots: dict[str, ModelSlot]
    ensemble: EnsembleManager
    config_id: str
    config_payload: dict

    @property
    def seq_len(self) -> int:
        lens = [s.agent.seq_len_ for s in self.slots.values() if s.active and s.agent.input_kind == "sequence"]
        return max(lens, default=0)


def _state_for(settings: Settings, slots: dict[str, ModelSlot]) -> EngineState:
    config_id, payload = applied_config(settings, slots)
    ensemble = EnsembleManager(
        min_consensus=settings.min_consensus,
        boost=settings.confidence_boost,
        cap=settings.confidence_cap,
        n_configured=len(settings.models),
    )
    return EngineState(settings, slots, ensemble, config_id, payload)


def _valid_prediction(p: Prediction) -> str | None:
    probs = np.asarray(p.probs, dtype=float)
    if not np.all(np.isfinite(probs)) or not np.isfinite(p.confidence):
        return "non-finite output"
    if np.any(probs < -1e-9) or np.any(probs > 1 + 1e-9) or abs(probs.sum() - 1.0) > 1e-4:
        return f"invalid probabilities {probs.round(4).tolist()}"
    if not 0.0 <= p.confidence <= 1.0:
        return f"confidence {p.confidence} outside [0, 1]"
    return None


def run_slot(slot: ModelSlot, inputs: DecisionInputs) -> list[ModelResult]:
    """Run one model over the batch. Failures become per-row ERROR/INACTIVE results, never votes."""
    n = len(inputs.candles)
    base = dict(model=slot.name, role=slot.role, weight=slot.weight, version=slot.version, sha256=slot.sha256)
    if not slot.active:
        status = ModelStatus.DISABLED if slot.role is ModelRole.DISABLED else ModelStatus.INACTIVE
        return [ModelResult(status=status, reason=slot.reason, **base)] * n
    agent = slot.agent
    t0 = time.perf_counter()
    if agent.input_kind == "tabular":
        X = inputs.tabular[:, slot.input_index]
        finite = np.isfinite(X).all(axis=1)
    else:
        X = inputs.windows[:, -agent.seq_len_ :, :][:, :, slot.input_index]
        finite = np.isfinite(X).all(axis=(1, 2))
    results: list[ModelResult | None] = [None] * n
    ok_rows = np.flatnonzero(finite)
    try:
        preds = agent.predict(X[ok_rows]) if len(ok_rows) else []
        if len(preds) != len(ok_rows):
            raise ValueError(f"returned {len(preds)} predictions for {len(ok_rows)} rows")
        error = None
    except Exception as exc:  # a model that raises is excluded for this decision, with its reason
        preds, error = [], f"inference failed: {type(exc).__name__}: {exc}"
    latency = (time.perf_counter() - t0) * 1000.0 / max(n, 1)
    for i, p in zip(ok_rows, preds, strict=False):
        bad = _valid_prediction(p)
        results[i] = ModelResult(
            status=ModelStatus.ERROR if bad else ModelStatus.OK,
            prediction=None if bad else p,
            reason=f"invalid output: {bad}" if bad else None,
            latency_ms=latency,
            **base,
        )
    for i in range(n):
        if results[i] is None:
            reason = error if finite[i] else "non-finite input features; row not fed to the model"
            results[i] = ModelResult(status=ModelStatus.ERROR, reason=reason, latency_ms=latency, **base)
    return results  # type: ignore[return-value]


class DecisionEngine:
    """Decides on batches of rows and records every decision.

    Args:
        settings: the applied configuration.
        store: the SQLite telemetry store (full record).
        governor: publish gate (fails closed).
        sinks: objects with ``notify(records)`` told about newly recorded decisions (e.g. the Redis
            publisher, which drains the store's outbox); they must not block.
        wait_for_shadow: wait for shadow results without a deadline (replay), instead of
            ``settings.shadow_deadline_ms`` (live).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: TelemetryStore,
        governor: Governor,
        sinks: Sequence[object] = (),
        wait_for_shadow: bool = False,
        slots: dict[str, ModelSlot] | None = None,
    ) -> None:
        self.store = store
        self.governor = governor
        self.sinks = list(sinks)
        self.wait_for_shadow = wait_for_shadow
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._lock = threading.Lock()  # held for a whole decision batch; reload swaps between batches
        self.shadow_logger = ShadowLogger(settings.shadow_log_interval_s)
        self.flatline = FlatlineMonitor(settings.flatline_window, settings.flatline_min_std)
        self.state = _state_for(settings, slots if slots is not None else load_slots(settings))
        self._announce("start")
        self.last_decision_at: int | None = None
        self.decisions_made = 0

    # -- configuration ------------------------------------------------------------------------
    def _announce(self, reason: str) -> None:
        st = self.state
        log_applied(st.config_id, st.config_payload, reason)
        try:
            self.store.record_config(st.config_id, reason, st.config_payload)
        except TransientError as exc:
            log.error("could not record applied configuration: %s", exc)

    def reload(self, settings: Settings) -> bool:
        """Apply new settings between two batches. All or nothing: if a model that should run
        fails to load, the previous configuration stays in force and the reason is logged."""
        try:
            slots = load_slots(settings, strict=True)
        except Exception as exc:
            log.error("reload refused, previous configuration %s stays in force: %s", self.state.config_id, exc)
            return False
        new_state = _state_for(settings, slots)
        with self._lock:
            old = self.state
            self.state = new_state
            self.shadow_logger.interval_s = settings.shadow_log_interval_s
            for name, slot in slots.items():
                if old.slots[name].sha256 != slot.sha256 or old.slots[name].role != slot.role:
                    self.flatline.reset(name)
        self._announce("reload")
        return True

    # -- the decision path --------------------------------------------------------------------
    def decide(self, inputs: DecisionInputs) -> list[DecisionRecord]:
        with self._lock:
            return self._decide(inputs)

    def _decide(self, inputs: DecisionInputs) -> list[DecisionRecord]:
        st = self.state
        t0 = time.perf_counter()
        n = len(inputs.candles)
        if n == 0:
            return []
        shadow_jobs: dict[str, Future] = {
            name: self._shadow_pool.submit(run_slot, slot, inputs)
            for name, slot in st.slots.items()
            if slot.role is ModelRole.SHADOW
        }
        per_model: dict[str, list[ModelResult]] = {
            name: run_slot(slot, inputs) for name, slot in st.slots.items() if slot.role is not ModelRole.SHADOW
        }
        late: dict[str, Future] = {}
        for name, fut in shadow_jobs.items():
            per_model[name], is_late = self._shadow_results(st.slots[name], fut, n, t0)
            if is_late:
                late[name] = fut
        gov_state = self.governor.state()
        decided_at = int(time.time() * 1000)
        t_ready = time.perf_counter()
        records: list[DecisionRecord] = []
        for i, candle in enumerate(inputs.candles):
            results = tuple(per_model[name][i] for name in st.slots)
            decision = st.ensemble.decide(results)
            verdict = self.governor.check(decision, gov_state)
            if inputs.arrived_at is not None:
                latency = (t_ready - inputs.arrived_at) * 1000.0
            else:
                latency = (t_ready - t0) * 1000.0 / n
            records.append(
                DecisionRecord(
                    event_id=event_id_for("ai.decision", candle.symbol, candle.interval, candle.open_time),
                    symbol=candle.symbol,
                    interval=candle.interval,
                    candle_open_time=candle.open_time,
                    decided_at=decided_at,
                    entry_price=candle.close,
                    decision=decision,
                    published=verdict.allowed,
                    blocked_reason=verdict.reason,
                    config_id=st.config_id,
                    decision_latency_ms=latency,
                    synthetic=candle.synthetic,
                    intent_event_id=(
                        event_id_for("trade.intent", candle.symbol, candle.interval, candle.open_time)
                        if verdict.allowed
                        else None
                    ),
                )
            )
        self._record(records, inputs.candles)
        for name, fut in late.items():
            fut.add_done_callback(lambda f, s=st.slots[name], r=records: self._join_late(s, r, f))
        self._observe(st, records, per_model)
        return records

    def _shadow_results(self, slot: ModelSlot, fut: Future, n: int, t0: float) -> tuple[list[ModelResult], bool]:
        timeout = None
        if not self.wait_for_shadow:
            timeout = max(0.0, self.state.settings.shadow_deadline_ms / 1000.0 - (time.perf_counter() - t0))
        try:
            return fut.result(timeout=timeout), False
        except FutureTimeout:
            reason = f"shadow result not ready within {self.state.settings.shadow_deadline_ms:g} ms; joined to the record later"
        except Exception as exc:  # run_slot catches model errors; this is a bug guard, still never a vote
            return [ModelResult(model=slot.name, role=slot.role, weight=slot.weight, status=ModelStatus.ERROR,
                                version=slot.version, sha256=slot.sha256, reason=f"{type(exc).__name__}: {exc}")] * n, False
        return [ModelResult(model=slot.name, role=slot.role, weight=slot.weight, status=ModelStatus.LATE,
                            version=slot.version, sha256=slot.sha256, reason=reason)] * n, True

    def _join_late(self, slot: ModelSlot, records: list[DecisionRecord], fut: Future) -> None:
        try:
            results = fut.result()
            for rec, res in zip(records, results, strict=True):
                self.store.update_prediction(rec, res)
        except Exception as exc:
            log.error("could not join late %s results: %s", slot.name, exc)

    def _record(self, records: list[DecisionRecord], candles: Sequence[Candle]) -> None:
        try:
            self.store.record_decisions(records, candles)
        except TransientError as exc:
            log.error("decisions kept in memory until the store accepts them: %s", exc)
        for sink in self.sinks:
            try:
                sink.notify(records)
            except Exception as exc:
                log.error("sink %s failed: %s", type(sink).__name__, exc)
        self.decisions_made += len(records)
        self.last_decision_at = records[-1].decided_at

    def _observe(self, st: EngineState, records: list[DecisionRecord], per_model: dict[str, list[ModelResult]]) -> None:
        for name, results in per_model.items():
            conf = [r.prediction.confidence for r in results if r.prediction is not None and r.status is ModelStatus.OK]
            if conf:
                self.flatline.observe(name, conf)
        for rec in records:
            for r in rec.decision.results:
                if r.shadow:
                    self.shadow_logger(DISPLAY_NAMES[r.model], rec.symbol, r)
            if rec.published:
                log_intent(rec)

    def close(self) -> None:
        """Finish pending shadow work, then let sinks deliver what they can (they keep the rest)."""
        self._shadow_pool.shutdown(wait=True, cancel_futures=False)
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.error("sink %s did not close cleanly: %s", type(sink).__name__, exc)
