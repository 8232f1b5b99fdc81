"""A loaded agent whose forwards run in a child process of their own.

Why: every model's forward is partly Python, and threads of one process take turns on one
interpreter lock. A shadow model on a thread of the engine slows down (and is slowed down by) the
voters, the records and the writer; in its own process it shares nothing with them but the CPU.
A one-year replay with PatchTST in shadow went from 32.5–33.1 s to 25.5–27.2 s (docs/performance.md).
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


def _stop(proc: subprocess.Popen) -> None:
    """End a child: close its stdin (it exits at end of input), kill it if it does not."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    for f in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            f.close()


class IsolatedAgent:
    """``agent``'s predictions, computed by a child process that loaded the same artifact.

    Everything else (name, version, sha256, input kind, window length, metadata) is read from
    ``agent``, the copy this process loaded and verified. Calls are serialised (the engine makes
    one at a time per model anyway).

    Raises:
        ModelLoadError: the child did not start, or loaded something other than ``agent``.
    """

    isolated = True

    def __init__(self, agent: Any, path: Path | str) -> None:
        self._agent = agent
        self._path = Path(path)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._died_at: float | None = None
        self._start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    @property
    def pid(self) -> int | None:
        """The child's pid (the last one, when it is gone)."""
        return self._pid

    def _start(self) -> None:
        agent = self._agent
        cmd = [sys.executable, "-m", "ai_engine.agents.isolated", agent.name, str(self._path), agent.sha256]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        finalizer = weakref.finalize(self, _stop, proc)
        ready: list = []
        reader = threading.Thread(target=lambda: ready.append(_recv(proc.stdout)), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        frame = ready[0] if ready else None
        if frame is None or frame[0] != b"R":
            finalizer()
            why = frame[1].decode(errors="replace") if frame else (
                f"exited with code {proc.returncode}" if proc.poll() is not None else f"not ready after {START_TIMEOUT_S:g} s")
            raise ModelLoadError(f"{agent.name}: model process did not start: {why}")
        info = json.loads(frame[1])
        if info.get("sha256") != agent.sha256:
            finalizer()
            raise ModelLoadError(f"{agent.name}: model process loaded sha256 {info.get('sha256')}, expected {agent.sha256}")
        self._proc, self._finalizer, self._pid = proc, finalizer, proc.pid
        log.info("[%s] model runs in its own process (pid %d)", agent.name, proc.pid)

    def predict(self, X: Any) -> list[Prediction]:
        """One Prediction per row, as ``BaseAgent.predict``; raises ModelProcessError on failure.

        A child found gone fails the call that finds it; the first call ``RESTART_AFTER_S`` later
        starts a new one (so a model that crashes at every call cannot make the engine spawn
        processes in a loop)."""
        X = np.ascontiguousarray(X, dtype=np.float32 if self._agent.input_kind == "sequence" else np.float64)
        with self._lock:
            if self._proc is None:
                self._restart()
            try:
                _send(self._proc.stdin, b"X", _npy(X))
                frame = _recv(self._proc.stdout)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                self._finalizer()
                code, self._proc, self._died_at = self._proc.returncode, None, time.monotonic()
                raise ModelProcessError(f"model process exited with code {code}; a new one starts on a call "
                                        f"after {RESTART_AFTER_S:g} s")
        kind, payload = frame
        if kind == b"E":
            raise ModelProcessError(payload.decode(errors="replace"))
        return predictions_from_logits(_from_npy(payload), self._agent.passes_logits)

    def _restart(self) -> None:
        if time.monotonic() - self._died_at < RESTART_AFTER_S:
            raise ModelProcessError(f"model process exited; a new one starts after {RESTART_AFTER_S:g} s")
        log.warning("[%s] model process gone; starting a new one", self._agent.name)
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
