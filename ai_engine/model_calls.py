"""How a model is called: one call over a batch, its failures as rows, and the threads calls run on.

Voters run one after another on one worker thread (``VoterPool``), not each on its own: a forward
at one row is mostly Python, and threads of one process take turns on the interpreter lock, so
three voter threads on 2 cores took 1.87 ms where one worker running them in turn took 1.52 ms
(bare forwards 1.08 ms; docs/performance.md). The worker still keeps a hung model off the
decision: the caller waits only until the timeout, and a worker left inside a hung call is set
aside while the other voters go on on a fresh one. Shadows run on their own ``ModelRunner`` (or in
their own process, ``agents.isolated``), so a slow shadow never holds a voter.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import numpy as np

from ai_engine.agents.base import PredictionBatch
from ai_engine.cpu_affinity import ALL_CPUS, set_cpus, unpin_current_thread
from ai_engine.enums import Action, ModelRole, ModelStatus
from ai_engine.model_slots import DISPLAY_NAMES, ModelSlot
from ai_engine.types import LazyRows, ModelResult, Prediction

if TYPE_CHECKING:
    from ai_engine.engine import DecisionInputs

__all__ = ["COLUMN_ROWS", "LANE_ROWS", "SHADOW_QUEUE", "ModelRunner", "ResultColumn", "VoterPool", "error_results", "model_rows", "run_slot"]

log = logging.getLogger("ai_engine.engine")

LANE_ROWS = 128  # rows from which the sequence voters run beside the tabular ones (VoterPool.lanes)
# Rows from which a model's results stay arrays until the record (ResultColumn); below, a row's
# objects cost less than the numpy calls around them (1 symbol: ~0.1 ms of the decision).
COLUMN_ROWS = 16
SHADOW_QUEUE = 64  # shadow calls that may wait behind a slow one before further rows are skipped
NOT_FED = "non-finite input (window not yet full of valid history, or bad features); row not fed to the model"


def _invalid(p: Prediction) -> str | None:
    """Why a prediction is unusable, or None: an action that is not an ``Action`` (a model's
    ``'buy'``, failure mode 14), non-finite values, probabilities that are not a distribution, or a
    confidence that is not the model's probability of its own action (a fixed 0.75 or a 1.05,
    failure mode 12). Plain Python: per row it is several times cheaper than numpy over the batch,
    at 1 row and at 512."""
    probs, conf, action = p.probs, p.confidence, p.action
    if type(action) is not Action:
        return f"action {action!r} is not one of BUY, SELL, HOLD"
    try:
        a, b, c = probs
        if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c) and math.isfinite(conf)):
            return "non-finite output"
        lo, hi = -1e-9, 1.0 + 1e-9
        if not (lo <= a <= hi and lo <= b <= hi and lo <= c <= hi and abs(a + b + c - 1.0) <= 1e-4):
            return f"invalid probabilities {np.round(np.asarray(probs, dtype=float), 4).tolist()}"
    except (TypeError, ValueError):
        return f"invalid probabilities {probs!r}"
    if not 0.0 <= conf <= 1.0:
        return f"confidence {conf} outside [0, 1]"
    if abs(conf - p.prob) > 1e-6:
        return f"confidence {conf:.4f} is not the probability of its action {action.value} ({p.prob:.4f})"
    return None


def error_results(slot: ModelSlot, n: int, status: ModelStatus, reason: str | None) -> list[ModelResult]:
    """``n`` rows of ``slot`` without a prediction, with the reason."""
    return [ModelResult(slot.name, slot.role, status, slot.weight, slot.version, slot.sha256, reason=reason)] * n


class ResultColumn(LazyRows):
    """One model's results over a batch, backed by its ``PredictionBatch``: the vote reads
    ``vote_arrays()``, and a row becomes a ``ModelResult`` only when read (for the record, once the
    decision is ready), the same one the per-row path builds.

    Args:
        fed: (n,) bool, the rows that were fed to the model (None: all); ``preds`` has one row per
            fed row. A row not fed is an error row with the reason NOT_FED.
    """

    __slots__ = ("model", "role", "weight", "version", "sha256", "latency", "preds", "ok", "_pos", "_bad")

    def __init__(self, slot: ModelSlot, preds: PredictionBatch, fed: np.ndarray | None, latency: float) -> None:
        self.model, self.role, self.weight = slot.name, slot.role, slot.weight
        self.version, self.sha256, self.latency = slot.version, slot.sha256, latency
        self.preds = preds
        valid = preds.valid()
        self._bad: dict[int, str] = {}
        for j in np.flatnonzero(~valid).tolist():  # a suspect row: its reason, as the per-row check gives it
            reason = _invalid(preds[j])
            if reason is None:
                valid[j] = True
            else:
                self._bad[j] = reason
        if fed is None:
            self._pos, self.ok = np.arange(len(preds)), valid
        else:
            self._pos, self.ok = np.where(fed, np.cumsum(fed) - 1, -1), np.zeros(len(fed), dtype=bool)
            self.ok[fed] = valid
        super().__init__(len(self._pos))

    def _build(self, i: int) -> ModelResult:
        j = int(self._pos[i])
        ident = (self.model, self.role)
        if j < 0:
            return ModelResult(*ident, ModelStatus.ERROR, self.weight, self.version, self.sha256, None,
                               self.latency, NOT_FED)
        if j in self._bad:
            return ModelResult(*ident, ModelStatus.ERROR, self.weight, self.version, self.sha256, None,
                               self.latency, f"invalid output: {self._bad[j]}")
        return ModelResult(*ident, ModelStatus.OK, self.weight, self.version, self.sha256, self.preds[j],
                           self.latency)

    def vote_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(votes (n,) bool, action (n,) CLASS_ORDER index or -1, confidence (n,), 0 where it does
        not vote): what ``EnsembleManager.decide_many`` reads of each row's ``ModelResult``."""
        votes = self.ok & (self.role is ModelRole.VOTER)
        action, conf = np.full(len(votes), -1), np.zeros(len(votes))
        action[votes] = self.preds.action[self._pos[votes]]
        conf[votes] = self.preds.confidence[self._pos[votes]]
        return votes, action, conf


