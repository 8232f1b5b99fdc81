"""A loaded agent whose forwards run in a child process of their own.

Why: every model's forward is partly Python, and threads of one process take turns on one
interpreter lock. A shadow model on a thread of the engine slows down (and is slowed down by) the
voters, the records and the writer; in its own process it shares nothing with them but the CPU.
A one-year replay with PatchTST in shadow goes about a fifth faster (docs/performance.md).
A crash of the model (even of native code) ends only the child: its calls fail with the reason and
the next call after ``RESTART_AFTER_S`` starts a fresh child.

The child loads the same artifact with the same checks (sha256 included) and answers requests on
its stdin/stdout: arrays go as ``.npy`` bytes read with ``allow_pickle=False``, errors as text, so
nothing is ever unpickled. It computes the calibrated logits; this side turns them into
predictions exactly as ``BaseAgent.predict`` does.

    python -m ai_engine.agents.isolated MODEL PATH SHA256   (started by IsolatedAgent, not by hand)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ai_engine.agents.base import predictions_from_logits
from ai_engine.cpu_affinity import ALL_CPUS, set_cpus, unpin_current_thread
from ai_engine.exceptions import ModelLoadError
from ai_engine.types import Prediction

__all__ = ["IsolatedAgent", "ModelProcessError"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # importing torch and loading a net take seconds on a busy machine
RESTART_AFTER_S = 10.0  # a child that died is started again on the first call after this
_HEADER = struct.Struct("<cQ")  # frame kind, payload length


class ModelProcessError(RuntimeError):
    """The model's process failed a call (its error, or it is gone)."""


