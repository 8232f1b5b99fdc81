"""Reloads the running service cannot apply are refused whole, and `models` edits keep the env
file's owner, group and symlink."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

from ai_engine.health import fetch_health
from ai_engine.lifecycle.envfile import read_env_file, update_env_file
from tests.helpers import wait_for


def _governor_kill(env_file):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "REDIS_", "NOTIFY_SOCKET"))}
    return subprocess.run([sys.executable, "-m", "ai_engine.cli.main", "governor", "kill", "--env-file", str(env_file)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_a_reload_that_moves_the_governor_bus_or_home_is_refused_until_restart(deployment, start_serve, tmp_path):
    """Applied, the service would go on reading the old governor while ``governor kill`` writes the
    new one: the kill switch would be ignored."""
    log = tmp_path / "serve.log"
    proc = start_serve(pace=0.2, log=log)
    snap = wait_for(lambda: (h := fetch_health(deployment.port)) and h.get("decisions_made") and h, "first decisions")
    original = deployment.env.read_text()
    edits = {"GOVERNOR_STATE_FILE": str(tmp_path / "elsewhere.json"), "AI_ENGINE_HOME": str(tmp_path / "home2"),
             "GOVERNOR_BACKEND": "file", "REDIS_URL": "redis://127.0.0.1:1/0"}
    for n, (key, value) in enumerate(edits.items(), start=1):
        deployment.env.write_text(original)
        update_env_file(deployment.env, {key: value})
        proc.send_signal(signal.SIGHUP)
        after = wait_for(lambda n=n: (h := fetch_health(deployment.port))["reloads"]["refused"] == n
                         and h["state"] == "running" and h, f"reload with {key} refused")
        assert after["reloads"]["applied"] == 0 and after["config_id"] == snap["config_id"]
        refusal = [ln for ln in log.read_text().splitlines() if "reload refused" in ln][-1]
        assert key in refusal and f"changed in {deployment.env}" in refusal and "restart it to apply" in refusal
        if key == "GOVERNOR_STATE_FILE":  # the kill switch goes where the service does not look: said so
            kill = _governor_kill(deployment.env)
            assert kill.returncode == 1 and "where the kill switch is NOT on" in kill.stderr, kill.stderr
            assert fetch_health(deployment.port)["governor"]["kill"] is False
    deployment.env.write_text(original)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: fetch_health(deployment.port)["reloads"]["applied"] == 1, "the control reload applied")
    kill = _governor_kill(deployment.env)
    assert kill.returncode == 0 and "sees it" in kill.stdout, kill.stderr
    assert fetch_health(deployment.port)["governor"]["kill"] is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_a_models_edit_keeps_the_env_files_group_and_symlink(tmp_path):
    from ai_engine.config import load_settings
    from ai_engine.lifecycle.edits import edit_env

    target = tmp_path / "etc" / "ai-engine.env"
    target.parent.mkdir()
    target.write_text(f"AI_ENGINE_HOME={tmp_path / 'home'}\nSHADOW_LOG_INTERVAL_S=30\n")
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 0, 1234)  # root:qt in production
    link = tmp_path / "ai-engine.env"
    link.symlink_to(target)
    before = target.stat()
    edit_env(load_settings(link), "test.edit", {"SHADOW_LOG_INTERVAL_S": "5"})
    after = target.stat()
    assert link.is_symlink() and read_env_file(target)["SHADOW_LOG_INTERVAL_S"] == "5"
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (before.st_uid, before.st_gid, 0o640)
