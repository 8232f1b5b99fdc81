"""What "correct" means for a prediction: the model's own training label definition.

The band and horizon come from the model's ``label_config`` in the ``configs`` table (per
decision, through its ``config_id``, so a model swap mid-window is scored by each version's
own definition); ``--horizon`` and ``--band`` override them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Literal

from ai_engine.exceptions import ConfigError

__all__ = ["LabelSpec", "DEFAULT_LABEL", "label_spec_from_config", "apply_overrides"]


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """Outcome rule: BUY right if log-return over ``horizon`` bars > +band, SELL if < -band, HOLD within.

    In ``vol`` mode the band at decision time t is max(fee_band, k * sigma_t), sigma_t the std of
    the last ``vol_window`` one-bar log returns up to t scaled by sqrt(horizon) (as in training);
    ``fixed_band`` is the band of ``fixed`` mode and the fallback when that history is missing.
    """

    horizon: int = 4
    mode: Literal["vol", "fixed"] = "vol"
    fee_band: float = 0.002
    k: float = 0.5
    vol_window: int = 168
    fixed_band: float = 0.002
    source: str = "default"

    def describe(self) -> str:
        if self.mode == "fixed":
            rule = f"h={self.horizon}, fixed band ±{self.fixed_band:g}"
        else:
            rule = f"h={self.horizon}, band=max({self.fee_band:g}, {self.k:g}·σ[{self.vol_window}]·√h)"
        return f"{rule} ({self.source})"

    def to_json(self) -> dict:
        return {"horizon": self.horizon, "mode": self.mode, "fee_band": self.fee_band, "k": self.k,
                "vol_window": self.vol_window, "fixed_band": self.fixed_band, "source": self.source}


DEFAULT_LABEL = LabelSpec(source="project default: no label_config in configs")


def _positive(name: str, value, *, integer: bool = False, zero_ok: bool = False) -> float:
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, int | float)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"label_config {name}={value!r} is not valid")
    return value


def label_spec_from_config(config_id: str, payload: str, model: str) -> LabelSpec | None:
    """The model's label rule from one ``configs`` payload; None when it carries none."""
    try:
        lc = json.loads(payload).get("models", {}).get(model, {}).get("label_config")
    except (json.JSONDecodeError, AttributeError):
        raise ConfigError(f"configs row {config_id!r} has a payload that is not a JSON object") from None
    if not lc:
        return None
    if not isinstance(lc, dict):
        raise ConfigError(f"configs row {config_id!r}: models.{model}.label_config is not an object")
    try:
        mode = lc.get("mode", "vol")
        if mode not in ("vol", "fixed"):
            raise ConfigError(f"label_config mode={mode!r} is not valid: expected 'vol' or 'fixed'")
        fee = _positive("fee_band", lc.get("fee_band", 0.002), zero_ok=mode == "vol")
        return LabelSpec(
            horizon=int(_positive("horizon", lc.get("horizon", 4), integer=True)),
            mode=mode,
            fee_band=fee,
            k=_positive("k", lc.get("k", 0.5), zero_ok=True),
            vol_window=int(_positive("vol_window", lc.get("vol_window", 168), integer=True)),
            fixed_band=_positive("band", lc.get("band", fee) or 0.002),
            source=f"configs {config_id}",
        )
    except ConfigError as exc:
        raise ConfigError(f"configs row {config_id!r}, model {model!r}: {exc}") from None


def apply_overrides(spec: LabelSpec, horizon: int | None, band: float | None) -> LabelSpec:
    """``--horizon`` replaces the horizon; ``--band`` switches to a fixed band of that width."""
    if horizon is not None:
        spec = replace(spec, horizon=horizon, source=f"{spec.source}; horizon from --horizon")
    if band is not None:
        spec = replace(spec, mode="fixed", fixed_band=band, source=f"{spec.source}; band from --band")
    return spec
