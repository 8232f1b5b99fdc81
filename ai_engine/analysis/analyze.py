"""Entry point of the shadow analysis: one window of the store, one or two models, four gates,
then the edge: the counterfactual activation, the money view and the paired comparison with the
champion, and a recommendation among the spec's options A, B and C."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ai_engine.analysis.challengers import ChallengerComparison, compare_challengers
from ai_engine.analysis.edge import EdgeAnalysis, analyze_edge
from ai_engine.analysis.gates import EXIT_CODES, Thresholds, Verdict
from ai_engine.analysis.labels import DEFAULT_LABEL
from ai_engine.analysis.metrics import ModelAnalysis, analyze_model
from ai_engine.analysis.reader import SampleSeen, Window, parse_time, read_snapshot
from ai_engine.exceptions import ConfigError
from ai_engine.money import Execution

__all__ = ["AnalysisResult", "Recommendation", "Selection", "analyze", "analyze_challengers", "artifact_in_force",
           "recommend", "shadows_in_force", "PLAN_HOURS", "PLAN_PREDICTIONS"]

# The spec's observation plan: 7 days of shadow mode, about 10,000 predictions.
PLAN_HOURS = 7 * 24
PLAN_PREDICTIONS = 10_000


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The spec's option A (activate at its weight), B (5%) or C (keep shadowing), and why."""

    option: str
    reason: str

    def to_json(self) -> dict:
        return {"option": self.option, "reason": self.reason}


def recommend(m: ModelAnalysis, edge: EdgeAnalysis | None) -> Recommendation:
    """A only on evidence that activating helps, with gate 4 passed on real (not synthetic)
    outcomes; B when the edge is BETTER but gate 4 lacks that evidence; C otherwise."""
    if m.role_counts and set(m.role_counts) == {"voter"}:
        return Recommendation("-", f"{m.model} already votes in this window; nothing to activate")
    if m.verdict != "READY":
        return Recommendation("C", f"keep shadowing: the gates say {m.verdict.replace('_', ' ')}")
    if edge is None:
        return Recommendation("C", "keep shadowing: there is no edge analysis for this window")
    if edge.verdict == "WORSE":
        return Recommendation("C", "keep shadowing, do not activate: the edge is WORSE (see the edge verdict)")
    if edge.verdict != "BETTER":
        return Recommendation("C", "keep shadowing: the gates pass, but nothing shows yet that activating it "
                                   "would do better (edge NOT DISTINGUISHABLE YET)")
    gate4 = m.gates[3]
    if gate4.status != "PASS" or edge.synthetic:
        why = "its outcomes are synthetic candles" if edge.synthetic else f"gate 4 is {gate4.status}"
        return Recommendation("B", f"activate at 5%: the edge is BETTER but {why}, so there is no real-outcome "
                                   "evidence that its confidence means what it says")
    return Recommendation("A", "activate at its weight: the edge is BETTER and gate 4 passed on real outcomes")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which of the model's rows were analysed: one artifact in one role (``what`` says how it was
    chosen), and how many rows of the window that left out."""

    role: str
    sha256: str
    version: str | None
    what: str  # "the version in force", "--version V", "--sha256 S"
    excluded: int = 0

    def to_json(self) -> dict:
        return {"role": self.role, "sha256": self.sha256, "version": self.version, "chosen_by": self.what,
                "excluded_rows": self.excluded}


def artifact_in_force(store_path: Path | str, model: str, version: str | None = None,
                      sha256: str | None = None) -> Selection | None:
    """``model``'s artifact and role in the latest recorded configuration (the engine's now), or the
    latest configuration that ran ``version`` / ``sha256``. None when no configuration names an
    artifact for it (a store without configs, a disabled model): then every row is analysed.

    Why the default: a window after a deploy holds the old voter's rows beside the new shadow's,
    and ``models activate`` judges one file's own shadow rows; the analysis must judge the same."""
    import json
    from contextlib import closing

    from ai_engine.telemetry.sqlite import TelemetryStore

    with closing(TelemetryStore(store_path, readonly=True)) as store:
        rows = store.connection.execute("SELECT payload FROM configs ORDER BY applied_at DESC").fetchall()
    for (payload,) in rows:
        e = json.loads(payload).get("models", {}).get(model) or {}
        if version is None and sha256 is None:
            if e.get("sha256") and e.get("role") in ("shadow", "voter") and e.get("status", "active") == "active":
                return Selection(e["role"], e["sha256"], e.get("version"), "the version in force")
            return None
        if (version is not None and e.get("version") == version) or (sha256 and str(e.get("sha256", "")).startswith(sha256)):
            what = f"--version {version}" if version is not None else f"--sha256 {sha256}"
            return Selection(e["role"], e["sha256"], e.get("version"), what)
    if version is None and sha256 is None:
        return None
    raise ConfigError(f"{'--version ' + version if version is not None else '--sha256 ' + str(sha256)}: no recorded "
                      f"configuration of {store_path} ran that {model} artifact")


