"""Model registry: staged artifacts under ``<models_dir>/<model>/<version><ext>`` and an index.

The index (``<models_dir>/registry.json``, replaced atomically) records every staged version with
its sha256, size and training report summary, and the baseline copies made by ``models backup``.
Which file the engine loads is the env file's ``<MODEL>_MODEL_PATH`` alone (the one source of
truth); the index only says what a file is and that it is unchanged (its sha256 is checked at
every load). An
artifact is staged only after it loads (checksum against its sidecar, architecture, features the
engine computes), so a file in the registry is one the engine can run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ai_engine.exceptions import ConfigError, ModelLoadError
from ai_engine.lifecycle.envfile import write_atomic

__all__ = [
    "INDEX_NAME",
    "Registry",
    "StagedVersion",
    "VerifyResult",
    "artifact_ext",
    "registry_record",
]

INDEX_NAME = "registry.json"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class StagedVersion:
    """One staged artifact as the index records it."""

    model: str
    version: str
    path: Path
    sha256: str
    size: int
    staged_at: str
    staged_by: str
    source: str
    report: dict


@dataclass(frozen=True, slots=True)
class VerifyResult:
    model: str
    version: str
    path: Path
    ok: bool
    problem: str | None


def artifact_ext(model: str) -> str:
    """File extension of ``model``'s native format (``.ubj``, ``.txt``, ``.pth``)."""
    from ai_engine.agents import DEFAULT_ARTIFACT_NAME

    if model not in DEFAULT_ARTIFACT_NAME:
        raise ConfigError(f"unknown model {model!r}; expected one of {', '.join(DEFAULT_ARTIFACT_NAME)}")
    return Path(DEFAULT_ARTIFACT_NAME[model]).suffix


def _report_summary(meta: dict) -> dict:
    """The parts of the training report worth keeping in the index (the sidecar keeps all)."""
    rep = meta.get("report") or {}
    keep = ("test", "val", "symbols", "interval", "synthetic", "n_train", "n_test", "label_config")
    return {k: rep[k] for k in keep if k in rep} | {"created_at": meta.get("created_at")}


