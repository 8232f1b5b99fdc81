"""Three challengers at once on a real ``serve`` (issue 18, item 1): the spec's PatchTST shadow
and two extra shadows (a second PatchTST retrain and an NHiTS retrain) put in by the lifecycle
commands on the running service, each under its own key in the decisions, the store, the log and
``/health``; removed again by ``models unshadow``, audited, without a restart."""

from __future__ import annotations

import json
import re
import sqlite3

from ai_engine.exceptions import ConfigError
from ai_engine.health import fetch_health
from ai_engine.lifecycle.audit import read_audit
from tests.helpers import wait_for
from tests.reliability.conftest import tiny_torch_model

CHALLENGERS = ("patchtst", "patchtst_r3", "nhits_r2")


def _db(dep) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{dep.home / 'telemetry.sqlite'}?mode=ro", uri=True)


def _reloaded(cli, dep, *args: str) -> dict:
    old = fetch_health(dep.port)["config_id"]
    res = cli(*args, "--env-file", str(dep.env))
    assert res.exit_code == 0, res.output
    assert "reload signalled" in res.output
    return wait_for(lambda: (h := fetch_health(dep.port)) and h["config_id"] != old and h, f"reload after {args}")


def _decisions_on(dep, config_id: str, n: int) -> list[dict]:
    def got():
        with _db(dep) as db:
            rows = db.execute("SELECT payload FROM decisions WHERE config_id=? ORDER BY candle_open_time",
                              (config_id,)).fetchall()
        return len(rows) >= n and [json.loads(r[0]) for r in rows]
    return wait_for(got, f"{n} decisions on {config_id}", timeout=120)


