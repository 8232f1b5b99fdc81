"""Configuration: one source of truth, parsed strictly at start and at every reload.

Layer 1 is the declarative table ``KEYS`` (type, default, description), converted with pydantic,
except booleans: true/false/1/0/yes/no/on/off in any case and nothing else (pydantic would also
take t/f/y/n), so ``PATCHTST_SHADOW_ONLY=ture`` stops the engine instead of being read as false
(failure mode 6).
Layer 2 is the ``_validate_*`` functions for rules spanning keys (weights sum to 100, role flags agree).

Extra shadows: besides the four models, any number of further artifacts run in shadow, each under
one key ``SHADOW_<MODEL>_<TAG>_MODEL_PATH`` (``SHADOW_PATCHTST_R2_MODEL_PATH=/…/patchtst_v2.pth``):
MODEL says which agent loads it, and ``<model>_<tag>`` (``patchtst_r2``) is its stable key in
``model_breakdown`` and telemetry. An extra shadow has no role or weight key: nothing in the
env file can make it vote, and any other key shaped like one, or a misspelt one, is refused.
Its one other key, ``SHADOW_<MODEL>_<TAG>_SAMPLE``, is its budget (``sampling``), as
``SHADOW_SAMPLE`` is the budget of the four's shadows (the spec's PatchTST shadow).

Sources: defaults, then the env file when one is in use, else the process environment. With an
env file the engine's keys come from the file alone: a process variable that disagrees with it, or
that the file does not set, is reported and ignored. Under systemd ``EnvironmentFile=`` copies the
file into the process environment at start, so a key that ``models activate`` later removes from the
file is still in the environment; were it read, the reload after the edit would apply nothing
(failure mode 5).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ai_engine.cpu_affinity import decision_cpu
from ai_engine.enums import MODEL_NAMES, ModelRole
from ai_engine.exceptions import ConfigError
from ai_engine.lifecycle.envfile import read_env_file
from ai_engine.types import INTERVAL_MS

__all__ = [
    "KEYS",
    "ModelConfig",
    "PolicyConfig",
    "Settings",
    "load_settings",
    "DEFAULT_ENV_FILE",
    "MODEL_ENV_PREFIX",
    "RetrainConfig",
    "extra_shadow_error",
    "config_id_for",
    "extra_shadow_key",
]

log = logging.getLogger("ai_engine.config")

DEFAULT_ENV_FILE = Path("/etc/quantum/ai-engine.env")
MODEL_ENV_PREFIX = {"xgb": "XGB", "lgbm": "LGBM", "nhits": "NHITS", "patchtst": "PATCHTST"}
DEFAULT_WEIGHTS = {"xgb": 25.0, "lgbm": 25.0, "nhits": 30.0, "patchtst": 20.0}
_OWNED_PREFIXES = ("AI_ENGINE_", "ENSEMBLE_", "GOVERNOR_", "SHADOW_", "FLATLINE_", "REDIS_") + tuple(
    p + "_" for p in MODEL_ENV_PREFIX.values()
)


@dataclass(frozen=True, slots=True)
class Key:
    type: Any
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    empty_ok: bool = False  # an empty value is documented (``empty = ...``); else it is refused


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ai-engine"


KEYS: dict[str, Key] = {
    "AI_ENGINE_HOME": Key(Path, None, "state directory (store, models, governor); default $XDG_DATA_HOME/ai-engine"),
    "AI_ENGINE_STORE": Key(Path, None, "SQLite telemetry store; default $AI_ENGINE_HOME/telemetry.sqlite"),
    "AI_ENGINE_MODELS_DIR": Key(Path, None, "model registry directory; default $AI_ENGINE_HOME/models"),
    "AI_ENGINE_SYMBOLS": Key(str, "BTCUSDT,ETHUSDT", "comma-separated symbols this instance decides on"),
    "AI_ENGINE_INTERVAL": Key(str, "1h", "candle interval"),
    "AI_ENGINE_DATA_DIR": Key(Path, None, "candle CSV directory for paced file replay (serve)"),
    "AI_ENGINE_RETRAIN_HOURS": Key(float, 0.0, "serve retrains AI_ENGINE_RETRAIN_MODELS every this many hours, each "
                                   "put in shadow as <model>_retrain (0 = off)", 0.0, None),
    "AI_ENGINE_RETRAIN_MODELS": Key(str, "", "comma-separated models serve retrains on schedule, e.g. xgb,patchtst",
                                    empty_ok=True),
    "AI_ENGINE_RETRAIN_WINDOW_DAYS": Key(float, 90.0, "days of the newest candles a retrain trains on", 1.0, None),
    "AI_ENGINE_RETRAIN_DATA_DIR": Key(Path, None, "candle CSV directory the scheduled retrain reads; default "
                                      "AI_ENGINE_DATA_DIR"),
    "AI_ENGINE_SHARD": Key(str, "", "symbol shard: 'index/count' (static, e.g. 0/2), 'lease' (symbols move between "
                           "live instances through Redis leases) or empty (all symbols)", empty_ok=True),
    "AI_ENGINE_INSTANCE": Key(str, "", "this instance's stable name among those sharing symbols by lease (empty = the "
                              "host name)", empty_ok=True),
    "AI_ENGINE_LEASE_TTL_MS": Key(float, 15_000.0, "how long a symbol lease and a heartbeat last unrenewed (renewed "
                                  "every third of it); keep it under one candle interval", 100.0, None),
    "AI_ENGINE_LOG_LEVEL": Key(str, "INFO", "logging level"),
    "AI_ENGINE_HEALTH_PORT": Key(int, 0, "HTTP health endpoint port on 127.0.0.1 (0 = off)", 0, 65535),
    "AI_ENGINE_DASHBOARD_PORT": Key(int, 0, "read-only operator dashboard port on 127.0.0.1 (0 = off; docs/dashboard.md)", 0, 65535),
    "AI_ENGINE_DASHBOARD_ANALYSIS_HOURS": Key(float, 24.0, "window of the shadow analysis serve's dashboard runs in "
                                              "its own process every 5 min (0 = off)", 0.0, None),
    "AI_ENGINE_REDIS_PREFIX": Key(str, "quantum", "key prefix of the Redis streams and governor keys"),
    "AI_ENGINE_STREAM_MAXLEN": Key(int, 100_000, "approximate MAXLEN of the Redis streams", 1, None),
    "AI_ENGINE_RETENTION_DAYS": Key(float, 0.0, "keep decisions this many days of market time (0 = keep all; else ≥ 7, the observation window)", 0.0, None),
    "REDIS_URL": Key(str, "", "Redis URL (redis:// or rediss://, may carry a password); empty = no bus", empty_ok=True),
    "AI_ENGINE_STORE_BUFFER_ROWS": Key(int, 200_000, "rows of failed store writes kept for retry; past it intents are "
                                       "blocked (telemetry_unwritable)", 10, None),
    "ENSEMBLE_MIN_CONSENSUS": Key(int, 3, "voters that must agree for an actionable decision", 1, 4),
    "ENSEMBLE_CONFIDENCE_BOOST": Key(float, 1.1, "confidence factor when all four models vote and agree", 1.0, 2.0),
    "ENSEMBLE_CONFIDENCE_CAP": Key(float, 0.95, "cap of boosted confidence (below 1)", 0.5, 0.999),
    "GOVERNOR_BACKEND": Key(str, "auto", "governor state: file, redis, or auto (redis when REDIS_URL is set)"),
    "GOVERNOR_STATE_FILE": Key(Path, None, "governor state file; default $AI_ENGINE_HOME/governor.json"),
    "SHADOW_LOG_INTERVAL_S": Key(float, 30.0, "seconds between [SHADOW] log lines per model", 0.0, None),
    "SHADOW_DEADLINE_MS": Key(float, 250.0, "how long a decision waits for a shadow result", 0.0, None),
    "MODEL_TIMEOUT_MS": Key(float, 2000.0, "a voter slower than this is excluded from that decision", 1.0, None),
    "SHADOW_SAMPLE": Key(float, 1.0, "fraction of decisions a shadow of the four (the spec's PatchTST shadow) predicts "
                         "on, chosen from the event id (0 < f <= 1; extra shadows: SHADOW_<MODEL>_<TAG>_SAMPLE)",
                         0.0, 1.0),
    "SHADOW_ISOLATION": Key(str, "process", "where shadow models run: process (a child process each) or thread"),
    "AI_ENGINE_DECISION_CPU": Key(str, "auto", "CPU the live decision thread and its voter worker share (auto: the "
                                  "highest this process may use; off: not pinned; or a CPU number)"),
    "AI_ENGINE_VOTER_LANES": Key(int, 2, "voter lanes from 128 rows: 2 runs the sequence voters beside the tabular "
                                 "ones, on the CPUs the decision does not use; 1 keeps every voter on the decision's",
                                 1, 2),
    "FLATLINE_WINDOW": Key(int, 200, "recent outputs examined by the flat-line detector", 10, None),
    "FLATLINE_MIN_STD": Key(float, 0.005, "confidence std below which a model is flagged flat", 0.0, 1.0),
    # promotion and rollback by policy (lifecycle/policy.py); durations are hours of market time
    "AI_ENGINE_POLICY": Key(str, "off", "promotion policy: off, on, or dry-run (says what it would do, changes nothing)"),
    "AI_ENGINE_POLICY_MODEL": Key(str, "patchtst", "the model the policy takes from shadow to option B, then A (or "
                                  "an extra shadow's key: option B puts its file in its model's place)"),
    "AI_ENGINE_POLICY_SHADOW_HOURS": Key(float, 168.0, "hours of its shadow predictions before option B", 0.0, None),
    "AI_ENGINE_POLICY_MIN_PREDICTIONS": Key(int, 10_000, "shadow predictions before option B", 0, None),
    "AI_ENGINE_POLICY_B_WEIGHT": Key(float, 5.0, "the model's weight at option B", 0.0, 100.0),
    "AI_ENGINE_POLICY_B_REBALANCE": Key(str, "xgb=27.5,lgbm=27.5,nhits=40", "the other weights at option B"),
    "AI_ENGINE_POLICY_B_HOURS": Key(float, 168.0, "hours voting at option B, live edge not WORSE, before option A",
                                    0.0, None),
    "AI_ENGINE_POLICY_LIVE_HOURS": Key(float, 72.0, "the newest hours of its voting rows the live edge is judged on "
                                       "(once it has voted that long)", 1.0, None),
    "AI_ENGINE_POLICY_A_WEIGHT": Key(float, 20.0, "the model's weight at option A", 0.0, 100.0),
    "AI_ENGINE_POLICY_A_REBALANCE": Key(str, "xgb=25,lgbm=25,nhits=30", "the other weights at option A"),
    "AI_ENGINE_POLICY_ROLLBACK_ON_FAIL": Key(str, "full", "rollback level on a spec FAIL criterion: fast, full or nuclear"),
    "AI_ENGINE_POLICY_ROLLBACK_ON_WORSE": Key(str, "full", "rollback level when the promoted model's live edge is WORSE: "
                                              "full or nuclear"),
    "AI_ENGINE_POLICY_INTERVAL_S": Key(float, 300.0, "seconds between two evaluations of the policy", 0.1, None),
}
_ARTIFACT = {"xgb": "xgb_model.ubj", "lgbm": "lgbm_model.txt", "nhits": "nhits_model.pth", "patchtst": "patchtst_model.pth"}
for _m, _p in MODEL_ENV_PREFIX.items():
    KEYS[f"{_p}_MODEL_PATH"] = Key(Path, None, f"{_m} artifact; default: {_ARTIFACT[_m]} in the models dir")
    KEYS[f"{_p}_SHADOW_ONLY"] = Key(bool, None, f"run {_m} in shadow (never votes)")
    KEYS[f"{_p}_ROLE"] = Key(str, None, f"{_m} role: voter, shadow or disabled")
    KEYS[f"{_p}_WEIGHT"] = Key(float, DEFAULT_WEIGHTS[_m], f"{_m} voting weight (all four sum to 100)", 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One configured model: one of the four (``name == kind``) or an extra shadow (``patchtst_r2``).

    Attributes:
        name: the stable key in ``model_breakdown``, telemetry rows and logs.
        role: voter, shadow or disabled; always shadow for an extra shadow.
        weight: the voting weight (an extra shadow records its model's, and never votes).
        path: the artifact; None: the default file in the models dir (the four only).
        kind: the model that loads it (``xgb``, ``lgbm``, ``nhits``, ``patchtst``).
        sample: the fraction of decisions it predicts on while it shadows (``sampling``); 1: all.
    """

    name: str
    role: ModelRole
    weight: float
    path: Path | None  # None: resolved by the registry at load time
    kind: str
    sample: float = 1.0

    @property
    def extra(self) -> bool:
        """An extra shadow (``SHADOW_<MODEL>_<TAG>_MODEL_PATH``), not one of the four."""
        return self.name != self.kind

    @property
    def path_key(self) -> str:
        """The env key that names its artifact."""
        if not self.extra:
            return f"{MODEL_ENV_PREFIX[self.kind]}_MODEL_PATH"
        return extra_shadow_key(self.kind, self.name[len(self.kind) + 1:])

    @property
    def sample_key(self) -> str:
        """The env key of its sample fraction."""
        if not self.extra:
            return "SHADOW_SAMPLE"
        return extra_shadow_key(self.kind, self.name[len(self.kind) + 1:], _SAMPLE_SUFFIX)


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    store_path: Path
    models_dir: Path
    governor_state_file: Path
    governor_backend: str
    symbols: tuple[str, ...]
    interval: str
    data_dir: Path | None
    shard: tuple[int, int] | None
    log_level: str
    health_port: int
    redis_url: str
    redis_prefix: str
    stream_maxlen: int
    retention_days: float
    min_consensus: int
    confidence_boost: float
    confidence_cap: float
    shadow_log_interval_s: float
    shadow_deadline_ms: float
    model_timeout_ms: float
    shadow_isolation: str
    decision_cpu: int | None  # None: not pinned
    voter_lanes: int  # 1 or 2 (model_calls.VoterPool.lanes)
    flatline_window: int
    flatline_min_std: float
    models: dict[str, ModelConfig]
    env_file: Path | None = None
    retrain: RetrainConfig | None = None  # the retrain keys (load_settings always sets them)
    raw: dict[str, str] = field(default_factory=dict)
    shadows: dict[str, ModelConfig] = field(default_factory=dict)  # extra shadows by key, sorted
    dashboard_port: int = 0  # the operator dashboard on 127.0.0.1 beside serve; 0 = off
    dashboard_analysis_hours: float = 24.0  # the shadow analysis in the dashboard's process; 0 = off
    store_buffer_rows: int = 200_000  # failed store writes kept for retry (telemetry.sqlite)
    leases: bool = False  # AI_ENGINE_SHARD=lease: symbols held through Redis leases (leases.py)
    instance: str = ""  # this instance's name among the lease holders
    lease_ttl_ms: float = 15_000.0
    policy: PolicyConfig | None = None  # None: AI_ENGINE_POLICY=off

    def all_models(self) -> dict[str, ModelConfig]:
        """The four models, then the extra shadows: what the engine loads."""
        return self.models | self.shadows

    def weights(self) -> dict[str, float]:
        return {m: c.weight for m, c in self.models.items()}

    def roles(self) -> dict[str, ModelRole]:
        return {m: c.role for m, c in self.models.items()}

    def my_symbols(self) -> tuple[str, ...]:
        """Symbols owned by this instance: its shard of ``symbols`` (sorted for a stable assignment)."""
        if self.shard is None:
            return self.symbols
        idx, count = self.shard
        return tuple(s for i, s in enumerate(sorted(self.symbols)) if i % count == idx)


