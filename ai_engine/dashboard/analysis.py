"""The shadow analysis on the dashboard: each shadow model's four gates and edge, computed in the
background, never on a request.

One daemon thread (at a lower CPU priority where the OS allows it) runs ``analysis.analyze`` for
every shadow model in force over the newest ``hours`` of market time, then waits ``every_s``
before the next round; ``/api/analysis`` answers at once with the last round's results. The
figures are the ones ``ai-engine analyze --json`` prints, cut to what the page shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from ai_engine.exceptions import AIEngineError

__all__ = ["AnalysisJob", "EQUITY_CURVES", "equity_curves", "summarize"]

log = logging.getLogger("ai_engine.dashboard")

_GATE_FIELDS = ("name", "metric", "value", "lo", "hi", "threshold", "status", "detail")
_MONEY_FIELDS = ("net_return", "sharpe", "max_drawdown", "trades", "hit_rate")
EQUITY_CURVES = ("champion (as recorded)", "option A", "option B", "buy-and-hold")  # as the HTML report draws
EQUITY_POINTS = 200  # each curve cut to this many points for the page


def equity_curves(result) -> dict[str, list[float]]:
    """Equity after costs (start 1) of the champion, options A and B and buy-and-hold, each taken
    at ``EQUITY_POINTS`` evenly spaced bars (the last bar always kept)."""
    edge = getattr(result, "edge", None)
    if edge is None:
        return {}
    out = {}
    for st in edge.strategies:
        if st.name not in EQUITY_CURVES:
            continue
        eq = [float(x) for x in st.equity]
        if len(eq) > EQUITY_POINTS:
            step = (len(eq) - 1) / (EQUITY_POINTS - 1)
            eq = [eq[round(i * step)] for i in range(EQUITY_POINTS)]
        out[st.name] = [round(x, 6) for x in eq]
    return out


def summarize(doc: dict) -> dict:
    """What the page shows of one ``analyze`` JSON document: gates, verdicts, options A/B, money."""
    edge = doc.get("edge") or {}
    scenarios = []
    for s in edge.get("scenarios") or []:
        vs = s.get("vs_champion") or {}
        scenarios.append({"name": s.get("name"), "weights": s.get("weights"), "actions_changed": s.get("actions_changed"),
                          "net_return": (s.get("money") or {}).get("net_return"),
                          "vs_champion": {k: vs.get(k) for k in ("mean", "lo", "hi", "p_value")}})
    strategies = {name: {k: (m or {}).get(k) for k in _MONEY_FIELDS} for name, m in (edge.get("strategies") or {}).items()}
    rec = doc.get("recommendation") or {}
    return {
        "window": doc.get("window"),
        "n_rows": doc.get("n_rows"),
        "n_scored": doc.get("n_scored"),
        "gates": [{k: g.get(k) for k in _GATE_FIELDS} for g in (doc.get("gates") or {}).values()],
        "gates_passed": doc.get("gates_passed"),
        "verdict": doc.get("verdict"),
        "verdict_line": doc.get("verdict_line"),
        "edge_verdict": edge.get("verdict"),
        "edge_anytime_verdict": edge.get("anytime_verdict"),
        "edge_reason": edge.get("reason"),
        "edge_error": doc.get("edge_error"),
        "scenarios": scenarios,
        "strategies": strategies,
        "recommendation": {"option": rec.get("option"), "reason": rec.get("reason")},
    }


class AnalysisJob:
    """Runs the analysis of every shadow model in the background; ``snapshot`` reads the results.

    Args:
        store_path: the telemetry store.
        hours: the window, in hours of market time ending at the newest decision (as ``analyze``).
        every_s: seconds between the end of one round and the start of the next.
    """

    def __init__(self, store_path: Path | str, *, hours: float = 24.0, every_s: float = 300.0) -> None:
        self.store_path = Path(store_path)
        self.hours = hours
        self.every_s = every_s
        self._lock = threading.Lock()
        self._results: dict[str, dict] = {}
        self._state = "waiting"
        self._computed_at: int | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dashboard-analysis", daemon=True)

    def start(self) -> AnalysisJob:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict:
        """``/api/analysis``: the last round's results (computed in the background)."""
        with self._lock:
            return {"enabled": True, "state": self._state, "hours": self.hours, "every_s": self.every_s,
                    "computed_at": self._computed_at, "error": self._error,
                    "models": [{"model": m} | r for m, r in sorted(self._results.items())]}

    def run_once(self) -> None:
        """One round: every shadow model in force, each on its own (one failing never hides the others)."""
        from ai_engine.analysis import analyze, shadows_in_force, to_json
        from ai_engine.money import Execution

        with self._lock:
            self._state = "computing"
        results: dict[str, dict] = {}
        error = None
        try:
            names = shadows_in_force(self.store_path)
        except (AIEngineError, OSError) as exc:
            names, error = (), str(exc)
        for name in names:
            if self._stop.is_set():
                return
            try:
                res = analyze(self.store_path, self.hours, model=name, edge=True,
                              execution=Execution(fee_bps=10.0, slippage_bps=0.0, long_only=False, hold_bars=1))
                results[name] = {"error": None} | summarize(to_json(res)) | {"equity": equity_curves(res)}
            except (AIEngineError, OSError, ValueError) as exc:
                results[name] = {"error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, AIEngineError) else str(exc)}
        with self._lock:
            self._results, self._error = results, error
            self._computed_at = int(time.time() * 1000)
            self._state = "idle"

    def _loop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: this thread alone yields the CPU
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # never kills the dashboard; shown on the page
                log.warning("dashboard analysis failed: %s: %s", type(exc).__name__, exc)
                with self._lock:
                    self._state, self._error = "idle", f"{type(exc).__name__}: {exc}"
            self._stop.wait(self.every_s)