def test_three_challengers_shadow_at_once_on_a_running_serve(deployment, artifacts, cli, start_serve, tmp_path):
    retrains = {"patchtst_r3": tiny_torch_model("patchtst", tmp_path / "r3" / "patchtst_r3.pth", seed=2),
                "nhits_r2": tiny_torch_model("nhits", tmp_path / "r2" / "nhits_r2.pth", seed=1)}
    versions = {}
    for key, src in (("patchtst", artifacts.patchtst_new), *retrains.items()):
        res = cli("models", "stage", str(src), "--model", key.split("_")[0], "--env-file", str(deployment.env))
        assert res.exit_code == 0, res.output
        versions[key] = res.output.split("staged: ")[1].split()[1]
    log = tmp_path / "serve.log"
    proc = start_serve(pace=0.2, log=log)
    wait_for(lambda: (h := fetch_health(deployment.port)) and h.get("decisions_made"), "first decisions")
    shadowed = [_reloaded(cli, deployment, "models", "shadow", "patchtst", "--version", versions["patchtst"]),
                _reloaded(cli, deployment, "models", "shadow", "patchtst", "--version", versions["patchtst_r3"], "--as", "r3")]
    snap = _reloaded(cli, deployment, "models", "shadow", "nhits", "--version", versions["nhits_r2"], "--as", "r2")
    shadowed.append(snap)
    assert snap["roles"] == {"xgb": "voter", "lgbm": "voter", "nhits": "voter", "patchtst": "shadow",
                             "patchtst_r3": "shadow", "nhits_r2": "shadow"}
    assert all(snap["models"][k]["status"] == "active" for k in CHALLENGERS)
    assert set(snap["model_processes"]) >= set(CHALLENGERS)  # each shadow in a process of its own
    env = deployment.env.read_text()
    assert "PATCHTST_SHADOW_ONLY=true" in env and "SHADOW_PATCHTST_R3_MODEL_PATH=" in env
    assert "SHADOW_NHITS_R2_MODEL_PATH=" in env and "NHITS_SHADOW_ONLY" not in env  # nhits itself still votes

    decisions = _decisions_on(deployment, snap["config_id"], 8)
    for d in decisions:
        mb = d["model_breakdown"]
        assert mb["patchtst"]["model"] == "patchtst_shadow" and mb["patchtst"]["shadow"] is True
        assert mb["patchtst_r3"]["model"] == "patchtst_r3_shadow" and mb["patchtst_r3"]["shadow"] is True
        assert mb["nhits_r2"]["model"] == "nhits_r2_shadow" and mb["nhits_r2"]["shadow"] is True
        assert mb["nhits"]["shadow"] is False and d["total_models"] <= 3 and d["consensus_count"] <= 3
        assert mb["patchtst_r3"]["sha256"] != mb["patchtst"]["sha256"] != mb["nhits_r2"]["sha256"]
    with _db(deployment) as db:
        ids = [d["event_id"] for d in decisions]
        rows = db.execute(f"SELECT model, COUNT(*) FROM predictions WHERE event_id IN ({','.join('?' * len(ids))}) "
                          "GROUP BY model", ids).fetchall()
    assert dict(rows) == dict.fromkeys(("xgb", "lgbm", "nhits", *CHALLENGERS), len(ids))

    res = cli("verify-shadow", "--model", "patchtst_r3", "--since", "10m", "--log", str(log),
              "--env-file", str(deployment.env))
    verdicts = {name.strip(): status for status, name in re.findall(r"^(PASS|FAIL|SKIP|INFO) +([^:]+):", res.output, re.M)}
    for name in ("model loaded", "shadow entry in every decision and intent", "consensus_count excludes the shadow model",
                 "shadow log lines"):
        assert verdicts.get(name) == "PASS", (name, res.output)

    snap = _reloaded(cli, deployment, "models", "unshadow", "nhits_r2")
    shadowed.append(snap)
    assert "nhits_r2" not in snap["roles"] and "SHADOW_NHITS_R2_MODEL_PATH" not in deployment.env.read_text()
    after = _decisions_on(deployment, snap["config_id"], 2)
    assert all("nhits_r2" not in d["model_breakdown"] and "patchtst_r3" in d["model_breakdown"] for d in after)
    assert fetch_health(deployment.port)["pid"] == proc.pid  # no restart at any step
    what = [e["what"] for e in read_audit(deployment.home)]
    assert what[-3:] == ["models.shadow patchtst_r3", "models.shadow nhits_r2", "models.unshadow nhits_r2"]

    text = log.read_text()
    for line in ("[SHADOW] PatchTST |", "[SHADOW] PatchTST r3 |", "[SHADOW] NHiTS r2 |",
                 "[PatchTST r3] Using SHADOW_PATCHTST_R3_MODEL_PATH env var:", "[NHiTS r2] ✅ Model weights loaded"):
        assert line in text, line
    intents = [json.loads(ln.split("Publishing trade.intent ", 1)[1]) for ln in text.splitlines()
               if "Publishing trade.intent" in ln]
    in_shadow = [i for i in intents if i["config_id"] in {s["config_id"] for s in shadowed}]
    assert all(i["consensus_count"] <= 3 for i in in_shadow)  # the spec's "consensus_count.*4" check


def test_a_bad_tag_or_an_unknown_extra_shadow_changes_nothing_and_a_good_one_is_listed(deployment, artifacts, cli):
    res = cli("models", "stage", str(artifacts.patchtst_new), "--model", "patchtst", "--env-file", str(deployment.env))
    assert res.exit_code == 0, res.output
    before = deployment.env.read_bytes()
    for args, said in ((("shadow", "patchtst", "--as", "shadow"), "SHADOW"),
                       (("shadow", "patchtst", "--as", "r-2"), "invalid key"),
                       (("unshadow", "patchtst_r9"), "not an extra shadow"),
                       (("unshadow", "patchtst"), "one of the four models")):
        res = cli("models", *args, "--env-file", str(deployment.env))
        assert isinstance(res.exception, ConfigError) and said in str(res.exception), (args, res.exception)
        assert deployment.env.read_bytes() == before, args
    assert [e["what"] for e in read_audit(deployment.home)] == ["models.stage"]

    res = cli("models", "shadow", "patchtst", "--as", "r2", "--env-file", str(deployment.env))
    assert res.exit_code == 0 and "SHADOW_PATCHTST_R2_MODEL_PATH: (unset) →" in res.output, res.output
    listing = json.loads(cli("models", "list", "--json", "--env-file", str(deployment.env)).output)
    (row,) = [r for r in listing if r["model"] == "patchtst"]
    assert row["in_use"] is True and row["role"] == "shadow (patchtst_r2)"
