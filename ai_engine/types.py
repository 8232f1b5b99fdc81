"""Typed records passed between modules (frozen, slotted dataclasses; no string-keyed dicts)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from ai_engine.enums import CLASS_ORDER, Action, ModelRole, ModelStatus

__all__ = [
    "Candle",
    "Prediction",
    "ModelResult",
    "EnsembleDecision",
    "GovernorVerdict",
    "DecisionRecord",
    "event_id_for",
    "INTERVAL_MS",
    "LATE_JOINED",
    "LazyRows",
]

# Reason stored with a (shadow) result that arrived after its decision was published and was
# joined to the stored row then; the analysis counts rows by it.
LATE_JOINED = "joined late"

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}

_EVENT_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-4c56-9b1e-7a0f6f1d2c11")

# Plain-string values of the enums, for the serialisers: a dict lookup instead of the enum's
# ``.value`` property, which is a Python-level call and was a third of a record's JSON cost.
_TEXT: dict[object, str] = {m: m.value for e in (Action, ModelRole, ModelStatus) for m in e}
_CLASS_INDEX: dict[object, int] = {a: k for k, a in enumerate(CLASS_ORDER)}
_SELL, _HOLD, _BUY = (a.value for a in CLASS_ORDER)


def event_id_for(kind: str, symbol: str, interval: str, open_time: int) -> str:
    """Deterministic event id: the same candle always yields the same id, so replays never duplicate."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{kind}|{symbol}|{interval}|{open_time}"))


class LazyRows(Sequence):
    """A batch's rows as a read-only sequence whose row objects are built on first read (by
    ``_build(i)``) and kept: the engine decides on the arrays behind them, and the objects are
    made for the record, after the decision is ready."""

    __slots__ = ("_rows",)

    def __init__(self, n: int) -> None:
        self._rows: list = [None] * n

    def _build(self, i: int):
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        row = self._rows[i]
        if row is None:
            row = self._rows[i] = self._build(range(len(self._rows))[i])
        return row


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed candle. ``open_time`` is the candle's open time in UTC milliseconds."""

    symbol: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    synthetic: bool = False

    @property
    def close_time(self) -> int:
        return self.open_time + INTERVAL_MS[self.interval]


@dataclass(frozen=True, slots=True)
class Prediction:
    """What one model said about one input row. ``probs`` follows CLASS_ORDER (SELL, HOLD, BUY)."""

    action: Action
    confidence: float
    probs: tuple[float, float, float]
    logit: float

    @classmethod
    def from_probs(cls, probs, logits=None) -> Prediction:
        """Build from a probability row (and optional logit row); the action is the arg-max class."""
        if len(probs) != 3:
            raise ValueError(f"expected 3 class probabilities, got {len(probs)}")
        p = (float(probs[0]), float(probs[1]), float(probs[2]))
        k = 0  # the first of equal maxima, as max() would pick; unrolled: this runs per row per model
        if p[1] > p[0]:
            k = 1
        if p[2] > p[k]:
            k = 2
        logit = float(logits[k]) if logits is not None else _logit(p[k])
        return cls(action=CLASS_ORDER[k], confidence=p[k], probs=p, logit=logit)  # type: ignore[arg-type]

    @property
    def prob(self) -> float:
        """Probability of the predicted action (the spec's ``prob``)."""
        return self.probs[_CLASS_INDEX[self.action]]


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One model's entry in ``model_breakdown``: its role, status and (when ok) its prediction."""

    model: str
    role: ModelRole
    status: ModelStatus
    weight: float
    version: str | None = None
    sha256: str | None = None
    prediction: Prediction | None = None
    latency_ms: float | None = None
    reason: str | None = None

    @property
    def shadow(self) -> bool:
        return self.role is ModelRole.SHADOW

    @property
    def votes(self) -> bool:
        """True only for a healthy voter; shadow, disabled and failed models never vote."""
        return self.role is ModelRole.VOTER and self.status is ModelStatus.OK and self.prediction is not None

    @property
    def display_name(self) -> str:
        return f"{self.model}_shadow" if self.shadow else self.model

    def to_json(self) -> dict:
        p = self.prediction
        shadow = self.role is ModelRole.SHADOW
        out = {
            "model": f"{self.model}_shadow" if shadow else self.model,
            "role": _TEXT[self.role],
            "shadow": shadow,
            "status": _TEXT[self.status],
            "action": None,
            "confidence": None,
            "prob": None,
            "logit": None,
            "probs": None,
            "weight": self.weight,
            "version": self.version,
            "sha256": self.sha256,
            "latency_ms": round(self.latency_ms, 3) if self.latency_ms is not None else None,
            "reason": self.reason,
        }
        if p is not None:
            sell, hold, buy = p.probs
            out.update(action=_TEXT[p.action], confidence=round(p.confidence, 6), prob=round(p.prob, 6),
                       logit=round(p.logit, 6), probs={_SELL: round(sell, 6), _HOLD: round(hold, 6), _BUY: round(buy, 6)})
        return out


