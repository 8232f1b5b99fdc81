"""Security: no code execution from model files, checksums at load, secrets never logged, Redis
AUTH and TLS through REDIS_URL, a read-only health endpoint."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
import torch

from ai_engine.agents.artifacts import meta_path_for, sha256_file
from ai_engine.exceptions import ModelLoadError
from ai_engine.runtime import open_engine
from tests.reliability.conftest import engine_env, settings_for

SECRET = "s3cret-Pa55"


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_pth(tmp_path: Path, container: str) -> tuple[Path, Path]:
    """A .pth whose unpickling would run ``touch marker``, with a sidecar whose checksum matches."""
    marker = tmp_path / f"pwned_{container}"
    path = tmp_path / f"evil_{container}.pth"
    payload = {"format_version": 1, "model": "patchtst", "state_dict": _Exploit(marker)}
    if container == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    meta_path_for(path).write_text(json.dumps({"model": "patchtst", "sha256": sha256_file(path), "version": "patchtst_v1"}))
    return path, marker


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "ai_engine.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_crafted_pickle_is_refused_by_engine_reload_and_stage_and_never_runs(container, models, tmp_path):
    from ai_engine.lifecycle.activation import stage
    from ai_engine.lifecycle.registry import Registry

    evil, marker = crafted_pth(tmp_path, container)
    settings = settings_for(tmp_path / "home", dict(models, patchtst=evil))
    engine = open_engine(settings)  # at start: excluded with the reason
    try:
        slot = engine.state.slots["patchtst"]
        assert not slot.active and "refused to unpickle" in slot.reason
        good = settings_for(tmp_path / "home", models)
        assert engine.reload(good)
        assert engine.reload(settings) is False  # at reload: refused as a whole
        assert engine.state.slots["patchtst"].active
    finally:
        engine.close()
    with pytest.raises(ModelLoadError, match="refused to unpickle"):
        stage(settings, "patchtst", evil)
    assert Registry(settings.models_dir).versions("patchtst") == []
    env = {**os.environ, **engine_env(tmp_path / "home", {})}
    r = _cli("models", "stage", str(evil), "--model", "patchtst", "--env-file", "none", env=env)
    assert r.returncode == 5 and "refused to unpickle" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists(), "the pickle payload ran"


def _stage_in_use(home: Path, models: dict[str, Path]):
    """xgb staged into the registry of ``home`` and named by the env as the file to load."""
    from ai_engine.lifecycle.activation import stage

    others = {k: v for k, v in models.items() if k != "xgb"}
    staged, _ = stage(settings_for(home, others), "xgb", models["xgb"])
    return settings_for(home, others | {"xgb": staged.path}), staged


def test_tampered_registry_file_is_refused_at_load(models, tmp_path):
    settings, staged = _stage_in_use(tmp_path / "home", models)
    data = bytearray(staged.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    staged.path.write_bytes(bytes(data))
    engine = open_engine(settings)
    engine.close()
    slot = engine.state.slots["xgb"]
    assert slot.path == staged.path and not slot.active and "checksum mismatch" in slot.reason


def test_registry_checksum_is_verified_even_when_the_sidecar_was_replaced_too(models, tmp_path):
    settings, staged = _stage_in_use(tmp_path / "home", models)
    other = tmp_path / "other" / "xgb_model.ubj"
    # an attacker (or a botched copy) swaps file and sidecar for a different valid xgb model
    from ai_engine.training import TrainOptions, train_model

    train_model("xgb", symbols=("BTCUSDT",), out_path=other, synthetic=True, epochs=5, seed=9, threads=1, force=True,
                options=TrainOptions(synthetic_bars=600))
    staged.path.write_bytes(other.read_bytes())
    meta_path_for(staged.path).write_text(meta_path_for(other).read_text())
    engine = open_engine(settings)
    engine.close()
    slot = engine.state.slots["xgb"]
    assert not slot.active and "registry" in slot.reason


def test_world_readable_env_file_with_a_password_warns(tmp_path, caplog):
    from ai_engine.config import load_settings

    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\nREDIS_URL=redis://:{SECRET}@127.0.0.1:6390/0\n")
    caplog.set_level(logging.WARNING)
    env.chmod(0o644)
    load_settings(env, environ={})
    assert "holds a Redis password and is world-readable; chmod 640 it" in caplog.text
    assert SECRET not in caplog.text
    caplog.clear()
    env.chmod(0o640)
    load_settings(env, environ={})
    assert "world-readable" not in caplog.text


def test_secrets_never_appear_in_logs_or_output(models, tmp_path, private_redis):
    server = private_redis(password=SECRET)
    env_file = tmp_path / "ai-engine.env"
    home = tmp_path / "home"
    settings_for(home, models, GOVERNOR_BACKEND="file")  # releases the file governor
    lines = engine_env(home, models, REDIS_URL=server.url, GOVERNOR_BACKEND="file", AI_ENGINE_LOG_LEVEL="DEBUG")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    env_file.chmod(0o600)
    child = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "REDIS_"))}
    out = []
    r = _cli("replay", "--synthetic", "--bars", "300", "--env-file", str(env_file), env=child)
    assert r.returncode == 0, r.stderr[-2000:]
    out.append(r.stdout + r.stderr)
    r = _cli("status", "--env-file", str(env_file), env=child)
    out.append(r.stdout + r.stderr)
    # AUTH worked: the decisions reached the password-protected server
    client = redis.Redis.from_url(server.url)
    assert client.xlen("quantum:stream:ai.decision") > 0
    # a wrong password: refused, spooled, and the wrong password is not printed either
    env_file.write_text(env_file.read_text().replace(SECRET, "wr0ng-Pa55"))
    r = _cli("replay", "--synthetic", "--bars", "300", "--seed", "2", "--env-file", str(env_file), env=child)
    out.append(r.stdout + r.stderr)
    text = "\n".join(out)
    assert SECRET not in text and "wr0ng-Pa55" not in text
    assert "***" in text  # the URL is shown, redacted


def test_rediss_url_is_accepted_and_uses_tls(tmp_path):
    from ai_engine.config import load_settings
    from ai_engine.telemetry.redis_governor import RedisGovernorBackend
    from ai_engine.telemetry.redis_streams import RedisPublisher
    from ai_engine.telemetry.sqlite import TelemetryStore

    url = f"rediss://:{SECRET}@redis.example.internal:6380/0?ssl_cert_reqs=required"
    settings = load_settings(None, environ={"AI_ENGINE_HOME": str(tmp_path), "REDIS_URL": url})
    assert settings.redis_url == url
    store = TelemetryStore(settings.store_path, outbox=True)
    pub = RedisPublisher.from_settings(settings, store, start=False)
    pool = pub._redis.connection_pool
    assert pool.connection_class is redis.SSLConnection and pool.connection_kwargs["password"] == SECRET
    gov = RedisGovernorBackend(url)
    assert SECRET not in gov.describe()
    store.close()


def test_health_endpoint_is_read_only():
    from ai_engine.health import HealthServer

    calls = []
    server = HealthServer(0, lambda: calls.append(1) or {"state": "running"}).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
            assert json.loads(r.read()) == {"state": "running"}
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            req = urllib.request.Request(f"{base}/health", data=b'{"kill": true}', method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 405
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/governor/release", timeout=5)
        assert err.value.code == 404
    finally:
        server.close()
    assert len(calls) == 1  # only the GET read the state