def model_rows(slot: ModelSlot, inputs: DecisionInputs) -> tuple[np.ndarray, np.ndarray]:
    """The model's input for every row of the batch, and which rows are finite (only those are fed)."""
    agent = slot.agent
    if agent.input_kind == "tabular":
        X = inputs.tabular[:, slot.input_index]
        return X, np.isfinite(X).all(axis=1)
    X = inputs.windows[:, -agent.seq_len_ :, :]
    if not slot.input_whole:  # a model of fewer channels (at 400 rows the gather of all was ~0.2 ms)
        X = X[:, :, slot.input_index]
    return X, np.isfinite(X).all(axis=(1, 2))


def run_slot(slot: ModelSlot, inputs: DecisionInputs, forward: Callable | None = None,
             rows: tuple[np.ndarray, np.ndarray] | None = None) -> list[ModelResult]:
    """Run one model over the batch. Failures become per-row ERROR/INACTIVE results, never votes.

    ``forward`` stands in for ``slot.agent.predict`` on the finite rows (a request already sent to
    the model's own process); ``rows`` is ``model_rows(slot, inputs)`` when the caller has it."""
    n = len(inputs.candles)
    if not slot.active:
        status = ModelStatus.DISABLED if slot.role is ModelRole.DISABLED else ModelStatus.INACTIVE
        return error_results(slot, n, status, slot.reason)
    name, role, weight, version, sha256 = slot.name, slot.role, slot.weight, slot.version, slot.sha256
    t0 = time.perf_counter()
    X, finite = rows if rows is not None else model_rows(slot, inputs)
    all_finite = bool(finite.all())
    ok_rows = range(n) if all_finite else np.flatnonzero(finite).tolist()
    try:
        predict = forward or slot.agent.predict
        preds = predict(X if all_finite else X[ok_rows]) if len(ok_rows) else []
        if len(preds) != len(ok_rows):
            raise ValueError(f"returned {len(preds)} predictions for {len(ok_rows)} rows")
        error = None
    except Exception as exc:  # a model that raises is excluded for this decision, with its reason
        preds, error = [], f"inference failed: {type(exc).__name__}: {exc}"
    latency = (time.perf_counter() - t0) * 1000.0 / max(n, 1)

    if error is None and isinstance(preds, PredictionBatch) and len(preds) >= COLUMN_ROWS:
        return ResultColumn(slot, preds, None if all_finite else finite, latency)  # the vote reads the arrays

    def scored(p: Prediction) -> ModelResult:
        bad = _invalid(p)
        if bad is None:
            return ModelResult(name, role, ModelStatus.OK, weight, version, sha256, p, latency)
        return ModelResult(name, role, ModelStatus.ERROR, weight, version, sha256, None, latency, f"invalid output: {bad}")

    if error is None and all_finite:  # the usual case: one result per prediction
        return [scored(p) for p in preds]
    results = [ModelResult(name, role, ModelStatus.ERROR, weight, version, sha256, None, latency,
                           NOT_FED if not finite[i] else error) for i in range(n)]
    for i, p in zip(ok_rows, preds, strict=False):
        results[i] = scored(p)
    return results


