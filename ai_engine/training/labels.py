"""Three-class labels (SELL, HOLD, BUY) from forward returns against a no-trade band.

The band keeps fee-sized moves out of BUY/SELL and widens with recent volatility, so the
classes stay meaningful in calm and wild markets alike. The band at row ``t`` only uses
closes up to ``t`` (no look-ahead); only the label itself looks ``horizon`` bars forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ai_engine.exceptions import ConfigError, DataError

__all__ = ["LabelConfig", "UNLABELLED", "make_labels", "rolling_sigma", "volatility_band"]

UNLABELLED = -1  # label of rows whose forward return is unknown (tail, gaps)

BandMode = Literal["vol", "fixed"]


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """How labels are made; stored in every artifact so serving knows what the classes mean.

    Attributes:
        horizon: bars ahead of the forward log return (>= 1).
        fee_band: minimum half-width of the no-trade band, as a log return (covers fees).
            In ``fixed`` mode it is the whole band.
        k: multiple of the horizon-scaled volatility added by ``vol`` mode.
        vol_window: past bars in the rolling volatility (``vol`` mode).
        mode: ``"vol"`` (band = max(fee_band, k * sigma_t)) or ``"fixed"`` (band = fee_band).
    """

    horizon: int = 4
    fee_band: float = 0.002
    k: float = 0.2  # about a third of the rows in each class (0.5 left HOLD at 51-59%: see docs/models.md)
    vol_window: int = 168
    mode: BandMode = "vol"

    def validate(self) -> LabelConfig:
        """Raise ConfigError naming the bad field; returns self for chaining."""
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ConfigError(f"label horizon must be an integer >= 1, got {self.horizon!r}")
        if not np.isfinite(self.fee_band) or self.fee_band < 0:
            raise ConfigError(f"label fee_band must be a finite number >= 0, got {self.fee_band!r}")
        if not np.isfinite(self.k) or self.k < 0:
            raise ConfigError(f"label vol k must be a finite number >= 0, got {self.k!r}")
        if not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise ConfigError(f"label vol_window must be an integer >= 2, got {self.vol_window!r}")
        if self.mode not in ("vol", "fixed"):
            raise ConfigError(f"label band mode must be 'vol' or 'fixed', got {self.mode!r}")
        if self.mode == "fixed" and self.fee_band <= 0:
            raise ConfigError("fixed band mode needs a band > 0 (set --band)")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LabelConfig:
        try:
            return cls(**d).validate()
        except TypeError as exc:
            raise ConfigError(f"bad label_config {d!r}: {exc}") from None

    def describe(self) -> str:
        if self.mode == "fixed":
            return f"h={self.horizon}, fixed band ±{self.fee_band:g}"
        return f"h={self.horizon}, band=max({self.fee_band:g}, {self.k:g}·σ[{self.vol_window}]·√h)"


def rolling_sigma(close: np.ndarray, vol_window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, count) per row, from closes up to that row only.

    ``sigma_t`` is the std of the last ``vol_window`` one-bar log returns ending at ``t`` (missing
    returns skipped), scaled by sqrt(horizon); NaN where fewer than two returns are available.
    ``count`` is how many returns it used. Training labels and the shadow analysis both use it.
    """
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    r1 = np.full(n, np.nan)
    if n > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            r1[1:] = np.diff(np.log(close))  # r1[t] = log(c_t / c_{t-1}), known at t
    valid = np.isfinite(r1)
    filled = np.where(valid, r1, 0.0)
    c1 = np.concatenate([[0.0], np.cumsum(filled)])
    c2 = np.concatenate([[0.0], np.cumsum(filled * filled)])
    cn = np.concatenate([[0], np.cumsum(valid)])
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - vol_window, 0)
    cnt = cn[hi] - cn[lo]
    s1, s2 = c1[hi] - c1[lo], c2[hi] - c2[lo]
    ok = cnt >= 2
    sigma = np.full(n, np.nan)
    sigma[ok] = np.sqrt(np.maximum(s2[ok] - s1[ok] ** 2 / cnt[ok], 0.0) / (cnt[ok] - 1)) * np.sqrt(horizon)
    return sigma, cnt


def volatility_band(close: np.ndarray, cfg: LabelConfig) -> np.ndarray:
    """Half-width of the no-trade band per row, using only closes up to that row:
    ``max(fee_band, k * sigma_t)`` (see :func:`rolling_sigma`); the fee band where sigma is unknown."""
    n = np.asarray(close).shape[0]
    if cfg.mode == "fixed" or n < 3:
        return np.full(n, cfg.fee_band)
    sigma, cnt = rolling_sigma(close, cfg.vol_window, cfg.horizon)
    return np.where(cnt >= 2, np.maximum(cfg.fee_band, cfg.k * np.nan_to_num(sigma)), cfg.fee_band)


def make_labels(
    close: np.ndarray,
    cfg: LabelConfig,
    *,
    open_time: np.ndarray | None = None,
    interval_ms: int | None = None,
) -> np.ndarray:
    """Labels per row as CLASS_ORDER indices (0 SELL, 1 HOLD, 2 BUY), UNLABELLED where unknown.

    The last ``horizon`` rows are unlabelled, and so are rows whose horizon spans a gap in
    ``open_time`` (when times and ``interval_ms`` are given), since their "h-bar" return is not.
    """
    cfg.validate()
    close = np.asarray(close, dtype=np.float64)
    if close.ndim != 1:
        raise DataError(f"close must be 1-D, got shape {close.shape}")
    if close.size and (not np.all(np.isfinite(close)) or np.any(close <= 0)):
        bad = int(np.flatnonzero(~np.isfinite(close) | (close <= 0))[0])
        raise DataError(f"close must be finite and > 0; row {bad} has {close[bad]!r}")
    n = close.shape[0]
    h = cfg.horizon
    y = np.full(n, UNLABELLED, dtype=np.int64)
    if n <= h:
        return y
    r = np.log(close[h:] / close[:-h])
    band = volatility_band(close, cfg)[:-h]
    lab = np.where(r > band, 2, np.where(r < -band, 0, 1))
    if open_time is not None and interval_ms is not None:
        t = np.asarray(open_time, dtype=np.int64)
        lab = np.where(t[h:] - t[:-h] == h * interval_ms, lab, UNLABELLED)
    y[:-h] = lab
    return y