_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


_SHADOW = "SHADOW_"
_PATH_SUFFIX = "_MODEL_PATH"
_SAMPLE_SUFFIX = "_SAMPLE"
_TAG_RE = re.compile(r"^[A-Z0-9]+(?:_[A-Z0-9]+)*$")
_TAG_MAX = 32
# an extra shadow's keys by suffix (the path first: a tag may end in _SAMPLE)
_EXTRA_SHADOW_SPECS = {
    _PATH_SUFFIX: Key(Path, None, "an extra shadow's artifact (SHADOW_<MODEL>_<TAG>_MODEL_PATH)"),
    _SAMPLE_SUFFIX: Key(float, 1.0, "an extra shadow's sample fraction (SHADOW_<MODEL>_<TAG>_SAMPLE)", 0.0, 1.0),
}


def extra_shadow_key(model: str, tag: str, suffix: str = _PATH_SUFFIX) -> str:
    """The env key of the extra shadow ``<model>_<tag>``: ``SHADOW_PATCHTST_R2_MODEL_PATH`` (or its
    ``_SAMPLE``)."""
    return f"{_SHADOW}{MODEL_ENV_PREFIX[model]}_{tag.upper()}{suffix}"


def _extra_shadow_problem(key: str) -> tuple[tuple[str, str, str] | None, str | None]:
    """Classify a key that is not in ``KEYS``: ``((model, tag, suffix), None)`` for an extra
    shadow's key, ``(None, why)`` for one shaped like it but wrong (refused from every source: a
    misspelt shadow key would silently drop a deployed shadow), ``(None, None)`` when it is not
    shaped like one."""
    upper = key.upper()
    if not upper.startswith(_SHADOW) or upper in KEYS:
        return None, None
    rest = upper[len(_SHADOW):]
    model = next((m for m, p in MODEL_ENV_PREFIX.items() if rest.startswith(p + "_")), None)
    models = ", ".join(MODEL_ENV_PREFIX.values())
    if model is None:
        if upper.endswith(_PATH_SUFFIX):
            return None, (f"{key} names no model: an extra shadow's key is SHADOW_<MODEL>_<TAG>_MODEL_PATH "
                          f"with MODEL one of {models}")
        return None, None
    p = MODEL_ENV_PREFIX[model]
    body = rest[len(p) + 1:]
    if key != upper:
        return None, f"{key}: keys are case-sensitive, so it would be ignored; write {upper}"
    for suffix in ("_ROLE", "_WEIGHT", "_SHADOW_ONLY"):
        if body.endswith(suffix):
            return None, (f"{key}: an extra shadow never votes, so it has no role, weight or shadow flag (its only "
                          f"key is SHADOW_{p}_<TAG>_MODEL_PATH); to make that file vote, point {p}_MODEL_PATH at it "
                          f"(`ai-engine models shadow {model} --version V`, then `models activate {model}`)")
    if body == _PATH_SUFFIX[1:]:
        return None, f"{key} has no tag: write SHADOW_{p}_<TAG>_MODEL_PATH, e.g. SHADOW_{p}_R2_MODEL_PATH"
    if body == _SAMPLE_SUFFIX[1:]:
        return None, (f"{key} has no tag: write SHADOW_{p}_<TAG>_SAMPLE for an extra shadow, or SHADOW_SAMPLE for "
                      f"the four's shadows")
    suffix = next((x for x in _EXTRA_SHADOW_SPECS if body.endswith(x)), None)
    if suffix is None:
        parts = body.split("_")
        guess = "_".join(parts[:-2]) if len(parts) > 2 else parts[0]
        return None, (f"unknown configuration key {key}: an extra shadow's keys are SHADOW_{p}_<TAG>_MODEL_PATH and "
                      f"SHADOW_{p}_<TAG>_SAMPLE; did you mean SHADOW_{p}_{guess}_MODEL_PATH?")
    tag = body[: -len(suffix)]
    if not _TAG_RE.match(tag) or len(tag) > _TAG_MAX or tag == "SHADOW":
        return None, (f"{key}: the tag {tag!r} is not valid: letters and digits, words joined by single '_', at most "
                      f"{_TAG_MAX} characters, not SHADOW (patchtst_shadow is the spec shadow's model name), "
                      "e.g. R2 or V20260109")
    return (model, tag, suffix), None


