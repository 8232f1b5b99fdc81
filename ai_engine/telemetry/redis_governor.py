"""Governor state in Redis: ``<prefix>:kill`` ("0"/"1"), ``<prefix>:mode`` (LIVE/PAPER/HALT) and
``<prefix>:governor:execution`` (JSON: updated_at, updated_by, reason).

Shared by every engine instance and by the execution side. It fails closed: missing keys read as
"never written" (the Governor blocks with "missing"); an unreachable server or a malformed value
raises, and the Governor blocks with that reason.
"""

from __future__ import annotations

import json

import redis

from ai_engine.enums import GovernorMode
from ai_engine.exceptions import DataError, TransientError
from ai_engine.governor import GovernorState
from ai_engine.telemetry.redis_streams import redact_url

__all__ = ["RedisGovernorBackend"]


class RedisGovernorBackend:
    """``GovernorBackend`` over Redis keys under ``prefix``."""

    def __init__(self, url: str, prefix: str = "quantum", *, timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self.kill_key = f"{prefix}:kill"
        self.mode_key = f"{prefix}:mode"
        self.execution_key = f"{prefix}:governor:execution"
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                           decode_responses=True)

    def describe(self) -> str:
        return f"redis {redact_url(self.url)} keys {self.kill_key}, {self.mode_key}"

    def read(self) -> GovernorState | None:
        try:
            kill, mode, execution = self._redis.mget(self.kill_key, self.mode_key, self.execution_key)
        except redis.RedisError as exc:
            raise TransientError(f"Redis {redact_url(self.url)} unreachable: {exc}") from None
        if kill is None or mode is None:
            return None
        if kill not in ("0", "1"):
            raise DataError(f"{self.kill_key}={kill!r} is malformed: expected '0' or '1'")
        try:
            gm = GovernorMode(mode)
        except ValueError:
            raise DataError(f"{self.mode_key}={mode!r} is malformed: expected LIVE, PAPER or HALT") from None
        info: dict = {}
        if execution is not None:
            try:
                info = json.loads(execution)
            except json.JSONDecodeError as exc:
                raise DataError(f"{self.execution_key} is not valid JSON: {exc}") from None
            if not isinstance(info, dict):
                raise DataError(f"{self.execution_key} is malformed: expected a JSON object")
        return GovernorState.from_json(
            {"kill": kill == "1", "mode": gm.value, **{k: info[k] for k in ("updated_at", "updated_by", "reason") if k in info}},
            self.describe(),
        )

    def write(self, state: GovernorState) -> None:
        """Set all three keys in one MULTI/EXEC, so a reader never sees half a change."""
        execution = {"updated_at": state.updated_at, "updated_by": state.updated_by, "reason": state.reason}
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.kill_key, "1" if state.kill else "0")
                pipe.set(self.mode_key, state.mode.value)
                pipe.set(self.execution_key, json.dumps(execution))
                pipe.execute()
        except redis.RedisError as exc:
            raise TransientError(f"Redis {redact_url(self.url)}: governor state not written: {exc}") from None