class Registry:
    """Read and change the index of one models directory."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self.index_path = self.models_dir / INDEX_NAME

    # -- index --------------------------------------------------------------------------------
    def load(self) -> dict:
        if not self.index_path.exists():
            return {"format": _FORMAT, "models": {}, "baselines": {}}
        if not self.index_path.is_file():
            raise ConfigError(f"registry index {self.index_path} is not a file")
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"registry index {self.index_path} is unreadable: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("models"), dict):
            raise ConfigError(f"registry index {self.index_path} is not a format-{_FORMAT} registry index")
        data.setdefault("baselines", {})
        return data

    def _save(self, data: dict) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.index_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def versions(self, model: str | None = None) -> list[StagedVersion]:
        data = self.load()
        out = []
        for m, entry in sorted(data["models"].items()):
            if model is not None and m != model:
                continue
            for v, e in sorted(entry.get("versions", {}).items(), key=lambda kv: kv[1]["staged_at"]):
                out.append(StagedVersion(m, v, self.models_dir / e["file"], e["sha256"], e["size"],
                                         e["staged_at"], e["staged_by"], e["source"], e.get("report", {})))
        return out

    def get(self, model: str, version: str | None = None) -> StagedVersion:
        """A staged version; ``None`` means the newest staged one."""
        staged = self.versions(model)
        if not staged:
            raise ConfigError(f"no {model} version is staged in {self.models_dir}; run `ai-engine models stage FILE --model {model}`")
        if version is None:
            return staged[-1]
        for s in staged:
            if s.version == version:
                return s
        raise ConfigError(f"{model} version {version!r} is not staged; staged: {', '.join(s.version for s in staged)}")

    def find_by_path(self, path: Path) -> StagedVersion | None:
        path = Path(path).resolve()
        return next((s for s in self.versions() if s.path.resolve() == path), None)

    def baselines(self) -> dict[str, dict]:
        return dict(self.load()["baselines"])

    def record_baseline(self, model: str, path: Path, sha256: str, source: Path) -> None:
        data = self.load()
        data["baselines"][model] = {"file": str(path), "sha256": sha256, "source": str(source),
                                    "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._save(data)

    # -- staging ------------------------------------------------------------------------------
    def stage(self, model: str, src: Path, *, staged_by: str) -> tuple[StagedVersion, bool]:
        """Copy ``src`` (and its sidecar) into the registry after it loads; returns (version, new).

        Raises:
            ModelLoadError: the file does not load (missing, corrupt, checksum mismatch, wrong kind).
            FeatureMismatchError: its features are not what the engine computes.
            ConfigError: the version is already staged with different content.
        """
        from ai_engine.agents import load_agent
        from ai_engine.agents.artifacts import meta_path_for, read_meta, sha256_file

        src = Path(src)
        if not src.is_file():
            raise ModelLoadError(f"artifact {src} does not exist or is not a file")
        agent = load_agent(model, src)  # checksum vs sidecar, architecture, engine features
        meta = read_meta(src, required=True)
        version = str(meta.get("version") or agent.version)
        sha = sha256_file(src)
        data = self.load()
        entry = data["models"].setdefault(model, {"versions": {}})
        known = entry["versions"].get(version)
        if known is not None:
            if known["sha256"] != sha:
                raise ConfigError(f"{model} version {version} is already staged with sha256 {known['sha256'][:16]}…; "
                                  f"{src} has {sha[:16]}… (a version name must identify one file)")
            return self.get(model, version), False
        rel = Path(model) / f"{version}{artifact_ext(model)}"
        dest = self.models_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.staging")
        shutil.copyfile(src, tmp)
        if sha256_file(tmp) != sha:
            tmp.unlink(missing_ok=True)
            raise ModelLoadError(f"copy of {src} to {dest} does not match its checksum; nothing staged")
        shutil.copyfile(meta_path_for(src), meta_path_for(dest))
        tmp.replace(dest)
        entry["versions"][version] = {
            "file": str(rel), "sha256": sha, "size": dest.stat().st_size,
            "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "staged_by": staged_by,
            "source": str(src.resolve()), "report": _report_summary(meta),
        }
        self._save(data)
        return self.get(model, version), True

    def verify(self) -> list[VerifyResult]:
        """Re-hash every staged artifact and baseline against the index, and check its sidecar."""
        from ai_engine.agents.artifacts import meta_path_for, read_meta, sha256_file

        out = []
        items = [(s.model, s.version, s.path, s.sha256) for s in self.versions()]
        items += [(m, "BASELINE", Path(b["file"]), b["sha256"]) for m, b in sorted(self.baselines().items())]
        for model, version, path, sha in items:
            if not path.is_file():
                out.append(VerifyResult(model, version, path, False, "file missing"))
                continue
            actual = sha256_file(path)
            problem = None if actual == sha else f"sha256 {actual[:16]}… differs from registry {sha[:16]}…"
            if problem is None and model != "env" and meta_path_for(path).is_file():
                try:
                    read_meta(path, required=True)
                except ModelLoadError as exc:
                    problem = str(exc)
            out.append(VerifyResult(model, version, path, problem is None, problem))
        return out


def registry_record(models_dir: Path, path: Path) -> tuple[str, str] | None:
    """What the registry recorded for ``path``: ``("staged" | "baseline", sha256)``, or None.

    The engine passes the sha256 to the loader so a staged file swapped together with its sidecar
    is still refused: the registry, not the file next to the artifact, is the reference. One read
    of the index per model load.
    """
    reg = Registry(models_dir)
    if not reg.index_path.is_file():
        return None
    data = reg.load()
    resolved = Path(path).resolve()
    for entry in data["models"].values():
        for e in entry.get("versions", {}).values():
            if (reg.models_dir / e["file"]).resolve() == resolved:
                return "staged", e["sha256"]
    for b in data["baselines"].values():
        if Path(b["file"]).resolve() == resolved:
            return "baseline", b["sha256"]
    return None