def _is_extra_shadow(key: str) -> bool:
    return _extra_shadow_problem(key)[0] is not None


def extra_shadow_error(key: str) -> str | None:
    """Why ``key`` is not a valid extra shadow key (None: it is one), for a command to refuse a tag
    before it does slow work."""
    extra, problem = _extra_shadow_problem(key)
    return None if extra is not None else problem or f"{key} is not an extra shadow's key"


def _convert(key: str, raw: str) -> Any:
    extra = None if key in KEYS else _extra_shadow_problem(key)[0]
    spec = KEYS[key] if extra is None else _EXTRA_SHADOW_SPECS[extra[2]]
    raw = raw.strip()
    if not raw and not spec.empty_ok:
        raise ConfigError(f"{key} is empty; give a value, or remove the line to use the default")
    if spec.type is Path:
        if "\x00" in raw:
            raise ConfigError(f"{key}={raw!r} is not a valid path (NUL character)")
        try:
            return Path(raw).expanduser()
        except RuntimeError:  # ~user of an unknown user
            raise ConfigError(f"{key}={raw!r}: cannot expand {raw.split('/')[0]!r} (no such user)") from None
    if spec.type in (int, float) and "_" in raw:  # Python reads 2_5 as 25: a typo must not become a number
        raise ConfigError(f"{key}={raw!r} is not valid: write the number without '_'")
    if spec.type is bool:  # pydantic would also take t/f/y/n: a truncated "no" must not flip a role
        if raw.lower() not in _BOOLS:
            raise ConfigError(f"{key}={raw!r} is not valid: expected true/false (also 1/0, yes/no, on/off)")
        return _BOOLS[raw.lower()]
    try:
        value = TypeAdapter(spec.type).validate_python(raw) if spec.type is not str else raw
    except ValidationError:
        allowed = {int: "an integer", float: "a number"}[spec.type]
        raise ConfigError(f"{key}={raw!r} is not valid: expected {allowed}") from None
    if spec.type in (int, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}={raw!r} is not a finite number")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{key}={raw!r} is below its minimum {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(f"{key}={raw!r} is above its maximum {spec.maximum}")
    return value