class ModelRunner:
    """A shadow model's daemon worker thread.

    Calls run in submission order; up to ``SHADOW_QUEUE`` may wait, so a slow shadow still gets
    every row joined to its record, and further ones are refused (``submit`` returns None) instead
    of piling up. Daemon: a hung model never blocks exit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[Future] = []
        self._thread = threading.Thread(target=self._work, name=f"model-{name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        unpin_current_thread()  # started from the deciding thread: a shadow never takes the voters' CPU
        while (job := self._jobs.get()) is not None:
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # delivered to the waiter, which turns it into ERROR results
                fut.set_exception(exc)

    def submit(self, fn: Callable, *args) -> Future | None:
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= SHADOW_QUEUE:
            return None
        fut: Future = Future()
        self._pending.append(fut)
        self._jobs.put((fut, fn, args))
        return fut

    def pending(self) -> list[Future]:
        return [f for f in self._pending if not f.done()]

    def stop(self, timeout: float = 5.0) -> None:
        """End the worker after the calls queued so far; wait for it unless a call is hung (a
        worker left inside native code at interpreter exit can abort the process)."""
        self._jobs.put(None)
        if not self.pending():
            self._thread.join(timeout)


class _VoterJob:
    """One batch's voters, run in order. The caller reads what is done when it stops waiting;
    once it has (``abandoned``), the worker starts no further model of the job."""

    def __init__(self, slots: Sequence[ModelSlot], inputs: DecisionInputs, cpus: frozenset[int] = frozenset()) -> None:
        self.slots, self.inputs, self.cpus = slots, inputs, cpus  # cpus: where it runs (empty: as it is)
        self.results: dict[str, list[ModelResult]] = {}
        self.running: str | None = None  # the model whose call is in progress
        self.since = 0.0  # when that call started
        self.abandoned = False
        self.lock = threading.Lock()
        self.done: Future = Future()

    def run(self) -> None:
        try:
            for slot in self.slots:
                with self.lock:
                    if self.abandoned:
                        break
                    self.running, self.since = slot.name, time.perf_counter()
                try:
                    results = run_slot(slot, self.inputs)
                except BaseException as exc:  # run_slot turns model errors into rows; a bug (or a model's
                    # sys.exit) here still never votes, and never ends the worker
                    results = error_results(slot, len(self.inputs.candles), ModelStatus.ERROR,
                                            f"{type(exc).__name__}: {exc}")
                with self.lock:
                    self.results[slot.name], self.running = results, None
        finally:
            self.done.set_result(None)

    def running_ms(self, name: str) -> float | None:
        """How long ``name``'s call in this job has been running; None when it is not running."""
        with self.lock:
            return (time.perf_counter() - self.since) * 1000.0 if self.running == name else None


