"""Governor: kill switch and execution mode, checked before anything is published.

It fails closed (failure mode 17): a state that is missing, unreadable or malformed blocks every
actionable decision, and the verdict always says why. State lives in a JSON file (embedded
default) or in Redis keys (see ``ai_engine.telemetry.redis_governor``) behind the same protocol.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ai_engine.enums import GovernorMode
from ai_engine.exceptions import DataError
from ai_engine.lifecycle.envfile import write_atomic
from ai_engine.types import EnsembleDecision, GovernorVerdict

__all__ = ["GovernorState", "GovernorBackend", "FileGovernorBackend", "Governor"]

_NO_VERDICT = GovernorVerdict(allowed=False, reason=None, kill=None, mode=None)  # a HOLD's: nothing to let through


@dataclass(frozen=True, slots=True)
class GovernorState:
    kill: bool
    mode: GovernorMode
    updated_at: int = 0
    updated_by: str = ""
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self) | {"mode": self.mode.value}

    @classmethod
    def from_json(cls, data: object, source: str) -> GovernorState:
        if not isinstance(data, dict) or not isinstance(data.get("kill"), bool) or "mode" not in data:
            raise DataError(f"governor state in {source} is malformed: expected {{'kill': bool, 'mode': ...}}")
        try:
            mode = GovernorMode(data["mode"])
        except ValueError:
            raise DataError(f"governor state in {source} has unknown mode {data['mode']!r}") from None
        return cls(kill=data["kill"], mode=mode, updated_at=int(data.get("updated_at", 0)),
                   updated_by=str(data.get("updated_by", "")), reason=str(data.get("reason", "")))

    @classmethod
    def new(cls, kill: bool, mode: GovernorMode, reason: str = "") -> GovernorState:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        return cls(kill=kill, mode=mode, updated_at=int(time.time() * 1000), updated_by=who, reason=reason)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are unique: ``{"kill": true, "kill": false}`` would otherwise read
    as its last value, so an edit that adds a key instead of changing it could release the switch."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"key {next(k for k in keys if keys.count(k) > 1)!r} appears more than once")
    return dict(pairs)


class GovernorBackend(Protocol):
    def read(self) -> GovernorState | None:
        """Current state; None when none was ever written; raise on unreadable state."""

    def write(self, state: GovernorState) -> None: ...

    def describe(self) -> str: ...


class FileGovernorBackend:
    """Governor state in a JSON file, replaced atomically on every change.

    ``read`` runs on every decision batch, so the parsed state is kept together with the file's
    identity (device, inode, size, mtime and ctime in ns) and only re-read when ``stat`` shows a
    different file: an atomic replace gives a new inode, an in-place edit a new mtime/ctime. As in
    git's "racy clean" rule, a file changed less than ``stable_after_s`` before it was read is not
    cached (a second edit within one timestamp tick would look unchanged). A failed ``stat`` is a
    failed read (blocks); a file that fails to parse is never cached.
    """

    def __init__(self, path: Path, stable_after_s: float = 2.0) -> None:
        self.path = Path(path)
        self.stable_ns = int(stable_after_s * 1e9)
        self._cached: tuple[tuple[int, ...], GovernorState] | None = None

    def describe(self) -> str:
        return f"file {self.path}"

    def read(self) -> GovernorState | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cached = None
            return None
        except OSError as exc:
            raise DataError(f"governor state {self.path} cannot be read: {exc}") from None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DataError(f"governor state {self.path} cannot be read: {exc}") from None
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise DataError(f"governor state {self.path} is not valid JSON: {exc}") from None
        except ValueError as exc:
            raise DataError(f"governor state {self.path} is ambiguous: {exc}") from None
        state = GovernorState.from_json(data, str(self.path))
        stable = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > self.stable_ns
        self._cached = (key, state) if stable else None
        return state

    def write(self, state: GovernorState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(state.to_json(), indent=2) + "\n")


class Governor:
    """Turns an ensemble decision into a publish verdict. Non-actionable decisions need no verdict."""

    def __init__(self, backend: GovernorBackend) -> None:
        self.backend = backend

    def state(self) -> tuple[GovernorState | None, str | None]:
        """(state, error): error is the reason the state cannot be used, which blocks."""
        try:
            st = self.backend.read()
        except Exception as exc:  # any failure to read blocks; never fail open
            return None, f"governor state unreadable ({self.backend.describe()}): {exc}"
        if st is None:
            return None, (
                f"governor state missing ({self.backend.describe()}); "
                "run `ai-engine governor release` to allow intents"
            )
        return st, None

    def check(self, decision: EnsembleDecision, state: tuple[GovernorState | None, str | None] | None = None) -> GovernorVerdict:
        if not decision.actionable:
            return _NO_VERDICT
        return self._verdict(state if state is not None else self.state())

    def check_many(self, actionable: Sequence[bool]) -> list[GovernorVerdict]:
        """``check`` of each decision of a batch, given whether each is actionable: the state is
        read once per batch and only when one is (a HOLD needs no verdict); the rows share the two
        frozen verdicts."""
        if not any(actionable):
            return [_NO_VERDICT] * len(actionable)
        verdict = self._verdict(self.state())
        return [verdict if a else _NO_VERDICT for a in actionable]

    @staticmethod
    def _verdict(state: tuple[GovernorState | None, str | None]) -> GovernorVerdict:
        """The verdict on an actionable decision under ``state`` (from ``state()``)."""
        st, err = state
        if st is None:
            return GovernorVerdict(allowed=False, reason=err, kill=None, mode=None)
        if st.kill:
            why = f"kill switch on (set by {st.updated_by or 'unknown'}" + (f": {st.reason}" if st.reason else "") + ")"
            return GovernorVerdict(allowed=False, reason=why, kill=True, mode=st.mode.value)
        if st.mode is GovernorMode.HALT:
            return GovernorVerdict(allowed=False, reason="governor mode HALT", kill=False, mode=st.mode.value)
        return GovernorVerdict(allowed=True, reason=None, kill=False, mode=st.mode.value)
