"""Artifact files: sha256, the ``<file>.meta.json`` sidecar, and the safe torch loader.

Every model file is trusted only after its checksum matches the sidecar (or the registry's
expected value); torch files are read with ``weights_only=True`` so unpickling can't run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ai_engine.exceptions import ModelLoadError

__all__ = [
    "ArtifactInfo",
    "FORMAT_VERSION",
    "sha256_file",
    "meta_path_for",
    "write_meta",
    "read_meta",
    "verify_checksum",
    "safe_torch_load",
    "atomic_write_bytes",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What ``save`` wrote: the model file, its sidecar, checksum and size."""

    model: str
    version: str
    path: Path
    meta_path: Path
    sha256: str
    size: int


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def meta_path_for(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.meta.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the artifact from the service user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _content_sha256(meta: dict) -> str:
    """sha256 of the sidecar's content, itself left out (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def write_meta(path: Path, meta: dict) -> Path:
    """Write the sidecar next to ``path`` (JSON, sorted keys) with the checksum of its content:
    the model file's sha256 does not cover the feature order or the calibration kept here, and a
    hand edit of either would change the predictions silently."""
    mp = meta_path_for(path)
    meta = {**meta, "meta_sha256": _content_sha256(meta)}
    atomic_write_bytes(mp, json.dumps(meta, indent=2, sort_keys=True, allow_nan=False).encode())
    return mp


def read_meta(path: Path, *, required: bool) -> dict | None:
    """The sidecar of ``path`` as a dict; None when absent and not required."""
    mp = meta_path_for(path)
    if not mp.is_file():
        if required:
            raise ModelLoadError(f"{path}: sidecar {mp.name} is missing; cannot verify or describe the model")
        return None
    try:
        meta = json.loads(mp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{mp}: sidecar is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{mp}: sidecar must be a JSON object")
    if "meta_sha256" not in meta:
        log.warning("%s: sidecar has no content checksum (written by an older version); edits to it cannot be "
                    "detected", mp)
    elif str(meta["meta_sha256"]).lower() != _content_sha256(meta):
        raise ModelLoadError(f"{mp}: sidecar was edited after it was written (its content checksum differs); "
                             "restore it from the model's release or retrain")
    return meta


def verify_checksum(path: Path, expected: str | None, source: str) -> str:
    """sha256 of ``path``; raises ModelLoadError when ``expected`` is given and differs."""
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        raise ModelLoadError(f"{path}: checksum mismatch: expected {expected} ({source}), got {actual}")
    return actual


def safe_torch_load(source: str | os.PathLike | io.BytesIO, path: Path) -> dict:
    """``torch.load(source, weights_only=True)``; every failure becomes a ModelLoadError naming ``path``."""
    import pickle
    import zipfile

    import torch

    try:
        obj = torch.load(source, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: refused to unpickle (unsafe or corrupt checkpoint): {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: truncated or corrupt checkpoint: {first}") from None
    if not isinstance(obj, dict):
        raise ModelLoadError(f"{path}: checkpoint is a {type(obj).__name__}, expected a dict of plain types")
    return obj