_MODEL_PREFIXES = tuple(p + "_" for p in MODEL_ENV_PREFIX.values())


def _looks_ours(key: str) -> bool:
    upper = key.upper()
    return upper in KEYS or upper.startswith(_OWNED_PREFIXES)


def _check_unknown(keys: Iterable[str], source: str, strict: bool) -> None:
    """Refuse unknown keys that look like ours, in any case: keys are case-sensitive, so
    ``patchtst_shadow_only=true`` would be ignored and PatchTST would vote. In the process
    environment, where other software sets variables too, only model keys and near-misses of known
    keys are refused; others warn."""
    for key in keys:
        if key in KEYS:
            continue
        extra, problem = _extra_shadow_problem(key)
        if extra is not None:
            continue
        if problem is not None:
            raise ConfigError(f"{problem} (in {source})")
        upper = key.upper()
        close = [upper] if upper in KEYS else difflib.get_close_matches(upper, list(KEYS), n=1, cutoff=0.8)
        if upper.startswith(_OWNED_PREFIXES) or close:
            hint = f"; did you mean {close[0]}?" if close else ""
            msg = f"unknown configuration key {key} in {source}{hint}"
            if strict or close or upper.startswith(_MODEL_PREFIXES):
                raise ConfigError(msg + " (remove or fix it: unknown keys are refused so a typo never changes behaviour silently)")
            log.warning(msg + " (ignored)")


