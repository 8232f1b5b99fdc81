"""The one decision path: features → agents → ensemble → governor → telemetry.

Replay, demo and the live service all call ``DecisionEngine.decide`` with a batch of rows (one
symbol's candle in the live case, many symbols or many candles in replay), so there is exactly one
implementation of the rule.

The voters run one after another on a worker thread, all within ``model_timeout_ms`` (a hung one
is cut off and skipped while its call runs; ``model_calls.VoterPool``); shadow models start once the
voters' decision is ready, on their own worker or process, alongside the record and (in replay) the
next batch's voters. ``decision_latency_ms`` runs from the candle's arrival to
the voters' decision and the governor verdict; the record then waits for shadow results at most
``shadow_deadline_ms`` (fully in replay) and a late shadow result is joined to the stored record
when it arrives. Nothing a shadow model does can reach the vote: its results carry role ``shadow``
and the ensemble only counts ``ModelResult.votes``. Figures: docs/performance.md.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ai_engine.config import Settings
from ai_engine.cpu_affinity import ALL_CPUS, set_cpus, unpin_current_thread
from ai_engine.ensemble_manager import EnsembleManager
from ai_engine.enums import ModelRole, ModelStatus
from ai_engine.exceptions import TransientError
from ai_engine.governor import Governor
from ai_engine.model_calls import (
    SHADOW_QUEUE,
    ModelRunner,
    VoterPool,
    error_results,
    model_rows,
    run_slot,
)
from ai_engine.model_slots import (
    ModelSlot,
    applied_config,
    isolate_shadows,
    load_slots,
    log_applied,
)
from ai_engine.monitor import FlatlineMonitor
from ai_engine.sampling import sample_mask
from ai_engine.telemetry.shadow_log import ShadowLogger, log_intent
from ai_engine.telemetry.sqlite import TelemetryStore
from ai_engine.types import LATE_JOINED, Candle, DecisionRecord, ModelResult, event_id_for

if TYPE_CHECKING:
    from ai_engine.features.streaming import DeferredArray

__all__ = ["DecisionInputs", "DecisionEngine", "EngineState", "pin_inference_threads"]

log = logging.getLogger("ai_engine.engine")


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    """A batch of rows to decide on.

    Attributes:
        candles: the n candles being decided (one per row).
        tabular: (n, F) features in ``FEATURE_NAMES`` order; in serving a
            ``features.DeferredArray`` of them, computed by the first model that reads it (the
            tabular voters' lane) while the sequence voters already run.
        windows: (n, L, C) float32 sequence windows in ``SEQUENCE_CHANNELS`` order, L ≥ every
            sequence model's ``seq_len_``; ``None`` when no sequence model is loaded.
        arrived_at: ``time.perf_counter()`` when the candles arrived; None in replay, where the
            batch time is shared out over its rows.
    """

    candles: Sequence[Candle]
    tabular: np.ndarray | DeferredArray
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
    samples: dict[str, tuple[float, str]] = field(default_factory=dict)  # budgeted shadows: (fraction, key)

    def _seq_lens(self, voters_only: bool) -> list[int]:
        return [s.agent.seq_len_ for s in self.slots.values()
                if s.active and s.agent.input_kind == "sequence" and (s.role is ModelRole.VOTER or not voters_only)]

    @property
    def seq_len(self) -> int:
        """Length of the windows handed to the models: the longest sequence model's, shadow included."""
        return max(self._seq_lens(False), default=0)

    @property
    def decide_len(self) -> int:
        """History a row needs before it can be decided: the longest *voting* sequence model's window.

        A shadow model with a longer window never delays a decision: until its window is full of
        valid history its rows hold NaN, and it reports an error for them instead of a prediction.
        """
        return max(self._seq_lens(True), default=0)


def _state_for(settings: Settings, slots: dict[str, ModelSlot]) -> EngineState:
    config_id, payload = applied_config(settings, slots)
    ensemble = EnsembleManager(
        min_consensus=settings.min_consensus,
        boost=settings.confidence_boost,
        cap=settings.confidence_cap,
        n_configured=len(settings.models),
    )
    configs = settings.all_models()
    samples = {name: (configs[name].sample, configs[name].sample_key) for name, s in slots.items()
               if s.role is ModelRole.SHADOW and name in configs and configs[name].sample < 1.0}
    return EngineState(settings, slots, ensemble, config_id, payload, samples)


def _rows_of(inputs: DecisionInputs, mask: np.ndarray) -> DecisionInputs:
    """The rows of ``inputs`` where ``mask`` is true (a budgeted shadow's sample)."""
    return DecisionInputs([c for c, keep in zip(inputs.candles, mask, strict=True) if keep], inputs.tabular[mask],
                          None if inputs.windows is None else inputs.windows[mask], inputs.arrived_at)


def _spread(results: list[ModelResult], mask: np.ndarray, fill: ModelResult) -> list[ModelResult]:
    """A sample's results back at their rows of the batch, ``fill`` at the others."""
    out = [fill] * mask.size
    for i, r in zip(np.flatnonzero(mask).tolist(), results, strict=True):
        out[i] = r
    return out


GIL_SWITCH_INTERVAL_S = 0.001


def pin_inference_threads(slots: dict[str, ModelSlot], threads: int = 1) -> None:
    """Intra-op threads per model: 1. At 1 and 30 rows a second thread gained nothing (the
    forwards are too small to split), and in replay (512 rows) the other core runs the shadow and
    the writer, where 2 threads per model were slower. Also a 1 ms GIL switch interval (CPython's
    default is 5 ms): torch gives the GIL up around each op, and while another thread runs Python
    it waited up to the whole interval to get it back, which stretched the shadow's batched
    forwards in replay (one year: 39.0 s → 34.5 s; live latency unchanged). docs/performance.md
    has the figures."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if any(s.active and s.agent.input_kind == "sequence" for s in slots.values()):
        import torch

        torch.set_num_threads(threads)
    for s in slots.values():
        set_threads = getattr(s.agent, "set_inference_threads", None)
        if s.active and set_threads is not None:
            set_threads(threads)


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
        slots: preloaded slots, used as they are; by default the engine loads them, with shadows
            in their own processes when ``SHADOW_ISOLATION=process``.
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
        self._runners: dict[tuple[str, str | None], ModelRunner] = {}  # the shadows' workers
        self._voters = VoterPool()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telemetry",
                                          initializer=unpin_current_thread)  # may start on the pinned thread
        self._pinned: tuple[int, int | None] | None = None  # (thread, CPU) of pin_decisions
        self._pipelined = False
        self._write_errors: list[Exception] = []
        self._lock = threading.Lock()  # held for a whole decision batch; reload swaps between batches
        self.shadow_logger = ShadowLogger(settings.shadow_log_interval_s)
        self.flatline = FlatlineMonitor(settings.flatline_window, settings.flatline_min_std)
        if slots is None:  # slots handed in are used as they are (tests hold their agents)
            slots = load_slots(settings)
            isolate_shadows(settings, slots)
        self.state = _state_for(settings, slots)
        pin_inference_threads(self.state.slots)
        self._announce("start")
        self.last_decision_at: int | None = None
        self.decisions_made = 0

    # -- configuration ------------------------------------------------------------------------
    def pin_decisions(self) -> None:
        """Run the calling thread (the live service's, which decides) and the voter workers on the
        CPU ``AI_ENGINE_DECISION_CPU`` names (``cpu_affinity`` says why); with ``off``, on every
        CPU again. Called by the deciding thread before each batch: a no-op unless the thread or
        the setting changed (a reload may change it). Replay does not pin: it uses every CPU."""
        cpu = self.state.settings.decision_cpu
        key = (threading.get_native_id(), cpu)
        if key == self._pinned:
            return
        cpus = ALL_CPUS if cpu is None else frozenset({cpu})
        set_cpus(0, cpus)
        self._voters.set_cpus(cpus)
        if self._pinned is None or self._pinned[1] != cpu:
            log.info("Decisions run on %s (the deciding thread and its voter worker; AI_ENGINE_DECISION_CPU=%s)",
                     "every CPU" if cpu is None else f"CPU {cpu}", self.state.settings.raw.get(
                         "AI_ENGINE_DECISION_CPU", "auto"))
        self._pinned = key

    @property
    def decision_cpu(self) -> int | None:
        """The CPU the deciding thread was last pinned to (None: not pinned)."""
        return self._pinned[1] if self._pinned is not None else None

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
            isolate_shadows(settings, slots, self.state.slots, strict=True)
        except Exception as exc:
            log.error("reload refused, previous configuration %s stays in force: %s", self.state.config_id, exc)
            return False
        new_state = _state_for(settings, slots)
        with self._lock:
            old = self.state
            self.state = new_state
            pin_inference_threads(slots)
            self.shadow_logger.interval_s = settings.shadow_log_interval_s
            for name, slot in slots.items():
                before = old.slots.get(name)
                if before is None or before.sha256 != slot.sha256 or before.role != slot.role:
                    self.flatline.reset(name)
            for name in old.slots.keys() - slots.keys():  # an extra shadow the reload removed
                self.flatline.reset(name)
            for key in [k for k, r in self._runners.items() if k[0] not in slots and not r.pending()]:
                self._runners.pop(key).stop()
        self._announce("reload")
        return True

    def _runner(self, slot: ModelSlot) -> ModelRunner:
        """The worker of this shadow artifact (a reloaded artifact gets a fresh one)."""
        key = (slot.name, slot.sha256)
        runner = self._runners.get(key)
        if runner is None:
            for old_key in [k for k in self._runners if k[0] == slot.name and not self._runners[k].pending()]:
                self._runners.pop(old_key).stop()
            runner = ModelRunner(slot.name)
            self._runners[key] = runner
        return runner

    def _submit(self, slot: ModelSlot, inputs: DecisionInputs) -> Future | None:
        """Queue the model's call on its worker (None: refused, see ModelRunner). A model served
        from its own process (``agent.send``) gets its request now, so it starts at once, even while
        its worker is still finishing the previous batch's results; the worker reads the reply."""
        runner = self._runner(slot)
        send = getattr(slot.agent, "send", None)
        if send is None:
            return runner.submit(run_slot, slot, inputs)
        request: Future = Future()
        X, finite = rows = model_rows(slot, inputs)
        fut = runner.submit(run_slot, slot, inputs, lambda _fed: request.result().result(), rows)
        if fut is not None and finite.any():  # run_slot reads a reply only when a row is fed: send only then
            try:
                request.set_result(send(X if finite.all() else X[finite]))
            except Exception as exc:  # becomes the model's error rows, like a failed predict
                request.set_exception(exc)
        return fut

    # -- the decision path --------------------------------------------------------------------
    def decide(self, inputs: DecisionInputs) -> list[DecisionRecord]:
        with self._lock:
            return self._complete(self._begin(inputs))

    def decide_stream(self, batches: Iterable[DecisionInputs]) -> Iterator[list[DecisionRecord]]:
        """``decide`` over batches in order, with the next batch's models started before the
        previous batch's records are completed, so the shadow worker never idles between batches
        (replay). The records are the same as from ``decide``, yielded in order."""
        pending = None
        for inputs in batches:
            with self._lock:
                started = self._begin(inputs)
                done = self._complete(pending) if pending is not None else None
            if done is not None:
                yield done
            pending = started
        if pending is not None:
            with self._lock:
                done = self._complete(pending)
            yield done

    def _begin(self, inputs: DecisionInputs) -> tuple | None:
        """Start every model on the batch; wait for the voters; decide and check with the governor."""
        st = self.state
        t0 = time.perf_counter()
        n = len(inputs.candles)
        if n == 0:
            return None
        settings = st.settings
        shadows = {name: s for name, s in st.slots.items() if s.role is ModelRole.SHADOW and s.active}
        jobs: dict[str, Future | None] = {}
        per_model: dict[str, list[ModelResult]] = {}
        voters = {name: s for name, s in st.slots.items() if s.active and s.role is ModelRole.VOTER}
        for name, slot in st.slots.items():
            if name not in shadows and name not in voters:
                per_model[name] = run_slot(slot, inputs)  # disabled/inactive: a reason per row, no work
        results, reasons = self._voters.run(list(voters.values()), inputs, t0 + settings.model_timeout_ms / 1000.0,
                                            settings.model_timeout_ms, settings.voter_lanes)
        for name, slot in voters.items():
            per_model[name] = results.get(name) or error_results(slot, n, ModelStatus.ERROR, reasons[name])
        # the rule over the whole batch at once (at 400 symbols a call per row was ~3 ms); the
        # per-row records are built in _complete, after the decision is ready
        vote = st.ensemble.decide_many([per_model[name] for name in st.slots if name in per_model], n)
        # The governor is read once per batch, and only when there is something to let through
        # (a HOLD needs no verdict); an unreadable state blocks every actionable decision.
        verdicts = self.governor.check_many(vote.actionable.tolist())
        t_ready = time.perf_counter()
        # Shadows start once the voters are done: on 2 cores, running them alongside slowed the
        # voters (p99 1.57x at 1 symbol, docs/performance.md). In replay, decide_stream still
        # overlaps this batch's shadow with the next batch's voters.
        # A budgeted shadow runs on its sample of the batch only; none of it: no call at all.
        masks: dict[str, np.ndarray] = {}
        if st.samples:
            ids = [event_id_for("ai.decision", c.symbol, c.interval, c.open_time) for c in inputs.candles]
            masks = {name: sample_mask(ids, name, st.samples[name][0]) for name in shadows if name in st.samples}
        for name, s in shadows.items():
            mask = masks.get(name)
            if mask is None:
                jobs[name] = self._submit(s, inputs)
            elif mask.any():
                jobs[name] = self._submit(s, _rows_of(inputs, mask))
        return st, inputs, t0, shadows, jobs, masks, per_model, vote, verdicts, t_ready

    def _complete(self, started: tuple | None) -> list[DecisionRecord]:
        """Wait for the shadows (up to the deadline), build the records, record them."""
        if started is None:
            return []
        st, inputs, t0, shadows, jobs, masks, per_model, vote, verdicts, t_ready = started
        settings, n = st.settings, len(inputs.candles)
        decisions = vote.decisions()
        late: dict[str, Future] = {}
        shadow_deadline = None if self.wait_for_shadow else t_ready + settings.shadow_deadline_ms / 1000.0
        for name, slot in shadows.items():
            mask = masks.get(name)
            if mask is None:
                per_model[name], is_late = self._shadow_results(slot, jobs[name], n, shadow_deadline)
            else:
                fraction, key = st.samples[name]
                unsampled = error_results(slot, 1, ModelStatus.UNSAMPLED, f"not sampled ({key}={fraction:g})")[0]
                got, is_late = (self._shadow_results(slot, jobs[name], int(mask.sum()), shadow_deadline)
                                if mask.any() else ([], False))
                per_model[name] = _spread(got, mask, unsampled)
            if is_late:
                late[name] = jobs[name]
        decided_at = int(time.time() * 1000)
        # an intent whose record the store cannot keep never goes out (fails closed, as the governor)
        held = self.store.health()["reason"] if self.store.saturated else None
        records: list[DecisionRecord] = []
        for i, candle in enumerate(inputs.candles):
            results = tuple(per_model[name][i] for name in st.slots)
            decision, verdict = decisions[i], verdicts[i]
            if held is not None and verdict.allowed:
                verdict = replace(verdict, allowed=False, reason=held)
            if shadows:  # shadow entries join the recorded breakdown; the vote never saw them
                decision = replace(decision, results=results)
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
        self.decisions_made += n
        self.last_decision_at = decided_at
        fenced: set[str] = set()  # symbols whose decisions the store refused (a lease moved): never published
        if self._pipelined:
            self._writer.submit(self._guarded, self._record, records, inputs.candles)
        else:
            fenced = self._record(records, inputs.candles)
        for name, fut in late.items():
            mine = records if name not in masks else [r for r, keep in zip(records, masks[name], strict=True) if keep]
            fut.add_done_callback(lambda f, s=st.slots[name], r=mine: self._writer.submit(self._guarded, self._join_late, s, r, f))
        self._observe(st, records, per_model, fenced)
        return records

    def _shadow_results(self, slot: ModelSlot, fut: Future | None, n: int,
                        deadline: float | None) -> tuple[list[ModelResult], bool]:
        if fut is None:
            return error_results(slot, n, ModelStatus.ERROR,
                                 f"skipped: {SHADOW_QUEUE} earlier shadow calls still queued"), False
        timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
        try:
            return fut.result(timeout=timeout), False
        except FutureTimeout:
            reason = f"shadow result not ready within {self.state.settings.shadow_deadline_ms:g} ms; joined to the record later"
        except Exception as exc:  # run_slot catches model errors; this is a bug guard, still never a vote
            return error_results(slot, n, ModelStatus.ERROR, f"{type(exc).__name__}: {exc}"), False
        return error_results(slot, n, ModelStatus.LATE, reason), True

    def _join_late(self, slot: ModelSlot, records: list[DecisionRecord], fut: Future) -> None:
        try:
            results = fut.result()
            for rec, res in zip(records, results, strict=True):
                # the reason says the row was joined after publication (the analysis counts them)
                joined = LATE_JOINED if res.reason is None else f"{LATE_JOINED}: {res.reason}"
                self.store.update_prediction(rec, replace(res, reason=joined))
        except Exception as exc:
            log.error("could not join late %s results: %s", slot.name, exc)

    def _record(self, records: list[DecisionRecord], candles: Sequence[Candle]) -> set[str]:
        """Store the records and wake the sinks; returns the symbols the store's fence refused."""
        fenced: set[str] = set()
        try:
            fenced = self.store.record_decisions(records, candles) or set()
        except TransientError as exc:
            log.error("decisions kept in memory until the store accepts them: %s", exc)
        for sink in self.sinks:
            try:
                sink.notify(records)
            except Exception as exc:
                log.error("sink %s failed: %s", type(sink).__name__, exc)
        return fenced

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Record (and notify sinks) on the writer thread while the next batch is decided (replay).
        Order is kept (one writer, FIFO); leaving the block waits until everything is written."""
        self._pipelined = True
        try:
            yield
        finally:
            with self._lock:
                self._pipelined = False
            self.flush()

    def _guarded(self, fn: Callable, *args) -> None:
        """Run a writer task; an unexpected failure is kept and raised by ``flush``, never lost."""
        try:
            fn(*args)
        except Exception as exc:
            log.error("telemetry writer failed: %s: %s", type(exc).__name__, exc)
            self._write_errors.append(exc)

    def flush(self) -> None:
        """Wait until every decision handed to the writer is in the store; raise what failed."""
        self._writer.submit(lambda: None).result()
        if self._write_errors:
            exc, self._write_errors = self._write_errors[0], []
            raise exc

    def _observe(self, st: EngineState, records: list[DecisionRecord], per_model: dict[str, list[ModelResult]],
                 fenced: set[str] = frozenset()) -> None:
        for name, results in per_model.items():
            conf = [r.prediction.confidence for r in results if r.prediction is not None and r.status is ModelStatus.OK]
            if conf:
                self.flatline.observe(name, conf)
        for rec in records:
            for r in rec.decision.results:
                if r.shadow:
                    self.shadow_logger(st.slots[r.model].display, rec.symbol, r)
            if rec.published and rec.symbol not in fenced:  # a fenced decision was never published
                log_intent(rec)

    def wait_idle(self, timeout: float | None = None, *, shadows_only: bool = False) -> int:
        """Wait until the model calls in flight (late shadows, timed-out voters) return; returns
        how many are still running after ``timeout`` seconds."""
        futs = [f for r in self._runners.values() for f in r.pending()]
        if not shadows_only:
            futs += self._voters.pending()
        _, stuck = wait_futures(futs, timeout=timeout)
        return len(stuck)

    def close(self, shadow_grace_s: float = 60.0) -> None:
        """Finish pending shadow work (so late results are joined), write what is queued, then let
        sinks deliver what they can (they keep the rest). A hung model is left behind, not waited on."""
        stuck = self.wait_idle(shadow_grace_s, shadows_only=True)
        if stuck:
            log.error("%d shadow call(s) still running after %.0f s at close; their late results are not joined",
                      stuck, shadow_grace_s)
        for r in self._runners.values():
            r.stop()
        self._voters.stop()
        for slot in self.state.slots.values():
            if slot.isolated and not stuck:  # a stuck child is left like a hung thread; it ends with this process
                slot.agent.close()
        self._writer.shutdown(wait=True)
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    log.error("sink %s did not close cleanly: %s", type(sink).__name__, exc)
