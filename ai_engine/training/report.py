"""Training report: per-class behaviour, confidence spread and calibration, against baselines.

Probabilities are judged by proper scores (log loss, Brier) against the sample climatology of
the rows judged (their own class frequencies, the usual reference in forecast verification):
a skill score ``1 - score / score_climatology`` below 0 means the model's probabilities are worse
than knowing only how often each class occurred.

Failure mode 9 (a model that says WIN for every row, with 450 "distinct" confidences inside
1e-4) is visible at a glance here: action shares, confidence std and balanced accuracy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ai_engine.enums import CLASS_ORDER

__all__ = [
    "ClassMetrics",
    "BaselineMetrics",
    "SplitMetrics",
    "TrainingReport",
    "evaluate",
    "expected_calibration_error",
    "render",
]

_NAMES = tuple(a.value for a in CLASS_ORDER)


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """Precision/recall/F1 of one action; ``support`` = true rows, ``predicted`` = predicted rows."""

    action: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True, slots=True)
class BaselineMetrics:
    """A trivial predictor's scores on the same rows (``majority``: always the train majority
    class with certainty; ``prior``: train class shares for every row; ``climatology``: the
    judged rows' own class shares for every row, the reference of the skill scores)."""

    name: str
    accuracy: float
    balanced_accuracy: float
    ece: float
    brier: float
    log_loss: float = math.nan  # reports written before log loss was recorded lack it


@dataclass(frozen=True, slots=True)
class SplitMetrics:
    """Figures on one evaluation part (validation or held-out test)."""

    n: int
    accuracy: float
    balanced_accuracy: float
    ece: float
    brier: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, int, int], ...]  # rows: true class, cols: predicted (CLASS_ORDER)
    action_share: tuple[float, float, float]  # predicted share per CLASS_ORDER
    label_share: tuple[float, float, float]  # true share per CLASS_ORDER
    confidence_mean: float
    confidence_std: float
    confidence_n_distinct: int
    baselines: tuple[BaselineMetrics, ...]
    log_loss: float = math.nan  # NaN in reports written before these were recorded
    log_loss_skill: float = math.nan  # 1 - log_loss / climatology's; >= 0: no worse than the class shares
    brier_skill: float = math.nan  # 1 - brier / climatology's

    @property
    def max_action_share(self) -> float:
        return max(self.action_share)

    def baseline(self, name: str) -> BaselineMetrics | None:
        return next((b for b in self.baselines if b.name == name), None)

    @classmethod
    def from_dict(cls, d: dict) -> SplitMetrics:
        return cls(
            n=int(d["n"]),
            accuracy=d["accuracy"],
            balanced_accuracy=d["balanced_accuracy"],
            ece=d["ece"],
            brier=d["brier"],
            per_class=tuple(ClassMetrics(**c) for c in d["per_class"]),
            confusion=tuple(tuple(int(v) for v in row) for row in d["confusion"]),
            action_share=tuple(d["action_share"]),
            label_share=tuple(d["label_share"]),
            confidence_mean=d["confidence_mean"],
            confidence_std=d["confidence_std"],
            confidence_n_distinct=int(d["confidence_n_distinct"]),
            baselines=tuple(BaselineMetrics(**b) for b in d["baselines"]),
            log_loss=d.get("log_loss", math.nan),
            log_loss_skill=d.get("log_loss_skill", math.nan),
            brier_skill=d.get("brier_skill", math.nan),
        )


@dataclass(frozen=True, slots=True)
class TrainingReport:
    """Everything a reviewer needs to accept or refuse a trained model (JSON via ``to_dict``)."""

    model: str
    version: str
    created_at: str
    symbols: tuple[str, ...]
    interval: str
    label_config: dict
    n_train: int
    n_val: int
    n_test: int
    train_label_share: tuple[float, float, float]
    temperature: float
    epochs_run: int
    best_epoch: int
    train_seconds: float
    val: SplitMetrics
    test: SplitMetrics | None
    synthetic: bool = False
    notes: tuple[str, ...] = field(default=())
    calibration_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # per-class logit bias, CLASS_ORDER

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainingReport:
        d = dict(d)
        d["val"] = SplitMetrics.from_dict(d["val"])
        d["test"] = SplitMetrics.from_dict(d["test"]) if d.get("test") else None
        d["symbols"] = tuple(d["symbols"])
        d["train_label_share"] = tuple(d["train_label_share"])
        d["notes"] = tuple(d.get("notes", ()))
        d["calibration_bias"] = tuple(d.get("calibration_bias", (0.0, 0.0, 0.0)))
        return cls(**d)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE over ``n_bins`` equal-width confidence bins."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[0] == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def _brier(probs: np.ndarray, y: np.ndarray) -> float:
    onehot = np.eye(3)[y]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1))) if len(y) else 0.0


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return 0.0
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0))))


def _skill(score: float, reference: float) -> float:
    return 1.0 - score / reference if reference > 0 else 0.0


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float(np.mean(pred[y == k] == k)) for k in range(3) if np.any(y == k)]
    return float(np.mean(recalls)) if recalls else 0.0


def _share(v: np.ndarray) -> tuple[float, float, float]:
    c = np.bincount(v, minlength=3)[:3].astype(np.float64)
    s = c.sum()
    return tuple(float(x) for x in (c / s if s else c))  # type: ignore[return-value]