def _resolve_role(model: str, vals: dict[str, Any]) -> ModelRole:
    p = MODEL_ENV_PREFIX[model]
    role_raw, shadow_only = vals.get(f"{p}_ROLE"), vals.get(f"{p}_SHADOW_ONLY")
    role = None
    if role_raw is not None:
        try:
            role = ModelRole(role_raw.strip().lower())
        except ValueError:
            raise ConfigError(f"{p}_ROLE={role_raw!r} is not valid: expected voter, shadow or disabled") from None
    if shadow_only is True:
        if role not in (None, ModelRole.SHADOW):
            raise ConfigError(f"{p}_SHADOW_ONLY=true contradicts {p}_ROLE={role.value}; keep one of them")
        return ModelRole.SHADOW
    if shadow_only is False and role is ModelRole.SHADOW:
        raise ConfigError(f"{p}_SHADOW_ONLY=false contradicts {p}_ROLE=shadow; keep one of them")
    return role or ModelRole.VOTER


def _sample(key: str, value: float) -> float:
    """A sample fraction in (0, 1]: 0 would keep a shadow that never predicts (``models unshadow``
    stops one)."""
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{key}={value:g} is not valid: a sample fraction is above 0 and at most 1 (1 = every "
                          "decision); to stop a shadow, unshadow it")
    return value


def _extra_shadows(vals: dict[str, Any], models: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
    """The extra shadows, by key in sorted order (a stable ``model_breakdown`` order), each with
    its sample fraction; a sample key of no extra shadow is refused (it would budget nothing)."""
    out: dict[str, ModelConfig] = {}
    samples: dict[str, tuple[str, float]] = {}
    for key in sorted(vals):
        extra = _extra_shadow_problem(key)[0] if key not in KEYS else None
        if extra is not None:
            model, tag, suffix = extra
            name = f"{model}_{tag.lower()}"
            if suffix == _SAMPLE_SUFFIX:
                samples[name] = (key, _sample(key, vals[key]))
            else:
                out[name] = ModelConfig(name, ModelRole.SHADOW, models[model].weight, vals[key], kind=model)
    for name, (key, fraction) in samples.items():
        if name not in out:
            raise ConfigError(f"{key} budgets the extra shadow {name}, but there is no "
                              f"{key[: -len(_SAMPLE_SUFFIX)]}{_PATH_SUFFIX}; remove it or add the shadow")
        out[name] = replace(out[name], sample=fraction)
    return dict(sorted(out.items()))


def _validate_shadow_files(models: dict[str, ModelConfig], shadows: dict[str, ModelConfig], models_dir: Path) -> None:
    """Each extra shadow runs a file of its own: one already running under another key is a copy
    and paste mistake (its rows would be counted twice), refused."""
    seen: dict[Path, str] = {}
    for c in models.values():
        seen.setdefault((c.path or models_dir / _ARTIFACT[c.kind]).resolve(), c.path_key)
    for c in shadows.values():
        path = c.path.resolve()
        if path in seen:
            raise ConfigError(f"{c.path_key}={c.path} names the same file as {seen[path]}: a second shadow of a file "
                              "that already runs adds nothing; remove one of them")
        seen[path] = c.path_key


def _validate_weights(models: dict[str, ModelConfig]) -> None:
    total = sum(c.weight for c in models.values())
    if abs(total - 100.0) > 1e-6:
        parts = ", ".join(f"{m}={c.weight:g}" for m, c in models.items())
        raise ConfigError(f"model weights must sum to 100, got {total:g} ({parts})")


def _validate_voters(models: dict[str, ModelConfig], min_consensus: int) -> None:
    """A voter of weight 0 would still count toward consensus, and a consensus larger than the
    voters could never be reached: both are configuration mistakes, refused rather than run."""
    for m, c in models.items():
        if c.role is ModelRole.VOTER and c.weight <= 0:
            p = MODEL_ENV_PREFIX[m]
            raise ConfigError(f"{p}_WEIGHT={c.weight:g} but {m} is a voter, and a voter needs a weight > 0: "
                              f"give it a weight, or set {p}_ROLE=disabled (or shadow)")
    voters = [m for m, c in models.items() if c.role is ModelRole.VOTER]
    if min_consensus > len(voters):
        raise ConfigError(f"ENSEMBLE_MIN_CONSENSUS={min_consensus} but only {len(voters)} model(s) vote "
                          f"({', '.join(voters) or 'none'}), so no decision could ever trade: lower it or make "
                          "more models voters")


def _validate_redis(url: str, backend: str) -> None:
    """Refuse at parse what redis-py would refuse at first use (a traceback in ``status``, a reload
    "applied" onto a URL nothing can connect with). The message never repeats the URL: it may hold a
    password."""
    if backend == "redis" and not url:
        raise ConfigError("GOVERNOR_BACKEND=redis needs REDIS_URL; set it, or use GOVERNOR_BACKEND=file")
    if not url:
        return
    from redis.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL is not valid ({exc}); expected redis://[:password@]host[:port][/db], "
                          "rediss://… (TLS) or unix:///path/to/socket") from None