def _send(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(_HEADER.pack(kind, len(payload)))
    out.write(payload)
    out.flush()


def _recv(inp: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None at end of stream."""
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    kind, n = _HEADER.unpack(head)
    payload = inp.read(n)
    if len(payload) < n:
        return None
    return kind, payload


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _from_npy(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


def _ready_failure(proc: subprocess.Popen, sha256: str) -> str | None:
    """Wait for the child's ready frame; None when it loaded ``sha256``, else why it did not start."""
    frame: list = []

    def read() -> None:
        try:
            frame.append(_recv(proc.stdout))
        except (OSError, ValueError):  # closed under it: the child was stopped while it started
            frame.append(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    if not frame or frame[0] is None:
        if frame:  # its end of output: wait for the exit code rather than call it slow
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        code = proc.poll()
        if proc.stopping:
            return "stopped before it was ready"
        return f"exited with code {code}" if code is not None else f"not ready after {START_TIMEOUT_S:g} s"
    kind, payload = frame[0]
    if kind == b"E":
        return payload.decode(errors="replace")
    try:
        loaded = json.loads(payload).get("sha256") if kind == b"R" else None
    except ValueError:
        loaded = None
    return None if loaded == sha256 else f"it loaded sha256 {loaded}, expected {sha256}"


def _pump(proc: subprocess.Popen, name: str, sha256: str) -> None:
    """Wait until the child is ready, then write the queued requests to it, in order, until told
    to stop or the child is gone. Requests queued while it starts wait in the queue."""
    unpin_current_thread()  # a restart starts it from the deciding thread, whose CPU is the voters'
    proc.failure = _ready_failure(proc, sha256)
    if proc.failure is not None:
        if proc.stopping:  # the engine closed while it was starting: nothing went wrong
            log.info("[%s] model process %s", name, proc.failure)
        else:
            log.error("[%s] model process did not start: %s", name, proc.failure)
        _stop(proc)
    proc.started.set()
    if proc.failure is not None:
        return
    log.info("[%s] model runs in its own process (pid %d)", name, proc.pid)
    while (data := proc.outbox.get()) is not None:
        try:
            _send(proc.stdin, b"X", data)
        except (OSError, ValueError):  # the child is gone: reading the reply finds its end and says so
            return


def _stop(proc: subprocess.Popen) -> None:
    """End a child (it holds no state worth a graceful exit; its pump may be blocked writing to it)."""
    proc.stopping = True
    proc.outbox.put(None)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError, ValueError):
            f.close()


class _Reply:
    """The answer to one request: ``result()`` reads it (or raises why there is none)."""

    def __init__(self, agent: IsolatedAgent, proc: subprocess.Popen | None, seq: int,
                 error: Exception | None = None) -> None:
        self._agent, self._proc, self._seq, self._error = agent, proc, seq, error

    def result(self) -> list[Prediction]:
        if self._error is not None:
            raise self._error
        return self._agent._read(self._proc, self._seq)


class IsolatedAgent:
    """``agent``'s predictions, computed by a child process that loaded the same artifact.

    Everything else (name, version, sha256, input kind, window length, metadata) is read from
    ``agent``, the copy this process loaded and verified. The child starts in the background: a
    reload or a start never waits for it; requests sent meanwhile wait in its queue (a live shadow
    entry is then ``late`` and joined when the answer comes). ``send`` queues a request and returns
    its reply; ``predict`` is both in one call.
    """

    isolated = True

    def __init__(self, agent: Any, path: Path | str, key: str | None = None) -> None:
        self._agent = agent
        self._path = Path(path)
        self._key = key or agent.name  # the slot's key in log lines: patchtst_r2 beside patchtst
        self._send_lock = threading.Lock()
        self._read_turn = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._died_at: float | None = None
        self._start()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # our own state, not set yet (never the agent's)
            raise AttributeError(name)
        return getattr(self._agent, name)

    @property
    def pid(self) -> int | None:
        """The child's pid (the last one, when it is gone)."""
        return self._pid

    @property
    def process_state(self) -> str:
        """``starting``, ``running``, or why the child is not running (for /health)."""
        proc = self._proc
        if proc is None:
            return f"exited; a new one starts on a call after {RESTART_AFTER_S:g} s"
        if not proc.started.is_set():
            return "starting"
        if proc.failure is not None:
            return f"did not start: {proc.failure}"
        return "running" if proc.poll() is None else f"exited with code {proc.returncode}"

    def wait_started(self, timeout: float | None = None) -> str | None:
        """Wait until the current child is ready; None when it is, else why it is not."""
        proc = self._proc
        if proc is None:
            return "model process exited"
        if not proc.started.wait(timeout):
            return "still starting"
        return None if proc.failure is None else f"model process did not start: {proc.failure}"

    def _start(self) -> None:
        agent = self._agent
        cmd = [sys.executable, "-m", "ai_engine.agents.isolated", agent.name, str(self._path), agent.sha256]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise ModelLoadError(f"{agent.name}: model process did not start: {exc}") from None
        set_cpus(proc.pid, ALL_CPUS)  # not the deciding thread's CPU, which a restart would pass on
        proc.outbox = queue.SimpleQueue()  # requests waiting for the pump thread
        proc.started = threading.Event()  # set once the child is ready or has failed to start
        proc.failure = None
        proc.stopping = False  # set by _stop: a start cut short is not a failure
        proc.sent = proc.read = 0  # requests queued for this child, replies read from it
        self._proc, self._pid = proc, proc.pid
        self._finalizer = weakref.finalize(self, _stop, proc)
        threading.Thread(target=_pump, args=(proc, self._key, agent.sha256), name=f"model-{self._key}-pipe",
                         daemon=True).start()

    def send(self, X: Any) -> _Reply:
        """Queue a request for ``X``'s predictions; ``result()`` on the reply waits for them.

        Requests queue ahead of the child, so it starts the next batch the moment it finishes one,
        and a busy child never blocks the sender. Every reply must be read (``result``), in the
        order sent; the engine reads each model's on one thread. A child found gone fails the
        requests sent to it; the first request ``RESTART_AFTER_S`` later starts a new one (a model
        that crashes at every call cannot make the engine spawn processes in a loop)."""
        data = _npy(np.ascontiguousarray(X, dtype=np.float32 if self._agent.input_kind == "sequence" else np.float64))
        with self._send_lock:
            try:
                if self._proc is None:
                    self._restart()
            except Exception as exc:
                return _Reply(self, None, 0, exc)
            proc = self._proc
            seq, proc.sent = proc.sent, proc.sent + 1
            proc.outbox.put(data)
        return _Reply(self, proc, seq)

    def predict(self, X: Any) -> list[Prediction]:
        """One Prediction per row, as ``BaseAgent.predict``; raises ModelProcessError on failure."""
        return self.send(X).result()

    def _read(self, proc: subprocess.Popen, seq: int) -> list[Prediction]:
        proc.started.wait()
        frame = None
        with self._read_turn:
            self._read_turn.wait_for(lambda: proc.read == seq)
            if proc.failure is None:
                try:
                    frame = _recv(proc.stdout)
                except (OSError, ValueError):
                    frame = None
            proc.read += 1
            self._read_turn.notify_all()
        if frame is None:
            with self._send_lock:
                if self._proc is proc:
                    self._finalizer()
                    self._proc, self._died_at = None, time.monotonic()
            if proc.poll() is None:
                _stop(proc)
            if proc.failure is not None:
                raise ModelProcessError(f"model process did not start: {proc.failure}")
            raise ModelProcessError(f"model process exited with code {proc.returncode}; a new one starts on a call "
                                    f"after {RESTART_AFTER_S:g} s")
        kind, payload = frame
        if kind == b"E":
            raise ModelProcessError(payload.decode(errors="replace"))
        return predictions_from_logits(_from_npy(payload), self._agent.passes_logits)

    def _restart(self) -> None:
        if time.monotonic() - self._died_at < RESTART_AFTER_S:
            raise ModelProcessError(f"model process exited; a new one starts after {RESTART_AFTER_S:g} s")
        log.warning("[%s] model process gone; starting a new one", self._key)
        self._died_at = time.monotonic()  # a start that fails waits out the back-off too
        self._start()
        self._died_at = None

    def close(self) -> None:
        """End the child now (it also ends when this object is collected, or this process exits)."""
        self._finalizer()


def _serve(model: str, path: str, sha256: str) -> int:
    """The child: load, say ready, answer requests until stdin closes."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (a library's warning) must not corrupt the protocol
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s %(levelname)s [{model} process] %(message)s")
    try:
        from ai_engine.agents import load_agent

        agent = load_agent(model, path, expected_sha256=sha256)
        if agent.input_kind == "sequence":
            import torch

            torch.set_num_threads(1)  # one intra-op thread per model, as in the engine
        set_threads = getattr(agent, "set_inference_threads", None)
        if set_threads is not None:
            set_threads(1)
    except Exception as exc:
        _send(proto_out, b"E", f"{type(exc).__name__}: {exc}".encode())
        return 1
    _send(proto_out, b"R", json.dumps({"sha256": agent.sha256, "version": agent.version}).encode())
    while (frame := _recv(proto_in)) is not None:
        try:
            reply = b"L", _npy(agent.predict_logits(_from_npy(frame[1])))
        except Exception as exc:  # reported to the engine, which records the reason for the rows
            reply = b"E", f"{type(exc).__name__}: {exc}".encode()
        _send(proto_out, *reply)
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve(*sys.argv[1:4]))