def _baselines(y: np.ndarray, train_prior: np.ndarray) -> tuple[BaselineMetrics, ...]:
    n = len(y)
    majority = int(np.argmax(train_prior))
    maj = np.full(n, majority)
    acc = float(np.mean(maj == y)) if n else 0.0
    onehot = np.tile(np.eye(3)[majority], (n, 1))
    out = [BaselineMetrics("majority", acc, _balanced_accuracy(y, maj), expected_calibration_error(onehot, y),
                           _brier(onehot, y), _log_loss(onehot, y))]
    for name, shares in (("prior", train_prior), ("climatology", np.asarray(_share(y)))):
        p = np.tile(shares, (n, 1))
        top = np.full(n, int(np.argmax(shares)))
        out.append(BaselineMetrics(name, float(np.mean(top == y)) if n else 0.0, _balanced_accuracy(y, top),
                                   expected_calibration_error(p, y), _brier(p, y), _log_loss(p, y)))
    return tuple(out)


def evaluate(probs: np.ndarray, y: np.ndarray, train_prior: np.ndarray) -> SplitMetrics:
    """Score calibrated probabilities (n, 3) against labels (n,), with baselines from ``train_prior`` and
    from the rows' own class shares (climatology: the reference of ``log_loss_skill`` and ``brier_skill``)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=np.int64)
    conf = probs.max(axis=1) if len(y) else np.zeros(0)
    cm = np.zeros((3, 3), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    baselines = _baselines(y, np.asarray(train_prior, dtype=np.float64))
    clim = baselines[-1]
    log_loss, brier = _log_loss(probs, y), _brier(probs, y)
    per_class = []
    for k, name in enumerate(_NAMES):
        tp = cm[k, k]
        npred, nsup = int(cm[:, k].sum()), int(cm[k, :].sum())
        p = tp / npred if npred else 0.0
        r = tp / nsup if nsup else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class.append(ClassMetrics(name, float(p), float(r), float(f1), nsup, npred))
    return SplitMetrics(
        n=int(len(y)),
        accuracy=float(np.mean(pred == y)) if len(y) else 0.0,
        balanced_accuracy=_balanced_accuracy(y, pred),
        ece=expected_calibration_error(probs, y),
        brier=brier,
        per_class=tuple(per_class),
        confusion=tuple(tuple(int(v) for v in row) for row in cm),  # type: ignore[misc]
        action_share=_share(pred),
        label_share=_share(y),
        confidence_mean=float(conf.mean()) if len(y) else 0.0,
        confidence_std=float(conf.std()) if len(y) else 0.0,
        confidence_n_distinct=int(np.unique(np.round(conf, 6)).size),
        baselines=baselines,
        log_loss=log_loss,
        log_loss_skill=_skill(log_loss, clim.log_loss),
        brier_skill=_skill(brier, clim.brier),
    )


def _split_table(title: str, m: SplitMetrics):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column("model", justify="right")
    for b in m.baselines:
        t.add_column(b.name, justify="right")
    base = {b.name: b for b in m.baselines}
    t.add_row("rows", str(m.n), *["" for _ in base])
    for key in ("accuracy", "balanced_accuracy", "ece", "brier", "log_loss"):
        t.add_row(key, f"{getattr(m, key):.4f}", *[f"{getattr(b, key):.4f}" for b in base.values()])
    t.add_row("log-loss / Brier skill vs climatology", f"{m.log_loss_skill:+.2%} / {m.brier_skill:+.2%}",
              *[f"{_skill(b.log_loss, base['climatology'].log_loss):+.2%} / {_skill(b.brier, base['climatology'].brier):+.2%}"
                if "climatology" in base and b.name != "majority" else "" for b in base.values()])
    t.add_row("confidence mean/std", f"{m.confidence_mean:.4f} / {m.confidence_std:.4f}", *["" for _ in base])
    t.add_row("distinct confidences", str(m.confidence_n_distinct), *["" for _ in base])
    for c, share, lshare in zip(m.per_class, m.action_share, m.label_share, strict=True):
        t.add_row(
            f"{c.action} P/R/F1 (pred {share:.1%}, true {lshare:.1%})",
            f"{c.precision:.3f}/{c.recall:.3f}/{c.f1:.3f}",
            *["" for _ in base],
        )
    cm = "  ".join("[" + " ".join(f"{v:d}" for v in row) + "]" for row in m.confusion)
    t.add_row("confusion (true×pred S,H,B)", cm, *["" for _ in base])
    return t


def render(report: TrainingReport, *, width: int = 110) -> str:
    """The report as plain text tables (rich layout, no colour codes)."""
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=False, color_system=None, file=_Null())
    lc = report.label_config
    console.print(
        f"{report.version}  model={report.model}  symbols={','.join(report.symbols)}  interval={report.interval}"
        f"{'  SYNTHETIC' if report.synthetic else ''}"
    )
    console.print(
        f"labels: horizon={lc.get('horizon')} mode={lc.get('mode')} fee_band={lc.get('fee_band')} k={lc.get('k')}"
        f"  rows train/val/test={report.n_train}/{report.n_val}/{report.n_test}"
        f"  train shares S/H/B={'/'.join(f'{s:.1%}' for s in report.train_label_share)}"
    )
    console.print(
        f"temperature={report.temperature:.4f}"
        f"  bias S/H/B={'/'.join(f'{b:+.3f}' for b in report.calibration_bias)}  epochs={report.epochs_run} (best {report.best_epoch})"
        f"  train_seconds={report.train_seconds:.1f}"
    )
    console.print(_split_table("validation (calibration set)", report.val))
    if report.test is not None:
        console.print(_split_table("held-out test", report.test))
    for note in report.notes:
        console.print(f"note: {note}")
    return console.export_text()


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass
