"""The retrain loop (issue 18, item 7): ``ai-engine retrain`` and serve's schedule.

Real candles (a tree model on a short window), the registry, the env file, the audit log and a
running ``serve``. A retrain is staged with its report and sha256 and put in shadow as an extra
shadow (it never replaces a voter); a failed one changes nothing; on a schedule it runs in a
low-priority child of serve while serve keeps deciding.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ai_engine.agents.artifacts import sha256_file
from ai_engine.cli.main import main
from ai_engine.config import load_settings
from ai_engine.exceptions import ConfigError
from ai_engine.health import fetch_health
from ai_engine.lifecycle.registry import Registry
from ai_engine.model_slots import load_slots
from tests.helpers import reap, stop_gracefully, wait_for
from tests.reliability.conftest import SERVE, SYMBOLS, free_port, write_csvs

RETRAIN = ["--window-days", "60", "--epochs", "40", "--threads", "1"]


@pytest.fixture
def models(artifacts) -> dict[str, Path]:
    """The deployment's four: the lifecycle tests' artifacts, trained once per session."""
    return {m: getattr(artifacts, m) for m in ("xgb", "lgbm", "nhits", "patchtst")}


def deployment(tmp_path: Path, models: dict[str, Path], *extra: str) -> Path:
    env = tmp_path / "ai-engine.env"
    lines = ["# test deployment", f"AI_ENGINE_HOME={tmp_path / 'home'}", f"AI_ENGINE_SYMBOLS={','.join(SYMBOLS)}",
             "PATCHTST_SHADOW_ONLY=true", "GOVERNOR_BACKEND=file", "SHADOW_ISOLATION=thread"]
    lines += [f"{m.upper()}_MODEL_PATH={p}" for m, p in models.items()]
    env.write_text("\n".join([*lines, *extra]) + "\n")
    return env


def audit(home: Path) -> list[dict]:
    path = home / "audit.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_retrain_on_real_candles_stages_the_version_and_shadows_it_beside_the_voters(
        tmp_path, models, candles_dir, capsys):
    env = deployment(tmp_path, models)
    home = tmp_path / "home"
    before, inode = env.read_text(), env.stat().st_ino
    assert main(["retrain", "xgb", "--env-file", str(env), "--data", str(candles_dir), *RETRAIN]) == 0
    out = capsys.readouterr().out
    staged = Registry(home / "models").versions("xgb")
    assert len(staged) == 1
    sv = staged[0]
    # staged with its training report (on the real candles' newest 60 days) and its checksum
    assert sha256_file(sv.path) == sv.sha256 and f"sha256 {sv.sha256}" in out
    assert sv.report["symbols"] == list(SYMBOLS) and sv.report["interval"] == "1h" and not sv.report["synthetic"]
    assert sv.report["n_train"] + sv.report["n_test"] < 2 * 60 * 24 and sv.report["test"]["log_loss"] > 0
    # in shadow as one more line; the voters' keys are untouched (it never replaces a voter)
    after = env.read_text()
    assert after == before + f"SHADOW_XGB_RETRAIN_MODEL_PATH={sv.path}\n"
    assert env.stat().st_ino != inode  # replaced by a rename (atomic), not written in place
    assert [p.name for p in env.parent.iterdir() if p.name.startswith(".")] == []
    assert not list((home / "models").glob(".retrain-*"))  # the private training directory is gone
    stage_entry, shadow_entry = audit(home)
    assert stage_entry["what"] == "models.stage" and stage_entry["after"]["sha256"] == sv.sha256
    assert shadow_entry["what"] == "models.shadow xgb_retrain" and shadow_entry["sha256"] == sv.sha256
    assert shadow_entry["before"] == {"SHADOW_XGB_RETRAIN_MODEL_PATH": None}
    assert shadow_entry["after"] == {"SHADOW_XGB_RETRAIN_MODEL_PATH": str(sv.path)}
    assert Path(shadow_entry["backup"]).read_text() == before
    # the engine runs it in shadow, beside the voter it would replace, from the registry's checksum
    settings = load_settings(env)
    assert settings.models["xgb"].path == models["xgb"] and settings.models["xgb"].role.value == "voter"
    slot = load_slots(settings)["xgb_retrain"]
    assert slot.active and slot.role.value == "shadow" and slot.sha256 == sv.sha256


def test_a_retrain_predicts_the_classes_its_champion_was_trained_on(tmp_path, models, candles_dir):
    """The champion's label definition (its sidecar) is the retrain's: judged against each other,
    both must forecast the same classes."""
    from ai_engine.training import LabelConfig, TrainOptions, train_model

    labels = LabelConfig(horizon=3, k=0.15)
    champion = tmp_path / "champion" / "xgb_model.ubj"
    train_model("xgb", symbols=SYMBOLS, out_path=champion, synthetic=True, epochs=20, seed=0, threads=1, force=True,
                label_config=labels, options=TrainOptions(synthetic_bars=1200))
    env = deployment(tmp_path, {**models, "xgb": champion})
    assert main(["retrain", "xgb", "--env-file", str(env), "--data", str(candles_dir), *RETRAIN]) == 0
    (sv,) = Registry(tmp_path / "home" / "models").versions("xgb")
    assert sv.report["label_config"] == labels.to_dict()
    # a champion without a recorded definition: the training defaults
    assert main(["retrain", "lgbm", "--env-file", str(env), "--data", str(candles_dir), *RETRAIN]) == 0
    (lv,) = Registry(tmp_path / "home" / "models").versions("lgbm")
    assert lv.report["label_config"] == LabelConfig().to_dict()


@pytest.mark.parametrize(("args", "said"), [
    (["--data", "{empty}"], "error:"),                       # no candles of the symbols
    (["--data", "{real}", "--tag", "shadow"], "--tag 'shadow'"),  # the spec shadow's name: refused before training
    (["--data", "{real}", "--sample", "0"], "--sample 0 is not valid"),
], ids=["no-candles", "bad-tag", "bad-sample"])
def test_a_failing_retrain_is_reported_and_changes_nothing(tmp_path, models, candles_dir, capsys, args, said):
    env = deployment(tmp_path, models)
    home = tmp_path / "home"
    (tmp_path / "empty").mkdir()
    before, inode = env.read_bytes(), env.stat().st_ino
    argv = [a.replace("{empty}", str(tmp_path / "empty")).replace("{real}", str(candles_dir)) for a in args]
    assert main(["retrain", "xgb", "--env-file", str(env), *RETRAIN, *argv]) == 2
    assert said in capsys.readouterr().err
    assert env.read_bytes() == before and env.stat().st_ino == inode
    assert not (home / "models" / "registry.json").exists() and audit(home) == []
    assert not list((home / "models").glob(".retrain-*")) if (home / "models").exists() else True


@pytest.mark.parametrize(("keys", "said"), [
    ({"AI_ENGINE_RETRAIN_HOURS": "24"}, "AI_ENGINE_RETRAIN_MODELS is empty"),
    ({"AI_ENGINE_RETRAIN_HOURS": "24", "AI_ENGINE_RETRAIN_MODELS": "xgb,tft"}, "names tft"),
    ({"AI_ENGINE_RETRAIN_MODELS": "xgb,XGB"}, "names a model twice"),
    ({"AI_ENGINE_RETRAIN_HOURS": "24", "AI_ENGINE_RETRAIN_MODELS": "xgb"}, "needs candles"),
    ({"AI_ENGINE_RETRAIN_HOURS": "-1"}, "AI_ENGINE_RETRAIN_HOURS='-1' is below its minimum"),
    ({"AI_ENGINE_RETRAIN_HOURS": "daily"}, "AI_ENGINE_RETRAIN_HOURS='daily' is not valid"),
    ({"AI_ENGINE_RETRAIN_WINDOW_DAYS": "0.5"}, "AI_ENGINE_RETRAIN_WINDOW_DAYS='0.5' is below its minimum"),
    ({"AI_ENGINE_RETRAIN_HOUR": "24"}, "did you mean AI_ENGINE_RETRAIN_HOURS"),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_the_retrain_schedule_keys_are_parsed_strictly(tmp_path, keys, said):
    env = tmp_path / "ai-engine.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\n" + "".join(f"{k}={v}\n" for k, v in keys.items()))
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert said in str(err.value)


def test_a_retrain_schedule_without_an_env_file_is_refused(tmp_path, candles_dir):
    with pytest.raises(ConfigError, match="needs an env file"):
        load_settings(None, environ={"AI_ENGINE_HOME": str(tmp_path), "AI_ENGINE_RETRAIN_HOURS": "24",
                                     "AI_ENGINE_RETRAIN_MODELS": "xgb", "AI_ENGINE_DATA_DIR": str(candles_dir)})


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_serve_retrains_on_schedule_in_a_low_priority_child_and_keeps_deciding(
        tmp_path, models, candles_dir):
    """Every 1.8 s (0.0005 h) serve starts ``retrain xgb`` as its child. The first finds no candles: it
    fails, serve says so, and nothing changed. Then the candles arrive; while the next child trains,
    serve goes on deciding; its edit reaches serve as a reload, and the retrain runs in shadow."""
    port = free_port()
    data = tmp_path / "retrain-candles"
    data.mkdir()
    env = deployment(tmp_path, models, f"AI_ENGINE_HEALTH_PORT={port}", "AI_ENGINE_RETRAIN_HOURS=0.0005",
                     "AI_ENGINE_RETRAIN_MODELS=xgb", "AI_ENGINE_RETRAIN_WINDOW_DAYS=60",
                     f"AI_ENGINE_RETRAIN_DATA_DIR={data}")
    home = tmp_path / "home"
    original = env.read_bytes()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_ENGINE_", "NOTIFY_SOCKET", "REDIS_"))}
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([*SERVE, "--env-file", str(env), "--data", str(write_csvs(tmp_path / "candles", 1500)),
                             "--pace", "0.05", "--history", "150"], env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def child() -> int | None:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            return next((int(k) for k in kids if "\0retrain\0" in Path(f"/proc/{k}/cmdline").read_text()), None)

        failed = wait_for(lambda: re.search(r"retrain xgb \(pid (\d+)\) failed with exit 2", log_path.read_text()),
                          "the failed retrain reported", 120)
        assert env.read_bytes() == original and not (home / "models" / "registry.json").exists()
        for sym in SYMBOLS:
            (data / f"{sym}-1h.csv").symlink_to(candles_dir / f"{sym}-1h.csv")
        pid = wait_for(lambda: (c := child()) not in (None, int(failed[1])) and c, "the next retrain child", 120)
        # below the decisions' priority (the child lowers its own as it starts)
        wait_for(lambda: _nice(pid) > _nice(proc.pid), "the retrain child at a lower priority", 30)
        # serve goes on deciding while its child trains: decisions made during the child's life
        seen = set()
        while _alive(pid):
            if (h := fetch_health(port)) is not None:
                seen.add(h["decisions_made"])
        assert len(seen) >= 2, seen
        # the child's edit is applied by serve's reload: the retrain runs in shadow beside the voters
        wait_for(lambda: (h := fetch_health(port)) and "xgb_retrain" in h["roles"], "the retrain in shadow", 60)
        h = fetch_health(port)
        assert h["roles"]["xgb_retrain"] == "shadow" and h["roles"]["xgb"] == "voter"
        stop_gracefully(proc)
    finally:
        reap(proc, log)
    text = log_path.read_text()
    assert "retrain xgb started in a child process" in text and "retrain xgb: child of serve pid" in text
    assert "Traceback" not in text
    # one retrain shadow, the latest retrain's (or the one before, when serve stopped a child mid-way)
    staged, text = Registry(home / "models").versions("xgb"), env.read_text()
    assert text.count("SHADOW_XGB_RETRAIN_MODEL_PATH=") == 1 and any(str(v.path) in text for v in staged[-2:])
    assert {e["what"] for e in audit(home)} == {"models.stage", "models.shadow xgb_retrain"}
    with sqlite3.connect(home / "telemetry.sqlite") as db:
        rows = db.execute("SELECT role, COUNT(*) FROM predictions WHERE model = 'xgb_retrain' GROUP BY role").fetchall()
        assert rows and {r for r, _ in rows} == {"shadow"}
        top = db.execute("SELECT MAX(consensus_count), MAX(total_models) FROM decisions").fetchone()
        assert top[0] <= 3 and top[1] <= 3  # the retrain never voted
