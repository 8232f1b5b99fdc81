"""``train_model``: candles → features → labels → purged split → fit → calibrate → report →
degeneracy guard → artifact. The same feature code serves and trains."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ai_engine.enums import MODEL_NAMES
from ai_engine.exceptions import ConfigError, DegenerateModelError
from ai_engine.training.dataset import Dataset, build_dataset
from ai_engine.training.guard import GuardConfig, enforce_guard
from ai_engine.training.labels import LabelConfig
from ai_engine.training.report import TrainingReport, evaluate
from ai_engine.types import INTERVAL_MS

__all__ = ["TrainOptions", "train_model", "parse_date", "torch_threads", "DEFAULT_SEQ_LEN"]

log = logging.getLogger(__name__)

DEFAULT_SEQ_LEN: dict[str, int] = {"patchtst": 64, "nhits": 64}


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Data selection for training: a date range (UTC, inclusive start, exclusive end), the last
    ``max_rows`` bars per symbol, and the validation/test shares of each symbol's time span."""

    start: str | None = None
    end: str | None = None
    max_rows: int | None = None
    val_frac: float = 0.15
    test_frac: float = 0.2
    synthetic_bars: int = 4000


def parse_date(value: str | None, what: str) -> int | None:
    """``YYYY-MM-DD`` or ISO datetime (UTC) → ms; ConfigError naming the option otherwise."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{what}={value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _load_series(data_dir, synthetic: bool, symbols: tuple[str, ...], interval: str, seed: int,
                 opts: TrainOptions) -> dict[str, Any]:
    from ai_engine.data import load_dir, synthetic_market

    start, end = parse_date(opts.start, "start"), parse_date(opts.end, "end")
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"start {opts.start} must be before end {opts.end}")
    if synthetic:
        series = synthetic_market(list(symbols), interval=interval, n_bars=opts.synthetic_bars, seed=seed)
        series = {sym: s.time_slice(start, end) for sym, s in series.items()}
    else:
        if data_dir is None:
            raise ConfigError("no data: pass --data DIR (or --synthetic for a generated market)")
        series = load_dir(data_dir, list(symbols), interval, start_ms=start, end_ms=end)
    out = {}
    for sym, s in series.items():
        if opts.max_rows is not None:
            s = s.slice(max(len(s) - opts.max_rows, 0), None)
        out[sym] = s
    return out


def _resolve_out(out_path: str | os.PathLike, version: str, default_name: str) -> Path:
    out = Path(out_path)
    if out.is_dir():
        return out / f"{version}{Path(default_name).suffix}"
    return out


def train_model(
    model_name: str,
    *,
    symbols: tuple[str, ...] | list[str],
    out_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    synthetic: bool = False,
    interval: str = "1h",
    label_config: LabelConfig | None = None,
    epochs: int | None = None,
    seed: int = 0,
    balance: str = "weights",
    force: bool = False,
    guard: GuardConfig | None = None,
    options: TrainOptions | None = None,
    threads: int | None = None,
    agent_params: dict | None = None,
    verbose: bool = False,
) -> tuple[Any, TrainingReport]:
    """Train, evaluate, guard and save one model; returns the fitted agent and its report.

    Args:
        model_name: "xgb", "lgbm", "nhits" or "patchtst".
        symbols: symbols to train on (one model across all of them).
        out_path: artifact file (a directory gets ``<version><ext>`` inside it).
        data_dir: folder of ``<SYMBOL>-<interval>.csv`` candles; or ``synthetic=True``.
        label_config: labels (default LabelConfig()).
        epochs: training epochs (torch) or maximum boosting rounds (trees); None = agent default.
        seed: seeds data sampling and model initialisation.
        balance: "weights", "sampler" or "none".
        force: save even when the degeneracy guard objects.
        guard: guard thresholds (default GuardConfig()).
        options: date range, max rows and split shares.
        threads: torch / tree threads (default: the CPUs free when training starts for torch, as
            ``cpu_affinity.free_cpus`` counts them / all cores for trees).
        agent_params: extra constructor params for the agent (e.g. seq_len, net_params).
        verbose: show a progress bar with epoch metrics (torch models).

    Raises:
        ConfigError, DataError: bad options or candles.
        DegenerateModelError: the guard refused the model (nothing saved); ``.report`` holds the report.
    """
    from ai_engine.agents import AGENT_CLASSES

    if model_name not in AGENT_CLASSES:
        raise ConfigError(f"unknown model {model_name!r}; expected one of {', '.join(MODEL_NAMES)}")
    symbols = tuple(s.strip().upper() for s in symbols if s.strip())
    if not symbols:
        raise ConfigError("no symbols given; pass e.g. --symbols BTCUSDT,ETHUSDT")
    if interval not in INTERVAL_MS:
        raise ConfigError(f"unknown interval {interval!r}")
    label_config = (label_config or LabelConfig()).validate()
    guard = (guard or GuardConfig()).validate()
    opts = options or TrainOptions()
    if opts.max_rows is not None and opts.max_rows < 10:
        raise ConfigError(f"max_rows must be >= 10, got {opts.max_rows}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    cls = AGENT_CLASSES[model_name]
    params: dict[str, Any] = {"seed": seed, "balance": balance, **(agent_params or {})}
    if cls.input_kind == "sequence":
        params.setdefault("seq_len", DEFAULT_SEQ_LEN[model_name])
        params["verbose"] = verbose
        if epochs is not None:
            params["epochs"] = epochs
    else:
        params["n_jobs"] = threads or os.cpu_count() or 1
        if epochs is not None:
            params["n_estimators"] = epochs
    agent = cls(**params)
    agent.validate_params()  # fail on bad params before the (slow) feature pass

    series = _load_series(data_dir, synthetic, symbols, interval, seed, opts)
    ds = build_dataset(series, input_kind=cls.input_kind, label_config=label_config,
                       seq_len=params.get("seq_len"), val_frac=opts.val_frac, test_frac=opts.test_frac)
    if np.unique(ds.train.y).size < 2 and not force:
        raise DegenerateModelError(
            f"{model_name}: training labels are all {_class_name(ds.train.y[0])} ({len(ds.train)} rows); "
            "a model trained on one class can only say that; widen the data or change the band (--force trains anyway)"
        )
    # torch's default pool is one thread per core; beside other CPU-bound work that oversubscribes
    # the cores and spin-waits (PatchTST's default training on 2 cores at load 5: 10 CPU-min in
    # 13.5 min unfinished with 2 threads, 3.7 min with 1), so by default use the CPUs free now.
    if cls.input_kind == "sequence" and threads is None:
        from ai_engine.cpu_affinity import free_cpus

        threads = free_cpus()
        log.info("%s: %d torch thread(s) (the CPUs free now; --threads to choose)", model_name, threads)
    with torch_threads(threads if cls.input_kind == "sequence" else None):
        t0 = time.perf_counter()
        agent.fit(ds.train.X, ds.train.y, X_val=ds.val.X, y_val=ds.val.y, feature_names=ds.feature_names)
        seconds = time.perf_counter() - t0
        report = _report(agent, ds, label_config, seconds)
    try:
        enforce_guard(agent.predict_proba(ds.val.X), guard, force=force, model=f"{model_name} {agent.version}")
    except DegenerateModelError as exc:
        exc.report = report  # type: ignore[attr-defined]
        raise
    agent.metadata_["report"] = report.to_dict()
    agent.metadata_["label_config"] = label_config.to_dict()
    info = agent.save(_resolve_out(out_path, agent.version, cls.default_artifact_name))
    log.info("trained %s → %s (sha256 %s)", agent.version, info.path, info.sha256)
    return agent, report


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run torch with ``threads`` intra-op threads, restoring the previous setting afterwards (training and walk-forward)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _class_name(k: int) -> str:
    from ai_engine.enums import CLASS_ORDER

    return CLASS_ORDER[int(k)].value


def _report(agent: Any, ds: Dataset, cfg: LabelConfig, seconds: float) -> TrainingReport:
    prior = np.asarray(ds.train.class_share())
    val = evaluate(agent.predict_proba(ds.val.X), ds.val.y, prior)
    test = evaluate(agent.predict_proba(ds.test.X), ds.test.y, prior) if len(ds.test) else None
    md = agent.metadata_
    notes = []
    if test is not None and test.balanced_accuracy <= test.baselines[0].balanced_accuracy:
        notes.append("held-out balanced accuracy does not beat the majority baseline")
    if test is not None and test.log_loss_skill < 0:
        notes.append(f"held-out log loss is worse than the test period's class shares (skill {test.log_loss_skill:+.2%})")
    return TrainingReport(
        model=agent.name,
        version=agent.version,
        created_at=str(md["created_at"]),
        symbols=ds.symbols,
        interval=ds.interval,
        label_config=cfg.to_dict(),
        n_train=len(ds.train),
        n_val=len(ds.val),
        n_test=len(ds.test),
        train_label_share=ds.train.class_share(),
        temperature=float(agent.temperature_),
        calibration_bias=tuple(float(b) for b in agent.calibration_bias_),  # type: ignore[arg-type]
        epochs_run=int(md.get("epochs_run") or md.get("best_iteration") or 0),
        best_epoch=int(md.get("best_epoch") or md.get("best_iteration") or 0),
        train_seconds=round(seconds, 2),
        val=val,
        test=test,
        synthetic=ds.synthetic,
        notes=tuple(notes),
    )