def _check_label_overrides(horizon: int | None, band: float | None) -> None:
    if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1):
        raise ConfigError(f"--horizon must be an integer >= 1 (bars), got {horizon!r}")
    if band is not None and not (isinstance(band, int | float) and 0 < band < 1):
        raise ConfigError(f"--band must be a log-return half-width in (0, 1), e.g. 0.004; got {band!r}")


def _edge(snap, i: int, only, edge: bool, execution: Execution | None, hold: int | None,
          rebalance: dict[str, float] | None, custom: tuple[dict[str, float], ...], seed: int
          ) -> tuple[EdgeAnalysis | None, str | None]:
    """The edge of the snapshot's ``i``-th model over its decision table, or why there is none."""
    rows = snap.models[i]
    model = rows.model
    table = snap.table
    if not edge:
        return None, None
    if table is None or model not in table.models:
        return None, f"no decision in the window has a {model} prediction beside it"
    if only is not None:
        table = table.only(model, *only)
    seen = table.seen_by(model)  # a budgeted challenger: the decisions it was sampled for only
    if seen.n == 0:
        return None, f"no decision in the window has a {model} prediction of that artifact and role"
    used = [rows.labels[k].horizon for k in np.unique(rows.label)] or [DEFAULT_LABEL.horizon]
    execution = dataclasses.replace(execution or Execution(), hold_bars=hold or int(max(used)))
    e = analyze_edge(seen, snap.series, rows, model, execution=execution, rebalance=rebalance, custom=custom,
                     seed=seed)
    if seen is table:
        return e, None
    sample = SampleSeen(rows.sample.fractions if rows.sample else (), seen.n, table.n - seen.n)
    note = f"{model} compared on the decisions it was sampled for: {sample.describe()}"
    return dataclasses.replace(e, sample=sample, notes=(*e.notes, note)), None


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    """Everything the reports show. ``models[0]`` is the analysed model, ``models[1]`` the comparison."""

    store_path: str
    window: Window
    decision_actions: tuple[int, int, int]
    thresholds: Thresholds
    models: tuple[ModelAnalysis, ...]
    bus_skipped: dict[str, int] | None = None  # read from the bus: its unreadable entries by reason
    edge: EdgeAnalysis | None = None
    edge_error: str | None = None  # why there is no edge analysis
    recommendation: Recommendation | None = None
    selection: Selection | None = None  # None: every row of the model in the window (mixed versions possible)
    synthetic_decisions: int = 0  # decisions of the window made on synthetic candles
    observed_hours: float = 0.0  # from the model's first row in the window to its end, one candle included
    challengers: ChallengerComparison | None = None  # several challengers judged at once (``analyze_challengers``)

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
    version: str | None = None,
    sha256: str | None = None,
    all_versions: bool = True,
    edge: bool = True,
    execution: Execution | None = None,
    hold: int | None = None,
    rebalance: dict[str, float] | None = None,
    custom: tuple[dict[str, float], ...] = (),
) -> AnalysisResult:
    """Analyse ``model`` (and ``compare``) over the ``hours`` ending at ``until`` or the newest decision;
    ``only`` = (role, sha256) keeps just ``model``'s rows of that artifact in that role; so do
    ``version`` / ``sha256`` (the role it last ran in) and, with ``all_versions=False``, the
    artifact in force (``artifact_in_force``). ``edge``
    adds the counterfactual activation and money view (``execution``: costs, default 10 bps per
    side; positions held ``hold`` bars, default the model's label horizon), with option B's
    ``rebalance`` and ``custom`` weight sets.

    Raises:
        DataError: the store is missing, unreadable, of another schema, or holds no decisions.
        ConfigError: a bad argument (hours, until, horizon, band, thresholds), named in the message.
    """
    th = (thresholds or Thresholds()).validate()
    if not model:
        raise ConfigError("--model must name a model, e.g. patchtst")
    if compare == model:
        raise ConfigError(f"--compare {compare!r} is the analysed model itself; name another model")
    _check_label_overrides(horizon, band)
    names = (model,) if compare is None else (model, compare)
    selection = None
    if only is None and (version is not None or sha256 is not None or not all_versions):
        selection = artifact_in_force(store_path, model, version, sha256)
        if selection is not None:
            only = (selection.role, selection.sha256)
    snap = read_snapshot(store_path, hours, names, until=parse_time(until), horizon=horizon, band=band,
                         only={model: only} if only else None, table=edge, hold_bars=hold or 0)
    # the gates, then the edge; not side by side: with both the peak memory of 10M predictions passes 2 GB
    models = tuple(analyze_model(rows, snap.series, snap.window, th) for rows in snap.models)
    e, why = _edge(snap, 0, only, edge, execution, hold, rebalance, custom, th.seed)
    if selection is not None:
        selection = dataclasses.replace(selection, excluded=snap.window_rows[0] - models[0].n_rows)
    w = snap.window
    step_h = min((s.interval_ms for s in snap.series), default=3_600_000) / 3_600_000
    first = min((v.first_ms for v in models[0].versions), default=None)  # the model's own first row
    observed = min(w.hours, (w.end_ms - first) / 3_600_000 + step_h) if first is not None else 0.0
    result = AnalysisResult(str(store_path), w, snap.decision_actions, th, models, selection=selection,
                            synthetic_decisions=snap.synthetic_decisions, observed_hours=observed)
    if not edge:
        return result
    return dataclasses.replace(result, edge=e, edge_error=why, recommendation=recommend(models[0], e))


