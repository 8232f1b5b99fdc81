"""Closed sets shared by every module. Values are the strings written to telemetry."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Action", "ModelRole", "ModelStatus", "GovernorMode", "MODEL_NAMES", "CLASS_ORDER"]


class Action(StrEnum):
    """What a model or the ensemble says to do. The only spelling of an action (failure mode 14)."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"

    @classmethod
    def parse(cls, value: str) -> Action:
        """Strict parse: exact upper-case names only, so a stray ``buy`` is an error, not a KeyError later."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown action {value!r}; expected one of BUY, SELL, HOLD") from None


# Column order of every class-probability vector in the project: index 0 SELL, 1 HOLD, 2 BUY.
CLASS_ORDER: tuple[Action, Action, Action] = (Action.SELL, Action.HOLD, Action.BUY)


class ModelRole(StrEnum):
    """A model's role is data, never inferred from its name (failure mode 3)."""

    VOTER = "voter"
    SHADOW = "shadow"
    DISABLED = "disabled"


class ModelStatus(StrEnum):
    """Outcome of one model on one decision."""

    OK = "ok"            # produced a prediction
    ERROR = "error"      # raised or returned garbage during inference
    INACTIVE = "inactive"  # not loaded (missing, broken or mismatched file); reason says why
    LATE = "late"        # shadow result missed the publish deadline; joined to the record later
    DISABLED = "disabled"
    UNSAMPLED = "unsampled"  # a budgeted shadow not sampled for this decision (``sampling``): nothing ran


class GovernorMode(StrEnum):
    """Execution mode held by the governor. Only LIVE and PAPER let intents through."""

    LIVE = "LIVE"
    PAPER = "PAPER"
    HALT = "HALT"


# The four models of the ensemble, in display order.
MODEL_NAMES: tuple[str, ...] = ("xgb", "lgbm", "nhits", "patchtst")
