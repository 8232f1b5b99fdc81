"""The spec's four evaluation gates, judged with their sampling error, and the verdict.

A gate of 1-3 whose 95% interval lies wholly on one side of its threshold is PASS or FAIL at any
n from ``MIN_JUDGED_N`` (30) valid predictions: the interval already carries the sampling error,
and a clear failure (confidence stddev 0.0173 [0.0130, 0.0215] against 0.05) must not read
INCONCLUSIVE for want of rows. ``min_gate_n`` (100, a Wilson half-width of at most ~10 points)
only guards intervals that straddle the threshold: below it they say how many rows there are.
Below 30 nothing is judged (too few rows for the intervals' large-sample approximations). Gate 4
needs at least two confidence buckets with ``min_bucket_n`` = 30 scored predictions each.

The verdict is READY with >= 3 PASS, NOT_READY when even passing every inconclusive gate could
not reach 3, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ai_engine.exceptions import ConfigError

__all__ = ["Thresholds", "Gate", "GateStatus", "Verdict", "verdict_for", "VERDICT_LINES", "EXIT_CODES", "MIN_JUDGED_N"]

GateStatus = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Verdict = Literal["READY", "NOT_READY", "INCONCLUSIVE"]

VERDICT_LINES = {
    "READY": "✅ READY FOR ACTIVATION (≥3/4 gates passed)",
    "NOT_READY": "❌ NOT READY (need ≥3/4 gates)",
}
EXIT_CODES = {"READY": 0, "NOT_READY": 1, "INCONCLUSIVE": 3}
GATES_NEEDED = 3
MIN_JUDGED_N = 30  # below this a gate is never judged, whatever its interval says


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Gate thresholds (spec defaults) and the statistics settings behind them.

    Attributes:
        max_action_share: gate 1, no action above this share of predictions.
        min_stddev: gate 2, confidence standard deviation at least this.
        min_agreement: gate 3, agreement with the ensemble action at least this.
        min_bucket_n: scored predictions a confidence bucket needs to count for gate 4.
        min_gate_n: valid predictions gates 1-3 need before an interval that straddles the
            threshold stops being put down to too few rows (a clear interval is judged from 30).
        bootstrap_samples: resamples of the ECE/Brier bootstrap.
        seed: seed of that bootstrap (reports repeat exactly).
    """

    max_action_share: float = 0.70
    min_stddev: float = 0.05
    min_agreement: float = 0.55
    min_bucket_n: int = 30
    min_gate_n: int = 100
    bootstrap_samples: int = 200
    seed: int = 0

    def validate(self) -> Thresholds:
        for name in ("max_action_share", "min_agreement"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v <= 1):
                raise ConfigError(f"threshold {name}={v!r} must be a share in (0, 1]")
        if not (isinstance(self.min_stddev, int | float) and math.isfinite(self.min_stddev) and self.min_stddev >= 0):
            raise ConfigError(f"threshold min_stddev={self.min_stddev!r} must be a number >= 0")
        for name in ("min_bucket_n", "min_gate_n", "bootstrap_samples"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name}={v!r} must be an integer >= 1")
        return self

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate: ``value`` with its interval, ``threshold`` as text, ``status`` and why."""

    number: int
    name: str
    metric: str
    value: float | None
    lo: float | None
    hi: float | None
    threshold: str
    status: GateStatus
    detail: str

    def to_json(self) -> dict:
        r = lambda x: None if x is None or not math.isfinite(x) else round(x, 6)  # noqa: E731
        return {"name": self.name, "metric": self.metric, "value": r(self.value), "lo": r(self.lo),
                "hi": r(self.hi), "threshold": self.threshold, "status": self.status, "detail": self.detail}


def verdict_for(gates: tuple[Gate, ...]) -> Verdict:
    passed = sum(g.status == "PASS" for g in gates)
    open_ = sum(g.status == "INCONCLUSIVE" for g in gates)
    if passed >= GATES_NEEDED:
        return "READY"
    if passed + open_ < GATES_NEEDED:
        return "NOT_READY"
    return "INCONCLUSIVE"