def shadows_in_force(store_path: Path | str) -> tuple[str, ...]:
    """Every model key running in shadow in the latest recorded configuration."""
    import json
    from contextlib import closing

    from ai_engine.telemetry.sqlite import TelemetryStore

    with closing(TelemetryStore(store_path, readonly=True)) as store:
        row = store.connection.execute("SELECT payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()
    models = (json.loads(row[0]).get("models", {}) if row else {})
    return tuple(k for k, e in models.items() if e.get("role") == "shadow" and e.get("status", "active") == "active")


def _kinds(store_path: Path | str, keys: tuple[str, ...]) -> dict[str, str]:
    """Each model key's model (an extra shadow ``patchtst_r2`` is a ``patchtst``) from the configurations."""
    import json
    from contextlib import closing

    from ai_engine.telemetry.sqlite import TelemetryStore

    kinds: dict[str, str] = {}
    with closing(TelemetryStore(store_path, readonly=True)) as store:
        for (payload,) in store.connection.execute("SELECT payload FROM configs ORDER BY applied_at"):
            for k, e in json.loads(payload).get("models", {}).items():
                if k in keys:
                    kinds[k] = e.get("kind", k)
    return {k: kinds.get(k, k) for k in keys}


def analyze_challengers(store_path: Path | str, hours: float, challengers: tuple[str, ...], *,
                        models_dir: Path | None = None, until: int | str | datetime | None = None,
                        thresholds: Thresholds | None = None, horizon: int | None = None,
                        band: float | None = None, all_versions: bool = True, execution: Execution | None = None,
                        hold: int | None = None, rebalance: dict[str, float] | None = None) -> ChallengerComparison:
    """Each challenger's edge against the champion, as ``analyze`` computes it with the same
    arguments, from one read of the window; then Holm's correction over them and the best one's
    Deflated Sharpe for every version of its model the registry in ``models_dir`` ever staged
    (without a registry: those compared here).

    Raises:
        ConfigError: fewer than two challengers, a bad argument, or a challenger without an edge
            (the message says why).
    """
    names = tuple(dict.fromkeys(challengers))
    if len(names) < 2:
        raise ConfigError(f"--challengers needs at least two models to compare, got {', '.join(names) or 'none'}")
    seed = (thresholds or Thresholds()).validate().seed
    _check_label_overrides(horizon, band)
    only = {}
    if not all_versions:  # each challenger's artifact in force, as analyze judges it by default
        only = {n: (s.role, s.sha256) for n in names if (s := artifact_in_force(store_path, n)) is not None}
    snap = read_snapshot(store_path, hours, names, until=parse_time(until), horizon=horizon, band=band, only=only,
                         table=True, hold_bars=hold or 0)
    edges: dict[str, EdgeAnalysis] = {}
    for i, name in enumerate(names):
        e, why = _edge(snap, i, only.get(name), True, execution, hold, rebalance, (), seed)
        if e is None:
            raise ConfigError(f"--challengers: {name} has no edge analysis in this window ({why})")
        edges[name] = e
    trialled = {}
    if models_dir is not None:
        from ai_engine.lifecycle.registry import Registry

        reg = Registry(models_dir)
        trialled = {k: len(reg.versions(kind)) for k, kind in _kinds(store_path, names).items()}
    return compare_challengers(edges, trialled)
