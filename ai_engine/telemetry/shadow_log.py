"""The spec's rate-limited shadow log line and the intent log line the spec's greps rely on."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from ai_engine.enums import ModelStatus
from ai_engine.types import DecisionRecord, ModelResult

__all__ = ["ShadowLogger", "intent_line", "log_intent"]

shadow_log = logging.getLogger("ai_engine.shadow")
intent_log = logging.getLogger("ai_engine.intent")


class ShadowLogger:
    """One ``[SHADOW]`` line per model every ``interval_s`` seconds, with the count suppressed since."""

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, display: str, symbol: str, result: ModelResult) -> None:
        now = self._clock()
        last = self._last.get(result.model)
        if last is not None and now - last < self.interval_s:
            self._suppressed[result.model] = self._suppressed.get(result.model, 0) + 1
            return
        self._last[result.model] = now
        suppressed = self._suppressed.pop(result.model, 0)
        tail = f" | suppressed={suppressed}" if suppressed else ""
        p = result.prediction
        if result.status is ModelStatus.UNSAMPLED:  # its budget, not a fault: the line still says it runs
            shadow_log.info("[SHADOW] %s | %s | status=unsampled reason=%s | mode=SHADOW_ONLY%s",
                            display, symbol, result.reason, tail)
            return
        if p is None:
            shadow_log.warning("[SHADOW] %s | %s | status=%s reason=%s | mode=SHADOW_ONLY%s",
                               display, symbol, result.status.value, result.reason, tail)
            return
        shadow_log.info(
            "[SHADOW] %s | %s | action=%s conf=%.4f | prob=%.4f logit=%.4f | mode=SHADOW_ONLY%s",
            display, symbol, p.action.value, p.confidence, p.prob, p.logit, tail,
        )


def intent_line(record: DecisionRecord) -> str:
    """``Publishing trade.intent {...}``: the payload as JSON with ``consensus_count`` its last key.

    The spec's emergency check is ``grep "consensus_count.*4"`` ("if found, shadow filtering
    broken"); with the count last, only ``}`` follows it, so the grep matches a count of 4 and
    nothing else (prices, times and ids before it may hold any digit).
    """
    payload = record.intent_payload()
    payload["consensus_count"] = payload.pop("consensus_count")
    return "Publishing trade.intent " + json.dumps(payload, separators=(",", ":"))


def log_intent(record: DecisionRecord) -> None:
    """Log ``intent_line(record)`` (the line the spec greps for model_breakdown and consensus_count)."""
    if intent_log.isEnabledFor(logging.INFO):
        intent_log.info("%s", intent_line(record))