@dataclass(frozen=True, slots=True)
class EnsembleDecision:
    """Result of the weighted vote. ``total_models`` counts the models that actually voted."""

    action: Action
    confidence: float
    consensus_count: int
    total_models: int
    actionable: bool
    boosted: bool
    scores: tuple[float, float, float]  # weighted score per CLASS_ORDER
    results: tuple[ModelResult, ...]


@dataclass(frozen=True, slots=True)
class GovernorVerdict:
    """Whether an actionable decision may be published, and why not."""

    allowed: bool
    reason: str | None
    kill: bool | None
    mode: str | None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """Everything recorded for one decision; HOLD and blocked decisions included."""

    event_id: str
    symbol: str
    interval: str
    candle_open_time: int
    decided_at: int  # wall clock, ms UTC
    entry_price: float
    decision: EnsembleDecision
    published: bool
    blocked_reason: str | None
    config_id: str
    decision_latency_ms: float
    synthetic: bool = False
    intent_event_id: str | None = field(default=None)

    @property
    def action(self) -> Action:
        return self.decision.action

    def model_breakdown(self) -> dict[str, dict]:
        return {r.model: r.to_json() for r in self.decision.results}

    def to_json(self) -> dict:
        d = self.decision
        return {
            "event_id": self.event_id,
            "symbol": self.symbol,
            "interval": self.interval,
            "candle_open_time": self.candle_open_time,
            "decided_at": self.decided_at,
            "action": _TEXT[d.action],
            "confidence": round(d.confidence, 6),
            "consensus_count": d.consensus_count,
            "total_models": d.total_models,
            "actionable": d.actionable,
            "boosted": d.boosted,
            "published": self.published,
            "blocked_reason": self.blocked_reason,
            "entry_price": self.entry_price,
            "config_id": self.config_id,
            "decision_latency_ms": round(self.decision_latency_ms, 3),
            "synthetic": self.synthetic,
            "model_breakdown": self.model_breakdown(),
        }

    def intent_payload(self, breakdown: dict[str, dict] | None = None) -> dict:
        """The ``trade.intent`` payload (spec fields); only for actionable, allowed decisions.
        ``breakdown``: this record's ``model_breakdown()`` when the caller has built it already."""
        d = self.decision
        return {
            "event_id": self.intent_event_id,
            "decision_event_id": self.event_id,
            "symbol": self.symbol,
            "interval": self.interval,
            "side": _TEXT[d.action],
            "confidence": round(d.confidence, 6),
            "consensus_count": d.consensus_count,
            "total_models": d.total_models,
            "model_breakdown": self.model_breakdown() if breakdown is None else breakdown,
            "timestamp": self.candle_open_time,
            "decided_at": self.decided_at,
            "entry_price": self.entry_price,
            "config_id": self.config_id,
            "synthetic": self.synthetic,
        }