def _validate_interval(interval: str) -> None:
    if interval not in INTERVAL_MS:
        raise ConfigError(f"AI_ENGINE_INTERVAL={interval!r} is not valid: expected one of {', '.join(INTERVAL_MS)}")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The promotion policy ``serve`` follows (``lifecycle/policy.py``) for ``model`` (one of the
    four, or an extra shadow, which option B makes its model's voter): shadow for ``shadow_hours``
    and ``min_predictions``, then option B, then after ``b_hours`` option A (the live edge judged on
    the newest ``live_hours`` of its voting rows); each rollback level."""

    dry_run: bool
    model: str
    shadow_hours: float
    min_predictions: int
    b_weight: float
    b_rebalance: dict[str, float]
    b_hours: float
    live_hours: float
    a_weight: float
    a_rebalance: dict[str, float]
    rollback_on_fail: str
    rollback_on_worse: str
    interval_s: float

    @property
    def kind(self) -> str:
        """The model it votes as: ``model`` itself, or the model of an extra shadow (``patchtst_r2``)."""
        return self.model.split("_", 1)[0]


def _parse_policy(get) -> PolicyConfig | None:
    """The policy keys, checked together: the weights of each option sum to 100 without naming the
    model twice, and each rollback level is one ``rollback`` knows (fast never on WORSE: it only
    drops a shadow flag, and a promoted model has none)."""
    from ai_engine.lifecycle.activation import parse_weights
    from ai_engine.lifecycle.rollback import ROLLBACK_LEVELS

    mode = get("AI_ENGINE_POLICY").strip().lower()
    if mode not in ("off", "on", "dry-run"):
        raise ConfigError(f"AI_ENGINE_POLICY={mode!r} is not valid: expected off, on or dry-run")
    if mode == "off":
        return None
    model = get("AI_ENGINE_POLICY_MODEL").strip().lower()
    kind = model.split("_", 1)[0]
    if kind not in MODEL_ENV_PREFIX or (model != kind and not _TAG_RE.match(model[len(kind) + 1:].upper())):
        raise ConfigError(f"AI_ENGINE_POLICY_MODEL={model!r} is not valid: expected one of {', '.join(MODEL_ENV_PREFIX)}, "
                          "or an extra shadow's key (patchtst_r2, nhits_retrain)")
    options = {}
    for opt in ("B", "A"):
        key = f"AI_ENGINE_POLICY_{opt}_REBALANCE"
        weights = parse_weights(get(key), key)
        w = get(f"AI_ENGINE_POLICY_{opt}_WEIGHT")
        total = sum(weights.values()) + w
        if kind in weights or abs(total - 100.0) > 1e-6:
            raise ConfigError(f"{key}={get(key)} with AI_ENGINE_POLICY_{opt}_WEIGHT={w:g}: give the weights of the "
                              f"models other than {kind}, summing with its weight to 100 (got {total:g})")
        options[opt] = (w, weights)
    levels = {k: get(k).strip().lower() for k in ("AI_ENGINE_POLICY_ROLLBACK_ON_FAIL", "AI_ENGINE_POLICY_ROLLBACK_ON_WORSE")}
    for k, level in levels.items():
        allowed = ROLLBACK_LEVELS if k.endswith("FAIL") else ("full", "nuclear")
        if level not in allowed:
            raise ConfigError(f"{k}={level!r} is not valid: expected {', '.join(allowed)}")
    return PolicyConfig(mode == "dry-run", model, get("AI_ENGINE_POLICY_SHADOW_HOURS"),
                        get("AI_ENGINE_POLICY_MIN_PREDICTIONS"), *options["B"], get("AI_ENGINE_POLICY_B_HOURS"),
                        get("AI_ENGINE_POLICY_LIVE_HOURS"), *options["A"], levels["AI_ENGINE_POLICY_ROLLBACK_ON_FAIL"],
                        levels["AI_ENGINE_POLICY_ROLLBACK_ON_WORSE"], get("AI_ENGINE_POLICY_INTERVAL_S"))


def _validate_retention(days: float) -> float:
    if 0 < days < 7:
        raise ConfigError(
            f"AI_ENGINE_RETENTION_DAYS={days:g} would delete decisions inside the 7-day observation window "
            "the analysis needs; use 0 (keep everything) or at least 7"
        )
    return days


def _parse_shard(raw: str) -> tuple[int, int] | None:
    if not raw.strip() or raw.strip() == "lease":
        return None
    try:
        idx, count = (int(x) for x in raw.split("/"))
    except ValueError:
        raise ConfigError(f"AI_ENGINE_SHARD={raw!r} is not valid: expected 'index/count', e.g. 0/2") from None
    if count < 1 or not 0 <= idx < count:
        raise ConfigError(f"AI_ENGINE_SHARD={raw!r}: index must be in [0, count)")
    return idx, count


def _leases(shard: str, redis_url: str) -> bool:
    if shard.strip() != "lease":
        return False
    if not redis_url:
        raise ConfigError("AI_ENGINE_SHARD=lease needs REDIS_URL: the instances hold their symbols through Redis")
    return True


def _parse_symbols(raw: str) -> tuple[str, ...]:
    syms = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
    if not syms:
        raise ConfigError("AI_ENGINE_SYMBOLS is empty; give at least one symbol, e.g. BTCUSDT")
    bad = [s for s in syms if not s.isalnum()]
    if bad:
        raise ConfigError(f"AI_ENGINE_SYMBOLS has invalid symbols {bad}; use letters and digits, e.g. BTCUSDT")
    return syms


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """``serve``'s retrain schedule (``lifecycle/retrain.py``): every ``hours`` (0: off), each of
    ``models`` trained on the newest ``window_days`` of the candles in ``data_dir`` and put in shadow."""

    hours: float
    models: tuple[str, ...]
    window_days: float
    data_dir: Path | None


def _parse_retrain(get, env_path: Path | None) -> RetrainConfig:
    """The retrain keys, checked together; the model list is checked even while the schedule is off."""
    raw = get("AI_ENGINE_RETRAIN_MODELS")
    models = tuple(m.strip().lower() for m in raw.split(",") if m.strip())
    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        raise ConfigError(f"AI_ENGINE_RETRAIN_MODELS={raw!r} names {', '.join(bad)}: expected models among "
                          f"{', '.join(MODEL_NAMES)}")
    if len(set(models)) != len(models):
        raise ConfigError(f"AI_ENGINE_RETRAIN_MODELS={raw!r} names a model twice")
    hours = get("AI_ENGINE_RETRAIN_HOURS")
    data_dir = get("AI_ENGINE_RETRAIN_DATA_DIR") or get("AI_ENGINE_DATA_DIR")
    plan = RetrainConfig(hours, models, get("AI_ENGINE_RETRAIN_WINDOW_DAYS"), data_dir)
    if hours == 0:
        return plan
    if not models:
        raise ConfigError(f"AI_ENGINE_RETRAIN_HOURS={hours:g} but AI_ENGINE_RETRAIN_MODELS is empty: name the models "
                          "to retrain, e.g. xgb,patchtst, or set the hours to 0")
    if data_dir is None:
        raise ConfigError(f"AI_ENGINE_RETRAIN_HOURS={hours:g} needs candles to train on: set "
                          "AI_ENGINE_RETRAIN_DATA_DIR (or AI_ENGINE_DATA_DIR)")
    if env_path is None:
        raise ConfigError(f"AI_ENGINE_RETRAIN_HOURS={hours:g} needs an env file: each retrain is put in shadow by "
                          "an edit of it")
    return plan


def load_settings(
    env_file: Path | str | None = "auto",
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, environment, env file and explicit overrides (CLI flags).

    ``env_file="auto"`` uses ``$AI_ENGINE_ENV_FILE`` or ``/etc/quantum/ai-engine.env`` when present.
    """
    environ = dict(os.environ if environ is None else environ)
    if env_file == "auto":
        env_file = environ.get("AI_ENGINE_ENV_FILE") or (DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.is_file() else None)
    env_path = Path(env_file) if env_file else None

    raw: dict[str, str] = {k: v for k, v in environ.items() if k in KEYS or _is_extra_shadow(k)}
    _check_unknown([k for k in environ if _looks_ours(k) and k != "AI_ENGINE_ENV_FILE"], "the environment", strict=False)
    if env_path is not None:
        from_file = read_env_file(env_path)
        _check_unknown(from_file, str(env_path), strict=True)
        ignored = sorted(k for k, v in raw.items() if from_file.get(k) != v)
        if ignored:
            log.warning("ignoring %s from the process environment: %s is in use and the engine's keys come from it "
                        "alone", ", ".join(ignored), env_path)
        raw = {k: v for k, v in from_file.items() if k in KEYS or _is_extra_shadow(k)}
        _warn_if_world_readable(env_path, raw)
    for k, v in (overrides or {}).items():
        _check_unknown([k], "overrides", strict=True)
        raw[k] = v

    vals = {k: _convert(k, v) for k, v in raw.items()}
    get = lambda k: vals.get(k, KEYS[k].default)  # noqa: E731
    home = get("AI_ENGINE_HOME") or _default_home()
    models = {
        m: ModelConfig(
            name=m,
            role=_resolve_role(m, vals),
            weight=float(get(f"{MODEL_ENV_PREFIX[m]}_WEIGHT")),
            path=get(f"{MODEL_ENV_PREFIX[m]}_MODEL_PATH"),
            kind=m,
            sample=_sample("SHADOW_SAMPLE", get("SHADOW_SAMPLE")),
        )
        for m in MODEL_NAMES
    }
    shadows = _extra_shadows(vals, models)
    models_dir = get("AI_ENGINE_MODELS_DIR") or home / "models"
    _validate_shadow_files(models, shadows, models_dir)
    _validate_weights(models)
    _validate_voters(models, get("ENSEMBLE_MIN_CONSENSUS"))
    interval = get("AI_ENGINE_INTERVAL")
    _validate_interval(interval)
    backend = get("GOVERNOR_BACKEND").lower()
    if backend not in ("auto", "file", "redis"):
        raise ConfigError(f"GOVERNOR_BACKEND={backend!r} is not valid: expected auto, file or redis")
    _validate_redis(get("REDIS_URL"), backend)
    isolation = get("SHADOW_ISOLATION").lower()
    if isolation not in ("process", "thread"):
        raise ConfigError(f"SHADOW_ISOLATION={isolation!r} is not valid: expected process or thread")
    try:
        cpu = decision_cpu(get("AI_ENGINE_DECISION_CPU"))
    except ValueError as exc:
        raise ConfigError(f"AI_ENGINE_DECISION_CPU={get('AI_ENGINE_DECISION_CPU')!r} is not valid: {exc}") from None
    level = get("AI_ENGINE_LOG_LEVEL").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"AI_ENGINE_LOG_LEVEL={level!r} is not valid: expected DEBUG, INFO, WARNING or ERROR")
    return Settings(
        home=home,
        store_path=get("AI_ENGINE_STORE") or home / "telemetry.sqlite",
        models_dir=models_dir,
        governor_state_file=get("GOVERNOR_STATE_FILE") or home / "governor.json",
        governor_backend=backend,
        symbols=_parse_symbols(get("AI_ENGINE_SYMBOLS")),
        interval=interval,
        data_dir=get("AI_ENGINE_DATA_DIR"),
        shard=_parse_shard(get("AI_ENGINE_SHARD")),
        log_level=level,
        health_port=get("AI_ENGINE_HEALTH_PORT"),
        dashboard_port=get("AI_ENGINE_DASHBOARD_PORT"),
        dashboard_analysis_hours=get("AI_ENGINE_DASHBOARD_ANALYSIS_HOURS"),
        redis_url=get("REDIS_URL"),
        redis_prefix=get("AI_ENGINE_REDIS_PREFIX"),
        stream_maxlen=get("AI_ENGINE_STREAM_MAXLEN"),
        retention_days=_validate_retention(get("AI_ENGINE_RETENTION_DAYS")),
        store_buffer_rows=get("AI_ENGINE_STORE_BUFFER_ROWS"),
        leases=_leases(get("AI_ENGINE_SHARD"), get("REDIS_URL")),
        instance=get("AI_ENGINE_INSTANCE").strip() or socket.gethostname(),
        lease_ttl_ms=get("AI_ENGINE_LEASE_TTL_MS"),
        min_consensus=get("ENSEMBLE_MIN_CONSENSUS"),
        confidence_boost=get("ENSEMBLE_CONFIDENCE_BOOST"),
        confidence_cap=get("ENSEMBLE_CONFIDENCE_CAP"),
        shadow_log_interval_s=get("SHADOW_LOG_INTERVAL_S"),
        shadow_deadline_ms=get("SHADOW_DEADLINE_MS"),
        model_timeout_ms=get("MODEL_TIMEOUT_MS"),
        shadow_isolation=isolation,
        decision_cpu=cpu,
        voter_lanes=get("AI_ENGINE_VOTER_LANES"),
        flatline_window=get("FLATLINE_WINDOW"),
        flatline_min_std=get("FLATLINE_MIN_STD"),
        policy=_parse_policy(get),
        models=models,
        env_file=env_path,
        raw=raw,
        shadows=shadows,
        retrain=_parse_retrain(get, env_path),
    )


def _warn_if_world_readable(path: Path, raw: dict[str, str]) -> None:
    if "REDIS_URL" in raw and "@" in raw["REDIS_URL"] and path.stat().st_mode & 0o004:
        log.warning("env file %s holds a Redis password and is world-readable; chmod 640 it", path)


def config_id_for(applied: dict[str, Any]) -> str:
    """Short stable id of an applied configuration (roles, weights, versions, sha256)."""
    blob = json.dumps(applied, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
