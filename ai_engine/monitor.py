"""Flat-line detector: notices a model whose recent outputs no longer vary (failure mode 7)."""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

__all__ = ["FlatlineMonitor"]

log = logging.getLogger("ai_engine.monitor")


class FlatlineMonitor:
    """Tracks each model's last ``window`` confidences; flags a model whose std drops below ``min_std``.

    Logs once when a model becomes flat and once when it recovers, never per decision.
    """

    def __init__(self, window: int = 200, min_std: float = 0.005) -> None:
        self.window = window
        self.min_std = min_std
        self._hist: dict[str, deque[float]] = {}
        self.flat: dict[str, float] = {}  # model -> std at the time it was flagged

    def observe(self, model: str, confidences) -> None:
        h = self._hist.setdefault(model, deque(maxlen=self.window))
        h.extend(float(c) for c in confidences)
        if len(h) < self.window:
            return
        std = float(np.std(np.fromiter(h, dtype=float)))
        if std < self.min_std and model not in self.flat:
            self.flat[model] = std
            log.warning("[FLATLINE] %s: last %d confidences have std %.5f < %.5f; its output is flat",
                        model, self.window, std, self.min_std)
        elif std >= self.min_std and model in self.flat:
            del self.flat[model]
            log.info("[FLATLINE] %s recovered: std %.5f over the last %d outputs", model, std, self.window)

    def status(self) -> dict[str, dict[str, float]]:
        """The models flat-lined now, for /health and ``ai-engine status``: the std they were
        flagged at, over how many outputs, against which minimum."""
        flat = self.flat.copy()  # read by the health thread while the engine updates it
        return {m: {"std": round(std, 6), "window": self.window, "min_std": self.min_std} for m, std in flat.items()}

    def reset(self, model: str) -> None:
        self._hist.pop(model, None)
        self.flat.pop(model, None)
