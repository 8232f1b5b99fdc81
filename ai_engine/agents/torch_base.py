"""Shared base of the neural agents: seeding, class balancing, the training loop with early
stopping, calibration and the ``.pth`` artifact (plain types, weights_only-safe).
PatchTST and NHiTS only name their network class."""

from __future__ import annotations

import copy
import io
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ai_engine.agents.artifacts import FORMAT_VERSION, safe_torch_load
from ai_engine.agents.base import BALANCE_MODES, BaseAgent, Param, balance_weights
from ai_engine.exceptions import DataError, FeatureMismatchError, ModelLoadError
from ai_engine.training.calibration import fit_calibration

__all__ = ["TorchAgent"]

log = logging.getLogger(__name__)

_CKPT_KEYS = ("format_version", "model", "net_class", "net_params", "state_dict", "feature_names", "seq_len",
              "temperature", "label_config", "report", "created_at", "version")


def _pos(v: Any) -> bool:
    return v > 0


class TorchAgent(BaseAgent):
    """A torch classifier over windows (n, seq_len, C) of the sequence channels.

    Args:
        seq_len: int, window length in bars (the trainer builds windows of this length).
        epochs: int, maximum training epochs (None: the agent's ``default_epochs``).
        batch_size: int, rows per optimiser step.
        lr: float, AdamW learning rate (None: the agent's ``default_lr``).
        weight_decay: float, AdamW weight decay (None: the agent's ``default_weight_decay``).
        patience: int, epochs without improvement of the calibrated validation log loss before stopping
            (None: the agent's ``default_patience``).
        balance: "weights" (class-weighted loss), "sampler" (class-balanced sampling) or "none".
        seed: int, seeds torch and the batch order.
        net_params: dict or None, overrides of the network's constructor params
            (``n_channels`` and ``seq_len`` are set from the data).
        verbose: bool, show a progress bar with per-epoch metrics.

    Attributes:
        net_: the trained torch module (eval mode), restored to its best validation epoch.
        seq_len_: int, window length seen in fit.
        history_: list of per-epoch dicts (train_loss, val_loss, val_bal_acc); empty after load.
    """

    input_kind: ClassVar[str] = "sequence"
    artifact_format: ClassVar[str] = "torch-pth"
    passes_logits: ClassVar[bool] = True
    net_class: ClassVar[str]
    net_defaults: ClassVar[dict[str, Any]] = {}  # the agent's own defaults of net params, under ``net_params``
    default_lr: ClassVar[float] = 1e-3
    default_weight_decay: ClassVar[float] = 1e-4
    default_epochs: ClassVar[int] = 30
    default_patience: ClassVar[int] = 5
    _param_table: ClassVar[dict[str, Param]] = {
        "seq_len": Param((int,), lambda v: 4 <= v <= 4096, "int in [4, 4096]"),
        "epochs": Param((int,), lambda v: 1 <= v <= 10_000, "int in [1, 10000]"),
        "batch_size": Param((int,), lambda v: 1 <= v <= 65_536, "int in [1, 65536]"),
        "lr": Param((int, float), lambda v: 0 < v < 1, "float in (0, 1)"),
        "weight_decay": Param((int, float), lambda v: v >= 0, "float >= 0"),
        "patience": Param((int,), _pos, "int >= 1"),
        "balance": Param((str,), lambda v: v in BALANCE_MODES, f"one of {BALANCE_MODES}"),
        "seed": Param((int,), lambda v: v >= 0, "int >= 0"),
        "net_params": Param((dict,), lambda v: "n_channels" not in v and "seq_len" not in v,
                            "dict of net constructor params without n_channels/seq_len", optional=True),
        "verbose": Param((bool,), lambda v: True, "bool"),
    }

    def __init__(
        self,
        *,
        seq_len: int = 64,
        epochs: int | None = None,
        batch_size: int = 256,
        lr: float | None = None,
        weight_decay: float | None = None,
        patience: int | None = None,
        balance: str = "weights",
        seed: int = 0,
        net_params: dict | None = None,
        verbose: bool = False,
    ) -> None:
        self.seq_len = seq_len
        self.epochs = self.default_epochs if epochs is None else epochs
        self.batch_size = batch_size
        self.lr = self.default_lr if lr is None else lr
        self.weight_decay = self.default_weight_decay if weight_decay is None else weight_decay
        self.patience = self.default_patience if patience is None else patience
        self.balance = balance
        self.seed = seed
        self.net_params = net_params
        self.verbose = verbose

    # ---- input ------------------------------------------------------------------------
    def _as_input(self, X: Any, what: str, width: int | None = None) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"{self.name}: {what} must be a numeric (n, seq_len, C) array") from None
        if X.ndim != 3:
            raise DataError(f"{self.name}: {what} must be 3-D (n, seq_len, C) windows, got shape {X.shape}")
        seq_len = self.seq_len_ if hasattr(self, "feature_names_in_") else self.seq_len
        if X.shape[1] != seq_len:
            raise FeatureMismatchError(f"{self.name}: {what} windows have {X.shape[1]} bars, the model expects {seq_len}")
        if width is not None and X.shape[2] != width:
            names = getattr(self, "feature_names_in_", ())
            raise FeatureMismatchError(
                f"{self.name}: {what} has {X.shape[2]} channels but the model expects {width}"
                + (f" ({', '.join(names)})" if names else "")
            )
        if not np.isfinite(X).all():
            raise DataError(f"{self.name}: {what} contains NaN or inf; windows must come from valid feature rows")
        return X

    # ---- training ---------------------------------------------------------------------
    def _build(self, n_channels: int):
        return self._build_from(self.net_class, {"n_channels": n_channels, "seq_len": self.seq_len,
                                                 **self.net_defaults, **(self.net_params or {})})

    def _fit_model(self, X, y, X_val, y_val, sample_weight) -> None:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.seq_len_ = int(X.shape[1])
        net = self._build(X.shape[2])
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        if getattr(net, "scale", None) is not None:
            net.scale.fit(Xt[:, -1, :])  # each training bar once (windows overlap), never validation
        w_row = torch.ones(len(y), dtype=torch.float32) if sample_weight is None else torch.from_numpy(
            sample_weight.astype(np.float32))
        class_w = torch.ones(3)
        if self.balance == "weights":
            counts = np.bincount(y, minlength=3).astype(np.float64)
            cw = np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
            class_w = torch.tensor(cw, dtype=torch.float32)
        sampler_p = torch.from_numpy(balance_weights(y)).double() if self.balance == "sampler" else None
        loss_fn = nn.CrossEntropyLoss(weight=class_w, reduction="none")
        prior = np.bincount(y, minlength=3)[:3] / len(y)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = len(y)
        best_loss, best_state, best_epoch, bad, history = np.inf, None, 0, 0, []
        progress = _Progress(self.name, self.epochs, self.verbose)
        t0 = time.perf_counter()
        with progress:
            for epoch in range(1, self.epochs + 1):
                net.train()
                order = torch.multinomial(sampler_p, n, replacement=True, generator=gen) if sampler_p is not None \
                    else torch.randperm(n, generator=gen)
                total, seen = 0.0, 0
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    if len(idx) < 2:
                        continue
                    opt.zero_grad(set_to_none=True)
                    per_row = loss_fn(net(Xt[idx]), yt[idx]) * w_row[idx]
                    loss = per_row.sum() / (class_w[yt[idx]] * w_row[idx]).sum().clamp_min(1e-12)
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    total += loss.item() * len(idx)
                    seen += len(idx)
                train_loss = total / max(seen, 1)
                row = {"epoch": epoch, "train_loss": train_loss}
                if X_val is not None:
                    self.net_ = net
                    nll, bal = _calibrated_val_scores(self._raw_logits(X_val), y_val, prior)
                    row.update(val_loss=nll, val_bal_acc=bal)
                    if nll < best_loss - 1e-5:
                        best_loss, best_state, best_epoch, bad = nll, copy.deepcopy(net.state_dict()), epoch, 0
                    else:
                        bad += 1
                history.append(row)
                progress.update(row)
                if X_val is not None and bad >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            best_epoch = len(history)
        net.eval()
        self.net_ = net
        self.history_ = history
        self.metadata_.update(epochs_run=len(history), best_epoch=best_epoch, train_seconds=time.perf_counter() - t0)

    def _raw_logits(self, X: np.ndarray) -> np.ndarray:
        import torch

        if self.net_.training:  # eval() walks every submodule; skip it on the hot path when already set
            self.net_.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, X.shape[0], 4096):
                out.append(self.net_(torch.from_numpy(np.ascontiguousarray(X[start : start + 4096]))).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3))

    # ---- persistence ------------------------------------------------------------------
    @classmethod
    def _embeds_metadata(cls) -> bool:
        return True

    def _extra_meta(self) -> dict[str, Any]:
        return {"net_class": self.net_class, "net_params": self.net_.config(),
                "epochs_run": self.metadata_.get("epochs_run"), "best_epoch": self.metadata_.get("best_epoch")}

    def _model_bytes(self) -> bytes:
        import json

        import torch

        md = self.metadata_
        plain = json.loads(json.dumps({"label_config": md.get("label_config"), "report": md.get("report"),
                                       "agent_params": self.get_params(), "net_params": self.net_.config()}))
        ckpt = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "net_class": self.net_class,
            "net_params": plain["net_params"],
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()},
            "feature_names": list(self.feature_names_in_),
            "seq_len": int(self.seq_len_),
            "temperature": float(self.temperature_),
            "calibration_bias": [float(b) for b in self.calibration_bias_],
            "label_config": plain["label_config"],
            "report": plain["report"],
            "created_at": md.get("created_at"),
            "version": self.version,
            "agent_params": plain["agent_params"],
        }
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        return buf.getvalue()

    @classmethod
    def _restore(cls, path: Path, data: bytes, meta: dict | None) -> BaseAgent:
        import torch

        ckpt = safe_torch_load(io.BytesIO(data), path)
        missing = [k for k in _CKPT_KEYS if k not in ckpt]
        if missing:
            raise ModelLoadError(f"{path}: checkpoint lacks keys {missing}; not a {cls.name} artifact")
        if ckpt["model"] != cls.name:
            raise ModelLoadError(f"{path}: wrong model kind: checkpoint is {ckpt['model']!r}, expected {cls.name!r}")
        if ckpt["format_version"] != FORMAT_VERSION:
            raise ModelLoadError(f"{path}: format_version {ckpt['format_version']!r} unsupported (expected {FORMAT_VERSION})")
        if ckpt["net_class"] != cls.net_class:
            raise ModelLoadError(f"{path}: network class {ckpt['net_class']!r} does not belong to {cls.name} "
                                 f"(expected {cls.net_class!r})")
        if meta is not None:
            for key in ("version", "feature_names", "seq_len", "net_class"):
                if meta.get(key) != ckpt[key]:
                    raise ModelLoadError(f"{path}: metadata mismatch: sidecar {key}={meta.get(key)!r}, "
                                         f"checkpoint {key}={ckpt[key]!r}")
        names, seq_len, net_params = ckpt["feature_names"], ckpt["seq_len"], ckpt["net_params"]
        arch = f"{ckpt['net_class']}({net_params!r})"
        if not isinstance(net_params, dict) or net_params.get("n_channels") != len(names or ()) \
                or net_params.get("seq_len") != seq_len:
            raise ModelLoadError(f"{path}: metadata mismatch: {len(names or ())} feature names and seq_len={seq_len!r} "
                                 f"do not fit architecture {arch}")
        params = dict(ckpt.get("agent_params") or {})
        params["seq_len"] = seq_len
        agent = cls._from_params(params, path)
        agent._restore_common(path, ckpt)
        net = agent._build_from(ckpt["net_class"], net_params)
        state = ckpt["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelLoadError(f"{path}: state_dict is not a dict of tensors")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ModelLoadError(f"{path}: NaN/inf weights in {bad[:5]}{' …' if len(bad) > 5 else ''}")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ModelLoadError(f"{path}: weights do not match the artifact's architecture {arch}: {detail}") from None
        net.eval()
        agent.net_ = net
        agent.history_ = []
        agent.seq_len_ = int(seq_len)
        agent.metadata_.update(epochs_run=(meta or {}).get("epochs_run"), best_epoch=(meta or {}).get("best_epoch"))
        return agent

    @staticmethod
    def _build_from(net_class: str, net_params: dict):
        from ai_engine.nets import build_net

        return build_net(net_class, net_params)


def _calibrated_val_scores(logits: np.ndarray, y: np.ndarray, prior: np.ndarray) -> tuple[float, float]:
    """Validation log loss after calibration, and balanced accuracy of the raw arg-max.

    Early stopping reads the score the model is judged by: the log loss of the probabilities it
    will serve, i.e. after the temperature and class bias fitted on these rows. A class-weighted
    loss instead rewards epochs that grow the minority logits, which calibration then takes back.
    """
    cal = fit_calibration(logits, y, prior)
    z = cal.apply(logits)
    z = z - z.max(axis=1, keepdims=True)
    nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))
    pred = logits.argmax(axis=1)
    bal = float(np.mean([np.mean(pred[y == k] == k) for k in np.unique(y)]))
    return nll, bal


class _Progress:
    """A rich progress bar showing epoch metrics; a no-op when not verbose."""

    def __init__(self, name: str, epochs: int, verbose: bool) -> None:
        self.verbose = verbose
        self.name, self.epochs = name, epochs
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.verbose:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(f"train {self.name}", total=self.epochs, metrics="")
        return self

    def update(self, row: dict) -> None:
        if self._bar is not None:
            text = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
            self._bar.update(self._task, advance=1, metrics=text)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
