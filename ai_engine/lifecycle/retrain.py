"""The retrain loop: a model trained on the newest window of candles, staged with its report and
run as an extra shadow, by command (``ai-engine retrain``) or on a schedule inside ``serve``.

A retrained version never votes because it is newer: it runs as the extra shadow
``<model>_<tag>`` (``SHADOW_<MODEL>_<TAG>_MODEL_PATH``), which no key can make vote, and only
``models activate`` (behind the gate) or the policy promotes it. Each step is the lifecycle's
own: ``training.train_model``, ``activation.stage`` (it loads, its sha256 and report go into the
registry, audited) and ``activation.shadow`` (a validated, atomic, audited env edit that signals
serve). Training writes into a private directory and nothing is staged or edited unless it
succeeded, so a retrain that fails (bad candles, a degenerate model) changes nothing.

On a schedule (``AI_ENGINE_RETRAIN_HOURS``), ``serve`` runs each retrain as ``ai-engine retrain``
in a child process (``child_process``: lower priority, off the decision CPU, ended with serve)
and only polls it between candles, so a decision never waits for a retrain; the child's edit
reaches serve as the usual reload.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ai_engine.config import RetrainConfig, Settings, extra_shadow_error, extra_shadow_key
from ai_engine.exceptions import AIEngineError, ConfigError
from ai_engine.lifecycle.activation import shadow, stage
from ai_engine.lifecycle.edits import EditResult, env_path, model_key
from ai_engine.lifecycle.registry import StagedVersion, artifact_ext
from ai_engine.training.labels import LabelConfig
from ai_engine.types import INTERVAL_MS

__all__ = ["DEFAULT_TAG", "RetrainResult", "RetrainSchedule", "champion_labels", "retrain", "window_bars"]

log = logging.getLogger("ai_engine.lifecycle")

DEFAULT_TAG = "retrain"  # one retrain shadow per model: the next retrain replaces it


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """What one retrain did: the staged version, its training report and the shadow edit."""

    model: str
    key: str  # the extra shadow's key, ``xgb_retrain``
    staged: StagedVersion
    report: object  # training.TrainingReport
    edit: EditResult


def window_bars(days: float, interval: str) -> int:
    """Bars per symbol in the newest ``days`` of ``interval`` candles."""
    if not (isinstance(days, int | float) and math.isfinite(days) and days > 0):
        raise ConfigError(f"--window-days must be a number of days > 0, got {days!r}")
    return int(days * 86_400_000 // INTERVAL_MS[interval])


def champion_labels(settings: Settings, model: str) -> LabelConfig | None:
    """The label definition the configured ``model`` was trained on (its sidecar), so the retrain
    predicts the same classes as the champion it will be judged against; None (the training
    defaults) when the champion has no readable sidecar or records none."""
    from ai_engine.agents.artifacts import read_meta

    cfg = settings.models.get(model)
    if cfg is None or cfg.path is None or not Path(cfg.path).is_file():
        return None
    try:
        raw = (read_meta(Path(cfg.path), required=False) or {}).get("label_config")
        return LabelConfig.from_dict(raw) if isinstance(raw, dict) else None
    except AIEngineError as exc:
        log.warning("retrain %s: the champion's labels are unreadable (%s); training on the default labels", model, exc)
        return None


def retrain(settings: Settings, model: str, *, data_dir: Path, symbols: tuple[str, ...], interval: str,
            window_days: float, tag: str = DEFAULT_TAG, sample: float | None = None, epochs: int | None = None,
            seed: int = 0, threads: int | None = None) -> RetrainResult:
    """Train ``model`` on the newest ``window_days`` of ``data_dir``, stage it, shadow it as ``<model>_<tag>``.

    Raises:
        ConfigError, DataError: bad options or candles (nothing changed).
        DegenerateModelError: the training guard refused the model (nothing changed).
        ModelLoadError: the trained file does not load (nothing changed).
    """
    from ai_engine.training import TrainOptions, train_model

    # refused before the (slow) training: what the edit at the end would refuse
    env_path(settings)
    model_key(model, "MODEL_PATH")
    problem = extra_shadow_error(extra_shadow_key(model, tag))
    if problem is not None:
        raise ConfigError(f"--tag {tag!r}: {problem}")
    if sample is not None and not 0.0 < sample <= 1.0:
        raise ConfigError(f"--sample {sample:g} is not valid: a fraction above 0 and at most 1")
    if interval not in INTERVAL_MS:
        raise ConfigError(f"--interval {interval!r} is not valid: expected one of {', '.join(INTERVAL_MS)}")
    bars = window_bars(window_days, interval)
    labels = champion_labels(settings, model)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.models_dir, prefix=f".retrain-{model}-") as tmp:
        agent, report = train_model(model, symbols=symbols, out_path=tmp, data_dir=data_dir, interval=interval,
                                    label_config=labels, epochs=epochs, seed=seed, threads=threads,
                                    options=TrainOptions(max_rows=bars))
        staged, _ = stage(settings, model, Path(tmp) / f"{agent.version}{artifact_ext(model)}")
    edit = shadow(settings, model, staged.version, tag, sample)
    return RetrainResult(model, f"{model}_{tag.lower()}", staged, report, edit)


class RetrainSchedule:
    """``serve``'s retrain loop: every ``AI_ENGINE_RETRAIN_HOURS`` (the first one that long after the
    start), each model of ``AI_ENGINE_RETRAIN_MODELS`` in turn, one child at a time. ``tick`` is
    called between candles and never waits; a reload that changes the keys applies at the next tick."""

    def __init__(self) -> None:
        self._due: float | None = None
        self._queue: list[str] = []
        self._child: subprocess.Popen | None = None
        self._model = ""

    def tick(self, settings: Settings) -> None:
        """Reap a finished retrain (its outcome logged), then start the next one due."""
        plan = settings.retrain
        if plan is not None and plan.hours == 0:
            plan = None
        if self._child is not None:
            code = self._child.poll()
            if code is None:
                return
            if code == 0:
                log.info("retrain %s (pid %d) done: staged and in shadow as %s_%s", self._model, self._child.pid,
                         self._model, DEFAULT_TAG)
            else:
                log.error("retrain %s (pid %d) failed with exit %d (its error is above); nothing was staged or "
                          "changed", self._model, self._child.pid, code)
            self._child = None
        if plan is None:
            self._due, self._queue = None, []
            return
        now = time.monotonic()
        if self._due is None:
            self._due = now + plan.hours * 3600.0
        if not self._queue and now >= self._due:
            self._queue, self._due = list(plan.models), now + plan.hours * 3600.0
        if self._queue:
            self._start(settings, plan, self._queue.pop(0))

    def _start(self, settings: Settings, plan: RetrainConfig, model: str) -> None:
        from ai_engine.child_process import child_args

        cmd = [sys.executable, "-m", "ai_engine.cli.main", "retrain", model, "--env-file", str(settings.env_file),
               "--data", str(plan.data_dir), "--symbols", ",".join(settings.symbols), "--interval",
               settings.interval, "--window-days", repr(plan.window_days), *child_args(settings)]
        self._model = model
        self._child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        log.info("retrain %s started in a child process (pid %d), on the newest %g days of %s", model,
                 self._child.pid, plan.window_days, plan.data_dir)

    def close(self) -> None:
        """End a retrain still running (serve is stopping); what it had not staged is not staged."""
        if self._child is not None:
            from ai_engine.child_process import stop_child

            stop_child(self._child)
