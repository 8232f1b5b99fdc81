"""Entry point of the shadow analysis: one window of the store, one or two models, four gates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ai_engine.analysis.gates import EXIT_CODES, Thresholds, Verdict
from ai_engine.analysis.metrics import ModelAnalysis, analyze_model
from ai_engine.analysis.reader import Window, parse_time, read_snapshot
from ai_engine.exceptions import ConfigError

__all__ = ["AnalysisResult", "analyze", "PLAN_HOURS", "PLAN_PREDICTIONS"]

# The spec's observation plan: 7 days of shadow mode, about 10,000 predictions.
PLAN_HOURS = 7 * 24
PLAN_PREDICTIONS = 10_000


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """Everything the reports show. ``models[0]`` is the analysed model, ``models[1]`` the comparison."""

    store_path: str
    window: Window
    decision_actions: tuple[int, int, int]
    thresholds: Thresholds
    models: tuple[ModelAnalysis, ...]
    bus_skipped: dict[str, int] | None = None  # read from the bus: its unreadable entries by reason

    @property
    def primary(self) -> ModelAnalysis:
        return self.models[0]

    @property
    def verdict(self) -> Verdict:
        return self.primary.verdict

    @property
    def exit_code(self) -> int:
        """0 ready, 1 not ready, 3 inconclusive (2 is for usage and data errors, raised instead)."""
        return EXIT_CODES[self.verdict]


def analyze(
    store_path: Path | str,
    hours: float,
    model: str = "patchtst",
    until: int | str | datetime | None = None,
    thresholds: Thresholds | None = None,
    compare: str | None = None,
    *,
    horizon: int | None = None,
    band: float | None = None,
    only: tuple[str, str] | None = None,
) -> AnalysisResult:
    """Analyse ``model`` (and ``compare``) over the ``hours`` ending at ``until`` or the newest decision;
    ``only`` = (role, sha256) keeps just ``model``'s rows of that artifact in that role.

    Raises:
        DataError: the store is missing, unreadable, of another schema, or holds no decisions.
        ConfigError: a bad argument (hours, until, horizon, band, thresholds), named in the message.
    """
    th = (thresholds or Thresholds()).validate()
    if not model:
        raise ConfigError("--model must name a model, e.g. patchtst")
    if compare == model:
        raise ConfigError(f"--compare {compare!r} is the analysed model itself; name another model")
    if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1):
        raise ConfigError(f"--horizon must be an integer >= 1 (bars), got {horizon!r}")
    if band is not None and not (isinstance(band, int | float) and 0 < band < 1):
        raise ConfigError(f"--band must be a log-return half-width in (0, 1), e.g. 0.004; got {band!r}")
    names = (model,) if compare is None else (model, compare)
    snap = read_snapshot(store_path, hours, names, until=parse_time(until), horizon=horizon, band=band, only=only)
    models = tuple(analyze_model(rows, snap.series, snap.window, th) for rows in snap.models)
    return AnalysisResult(str(store_path), snap.window, snap.decision_actions, th, models)