class _VoterWorker:
    """A daemon thread running voter jobs; busy from a job's submission until it is done."""

    def __init__(self, k: int) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.last: _VoterJob | None = None
        self.native_id: int | None = None  # the thread's id for its CPU affinity, once it runs
        self._thread = threading.Thread(target=self._work, name=f"voters-{k}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        self.native_id = threading.get_native_id()
        while (job := self._jobs.get()) is not None:
            if job.cpus:  # one system call: a worker may serve either lane
                set_cpus(0, job.cpus)
            job.run()

    @property
    def busy(self) -> bool:
        return self.last is not None and not self.last.done.done()

    def submit(self, job: _VoterJob) -> None:
        self.last = job
        self._jobs.put(job)

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        if not self.busy:
            self._thread.join(timeout)


class VoterPool:
    """Runs a batch's voters one after another on an idle worker, within a deadline.

    A model still running at the deadline is reported timed out; its worker is left with it, the
    voters after it run on another worker (with a timeout of their own), and the model is skipped
    until that call returns: one hung model costs a decision its timeout once, never a thread per
    decision, never a second call queued behind the first. Used by one caller at a time (the
    engine's lock)."""

    def __init__(self) -> None:
        self._workers: list[_VoterWorker] = []
        self._hung: dict[tuple[str, str | None], _VoterJob] = {}  # (model, sha256) → the job stuck in it
        self._cpus: frozenset[int] = frozenset()  # the decision's CPUs (set_cpus); empty: not pinned

    def _idle_worker(self) -> _VoterWorker:
        for w in self._workers:
            if not w.busy:
                return w
        w = _VoterWorker(len(self._workers))
        self._workers.append(w)
        return w

    def set_cpus(self, cpus: frozenset[int]) -> None:
        """Run the workers on ``cpus`` (those started later inherit it from the deciding thread);
        a second lane runs on the other CPUs (``lanes``)."""
        self._cpus = cpus
        for w in self._workers:
            if w.native_id is not None:
                set_cpus(w.native_id, cpus)

    def lanes(self, slots: Sequence[ModelSlot], rows: int,
              most: int = 2) -> list[tuple[list[ModelSlot], frozenset[int]]]:
        """The voters split into at most ``most`` lanes (``AI_ENGINE_VOTER_LANES``) that run at
        once, each with the CPUs it runs on.

        One lane (in turn, on the decision's CPU) below ``LANE_ROWS`` rows or with one CPU: there
        a forward is mostly Python and threads take turns on the interpreter lock. From
        ``LANE_ROWS`` rows the forwards are long C calls that release it, so the sequence voters
        (the longest forwards) run beside the tabular ones, on the CPUs the decision does not use.
        """
        others = ALL_CPUS - self._cpus if self._cpus else ALL_CPUS
        seq = [s for s in slots if s.agent.input_kind == "sequence"]
        tab = [s for s in slots if s.agent.input_kind != "sequence"]
        if most < 2 or rows < LANE_ROWS or len(ALL_CPUS) < 2 or not seq or not tab:
            return [(list(slots), self._cpus)]
        return [(tab, self._cpus), (seq, others if others else self._cpus)]

    def running_ms(self, slot: ModelSlot) -> float | None:
        """How long this model's timed-out call has been running; None when it has none."""
        job = self._hung.get((slot.name, slot.sha256))
        return job.running_ms(slot.name) if job is not None else None

    def run(self, slots: Sequence[ModelSlot], inputs: DecisionInputs, deadline: float,
            timeout_ms: float, lanes: int = 2) -> tuple[dict[str, list[ModelResult]], dict[str, str]]:
        """Each voter's results, or why it has none: ``(results, reasons)`` by model name."""
        for key in [k for k, job in self._hung.items() if job.running != k[0]]:
            del self._hung[key]  # that call has returned
        results: dict[str, list[ModelResult]] = {}
        reasons: dict[str, str] = {}
        todo = []
        for slot in slots:
            busy = self.running_ms(slot)
            if busy is None:
                todo.append(slot)
            else:
                reasons[slot.name] = (f"skipped: a call that timed out after {timeout_ms:g} ms is still running "
                                      f"({busy:.0f} ms)")
        started = []
        for lane, cpus in self.lanes(todo, len(inputs.candles), lanes):  # every lane starts before any is waited on
            job = _VoterJob(lane, inputs, cpus)
            self._idle_worker().submit(job)
            started.append(job)
        for job in started:
            self._finish(job, inputs, deadline, timeout_ms, results, reasons)
        return results, reasons

    def _finish(self, job: _VoterJob, inputs: DecisionInputs, deadline: float, timeout_ms: float,
                results: dict[str, list[ModelResult]], reasons: dict[str, str]) -> None:
        """Wait for a lane until the deadline; a model still running then is timed out, set aside
        with its worker, and the lane's models after it go on on another worker."""
        todo = list(job.slots)
        while todo:
            with contextlib.suppress(FutureTimeout):  # what is done by then is read below
                job.done.result(timeout=max(0.0, deadline - time.perf_counter()))
            with job.lock:
                job.abandoned = not job.done.done()
                results.update(job.results)
                running = job.running
            left = [s for s in todo if s.name not in results and s.name != running]
            if running is None:  # finished, or out of time between two calls: the rest did not start
                for s in left:
                    reasons[s.name] = f"timed out after {timeout_ms:g} ms (not started in time)"
                return
            reasons[running] = f"timed out after {timeout_ms:g} ms"
            hung = next(s for s in todo if s.name == running)
            self._hung[(hung.name, hung.sha256)] = job
            log.error("[%s] timed out after %g ms; excluded from this decision", DISPLAY_NAMES[running], timeout_ms)
            todo, deadline = left, time.perf_counter() + timeout_ms / 1000.0
            if todo:
                job = _VoterJob(todo, inputs, job.cpus)
                self._idle_worker().submit(job)

    def pending(self) -> list[Future]:
        """The jobs still running (a hung call's, until it returns)."""
        return [w.last.done for w in self._workers if w.busy]

    def stop(self) -> None:
        for w in self._workers:
            w.stop()
