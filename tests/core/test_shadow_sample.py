"""The shadow budget (issue 18, item 3): ``SHADOW_SAMPLE`` and ``SHADOW_<MODEL>_<TAG>_SAMPLE``.

Real models (xgb and lgbm from the training code, small real PatchTST/NHiTS), the engine's decide
path through replay, the SQLite store and the analysis. A budgeted shadow predicts on a fraction
of the decisions chosen from the event id: the same in every replay, close to the fraction asked
for, no inference on the others (recorded ``unsampled``), and the analysis judges it on the
decisions it saw only. Unset, every output is what it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ai_engine.config import load_settings
from ai_engine.engine import DecisionEngine
from ai_engine.exceptions import ConfigError
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.model_slots import load_slots
from ai_engine.replay import replay_series
from ai_engine.runtime import open_engine
from ai_engine.sampling import sampled
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.core.test_engine import strip
from tests.helpers import AgentWrapper
from tests.reliability.conftest import settings_for, tiny_torch_model

SPEC = {"PATCHTST_SHADOW_ONLY": "true"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """xgb and lgbm trained by the training code on a synthetic market, small real torch models,
    and a PatchTST retrain (another seed) for the extra shadow."""
    from ai_engine.training import TrainOptions, train_model

    out = tmp_path_factory.mktemp("sample_models")
    paths = {}
    for name, ext in (("xgb", ".ubj"), ("lgbm", ".txt")):
        paths[name] = out / f"{name}_model{ext}"
        train_model(name, symbols=("BTCUSDT", "ETHUSDT"), out_path=paths[name], synthetic=True, epochs=20, seed=0,
                    threads=1, force=True, options=TrainOptions(synthetic_bars=1200))
    for name in ("nhits", "patchtst"):
        paths[name] = tiny_torch_model(name, out / f"{name}_model.pth")
    paths["patchtst_r2"] = tiny_torch_model("patchtst", out / "patchtst_r2.pth", seed=1)
    return paths


@pytest.fixture(scope="module")
def series():
    from ai_engine.data import synthetic_market

    return synthetic_market(["BTCUSDT", "ETHUSDT"], interval="1h", n_bars=700, seed=5)


def _env(models: dict[str, Path], **env: str) -> dict[str, str]:
    return SPEC | {"SHADOW_PATCHTST_R2_MODEL_PATH": str(models["patchtst_r2"]), "SHADOW_ISOLATION": "thread"} | env


def _four(models: dict[str, Path]) -> dict[str, Path]:
    return {k: v for k, v in models.items() if k != "patchtst_r2"}


def replay(home: Path, models: dict[str, Path], series, **env: str):
    settings = settings_for(home, _four(models), **_env(models, **env))
    engine = open_engine(settings, wait_for_shadow=True)
    try:
        replay_series(engine, series, chunk=128)
        return settings, engine.store.decisions_json()
    finally:
        engine.close()


BUDGET = {"SHADOW_SAMPLE": "0.25", "SHADOW_PATCHTST_R2_SAMPLE": "0.5"}


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory, models, series):
    return replay(tmp_path_factory.mktemp("budget"), models, series, **BUDGET)


# -- configuration --------------------------------------------------------------------------------
BAD = [
    ({"SHADOW_SAMPLE": "0"}, "SHADOW_SAMPLE=0 is not valid"),
    ({"SHADOW_SAMPLE": "1.5"}, "SHADOW_SAMPLE='1.5' is above its maximum"),
    ({"SHADOW_SAMPLE": "-0.1"}, "SHADOW_SAMPLE='-0.1' is below its minimum"),
    ({"SHADOW_SAMPLE": "quarter"}, "SHADOW_SAMPLE='quarter' is not valid: expected a number"),
    ({"SHADOW_SAMPLE": "nan"}, "SHADOW_SAMPLE='nan' is not a finite number"),
    ({"SHADOW_SAMPLE": ""}, "SHADOW_SAMPLE is empty"),
    ({"SHADOW_SAMPLE": "0_5"}, "without '_'"),
    ({"SHADOW_PATCHTST_R2_SAMPLE": "0"}, "SHADOW_PATCHTST_R2_SAMPLE=0 is not valid"),
    ({"SHADOW_PATCHTST_R2_SAMPLE": "2"}, "SHADOW_PATCHTST_R2_SAMPLE='2' is above its maximum"),
    ({"SHADOW_NHITS_R9_SAMPLE": "0.5"}, "there is no SHADOW_NHITS_R9_MODEL_PATH"),  # budgets nothing
    ({"SHADOW_PATCHTST_SAMPLE": "0.5"}, "has no tag"),
    ({"SHADOW_PATCHTST_R2_SAMPLES": "0.5"}, "SHADOW_PATCHTST_<TAG>_SAMPLE"),  # misspelt
    ({"shadow_patchtst_r2_sample": "0.5"}, "case-sensitive"),
]


@pytest.mark.parametrize(("env", "said"), BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_a_bad_sample_value_or_key_is_refused_naming_the_key(tmp_path, env, said):
    text = f"AI_ENGINE_HOME={tmp_path}\nSHADOW_PATCHTST_R2_MODEL_PATH={tmp_path / 'r2.pth'}\n"
    (tmp_path / "ai-engine.env").write_text(text + "".join(f"{k}={v}\n" for k, v in env.items()))
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "ai-engine.env")
    assert said in str(err.value)


def test_sample_keys_are_parsed_per_challenger(tmp_path):
    settings = load_settings(None, environ={"AI_ENGINE_HOME": str(tmp_path), "SHADOW_SAMPLE": "0.25",
                                            "SHADOW_PATCHTST_R2_MODEL_PATH": "/m/r2.pth",
                                            "SHADOW_PATCHTST_R3_MODEL_PATH": "/m/r3.pth",
                                            "SHADOW_PATCHTST_R2_SAMPLE": "0.5"})
    assert settings.models["patchtst"].sample == 0.25
    assert settings.shadows["patchtst_r2"].sample == 0.5 and settings.shadows["patchtst_r3"].sample == 1.0
    assert settings.shadows["patchtst_r2"].sample_key == "SHADOW_PATCHTST_R2_SAMPLE"


# -- the decision path ----------------------------------------------------------------------------
def _seen(decisions: list[dict], key: str) -> list[str]:
    return [d["event_id"] for d in decisions if d["model_breakdown"][key]["status"] != "unsampled"]


def test_a_budgeted_shadow_sees_the_same_decisions_in_every_replay_at_the_fraction_asked(
        tmp_path, models, series, budgeted):
    settings, got = budgeted
    _, again = replay(tmp_path / "again", models, series, **BUDGET)
    _, full = replay(tmp_path / "full", models, series)
    n = len(got)
    assert n > 1000 and [d["event_id"] for d in again] == [d["event_id"] for d in got]
    assert strip(got) == strip(full)  # the vote never sees a shadow, budgeted or not
    for key, fraction in (("patchtst", 0.25), ("patchtst_r2", 0.5)):
        seen = _seen(got, key)
        assert seen == _seen(again, key)  # chosen from the event id: replays agree
        assert seen == [d["event_id"] for d in got if sampled(d["event_id"], key, fraction)]
        # the binomial count at the fraction: within 4 standard deviations
        assert abs(len(seen) - fraction * n) <= 4 * math.sqrt(n * fraction * (1 - fraction)), (key, len(seen), n)
        by_id = {d["event_id"]: d["model_breakdown"][key] for d in full}
        for d in got:
            e = d["model_breakdown"][key]
            assert e["shadow"] is True and e["role"] == "shadow"
            if e["status"] == "unsampled":
                assert e["action"] is None and e["latency_ms"] is None
                assert e["reason"] == ("not sampled (SHADOW_SAMPLE=0.25)" if key == "patchtst"
                                       else "not sampled (SHADOW_PATCHTST_R2_SAMPLE=0.5)")
            else:  # a sampled decision gets exactly the prediction the unbudgeted shadow made
                assert e["status"] == "ok" and e["probs"] == by_id[d["event_id"]]["probs"]
    # two shadows at their own fractions see different sets, not one the other's subset
    assert set(_seen(got, "patchtst")) - set(_seen(got, "patchtst_r2"))
    db = TelemetryStore(settings.store_path, readonly=True).connection
    rows = dict(db.execute("SELECT model || ':' || status, COUNT(*) FROM predictions WHERE model LIKE 'patchtst%' "
                           "GROUP BY 1").fetchall())
    assert rows == {"patchtst:ok": len(_seen(got, "patchtst")), "patchtst:unsampled": n - len(_seen(got, "patchtst")),
                    "patchtst_r2:ok": len(_seen(got, "patchtst_r2")),
                    "patchtst_r2:unsampled": n - len(_seen(got, "patchtst_r2"))}
    payload = json.loads(db.execute("SELECT payload FROM configs ORDER BY applied_at DESC LIMIT 1").fetchone()[0])
    assert payload["models"]["patchtst"]["sample"] == 0.25 and payload["models"]["patchtst_r2"]["sample"] == 0.5
    assert "sample" not in payload["models"]["xgb"]  # the voters are never budgeted


class Counting(AgentWrapper):
    """A real agent that counts the rows it is asked to predict on."""

    def __init__(self, agent) -> None:
        super().__init__(agent)
        self.rows = 0

    def predict(self, X):
        self.rows += len(X)
        return self._agent.predict(X)


def test_a_decision_not_sampled_runs_no_shadow_inference(tmp_path, models, series):
    settings = settings_for(tmp_path, _four(models), **_env(models, SHADOW_PATCHTST_R2_SAMPLE="0.1"))
    slots = load_slots(settings)
    spec, extra = Counting(slots["patchtst"].agent), Counting(slots["patchtst_r2"].agent)
    slots["patchtst"].agent, slots["patchtst_r2"].agent = spec, extra
    store = TelemetryStore(settings.store_path)
    engine = DecisionEngine(settings, store=store, slots=slots, wait_for_shadow=True,
                            governor=Governor(FileGovernorBackend(settings.governor_state_file)))
    short = {k: v.slice(0, 300) for k, v in series.items()}
    replay_series(engine, short, chunk=16)
    engine.close()
    got = store.decisions_json()
    assert spec.rows == len(got)  # unbudgeted: every decision
    assert 0 < extra.rows == len(_seen(got, "patchtst_r2")) < len(got) * 0.3


def test_a_late_budgeted_shadow_is_joined_on_its_sampled_decisions_only(tmp_path, models, series):
    """0.3 s per call against a 50 ms deadline: its sampled entries are ``late`` and joined to their
    own rows when they arrive; the decisions it was not sampled for stay ``unsampled``, never late."""
    from tests.core.test_engine import Broken

    settings = settings_for(tmp_path, _four(models), **_env(models, SHADOW_PATCHTST_R2_SAMPLE="0.5",
                                                             SHADOW_DEADLINE_MS="50"))
    slots = load_slots(settings)
    slots["patchtst_r2"].agent = Broken(slots["patchtst_r2"].agent, "slow")
    store = TelemetryStore(settings.store_path)
    engine = DecisionEngine(settings, store=store, slots=slots, wait_for_shadow=False,
                            governor=Governor(FileGovernorBackend(settings.governor_state_file)))
    replay_series(engine, {k: v.slice(0, 260) for k, v in series.items()}, chunk=32)
    engine.close()
    got = store.decisions_json()
    seen = set(_seen(got, "patchtst_r2"))
    assert 0 < len(seen) < len(got)
    assert {d["model_breakdown"]["patchtst_r2"]["status"] for d in got if d["event_id"] in seen} == {"late"}
    rows = dict(store.connection.execute(
        "SELECT event_id, status FROM predictions WHERE model = 'patchtst_r2'").fetchall())
    assert {e for e, st in rows.items() if st == "ok"} == seen  # each joined to its own decision
    assert {st for e, st in rows.items() if e not in seen} == {"unsampled"}


# -- the analysis ---------------------------------------------------------------------------------
def test_the_analysis_judges_a_budgeted_shadow_on_the_decisions_it_saw(tmp_path, series, budgeted):
    from ai_engine.analysis import analyze
    from ai_engine.analysis.analyze import analyze_challengers
    from ai_engine.analysis.render import render_text, to_json

    settings, got = budgeted
    hours = len(series["BTCUSDT"]) + 1.0
    for key, fraction in (("patchtst", 0.25), ("patchtst_r2", 0.5)):
        seen = len(_seen(got, key))
        result = analyze(settings.store_path, hours, model=key)
        m = result.primary
        assert m.n_rows == seen and not any("unsampled" in why for why, _ in m.skipped)  # never "missing"/skipped
        assert (m.sample.fractions, m.sample.seen, m.sample.not_sampled) == ((fraction,), seen, len(got) - seen)
        assert result.edge.decisions == seen and result.edge.sample.seen == seen  # compared on what it saw
        doc = to_json(result)
        assert doc["sample"]["seen"] == seen and doc["sample"]["fractions"] == [fraction]
        assert f"sample {fraction:g}: saw {seen} of {len(got)} decisions" in render_text(result)
    both = analyze_challengers(settings.store_path, hours, ("patchtst", "patchtst_r2"))
    assert [r.sample.seen for r in both.rows] == [len(_seen(got, "patchtst")), len(_seen(got, "patchtst_r2"))]


def test_the_verification_never_counts_a_decision_not_sampled_as_missing(budgeted):
    from ai_engine.lifecycle.verification import verify_shadow

    settings, _ = budgeted
    crit = {c.name: c for c in verify_shadow(settings, "patchtst", 10 * 86400.0, None)}
    assert crit["shadow entry in every decision and intent"].status == "PASS"


def test_a_decision_not_sampled_still_has_its_shadow_line_as_information(caplog):
    """verify-shadow counts the ``[SHADOW]`` lines at the configured rate: a budgeted shadow keeps
    its line (INFO, never the WARNING of a failed one), saying it was not sampled."""
    import logging

    from ai_engine.enums import ModelRole, ModelStatus
    from ai_engine.telemetry.shadow_log import ShadowLogger
    from ai_engine.types import ModelResult

    result = ModelResult("patchtst", ModelRole.SHADOW, ModelStatus.UNSAMPLED, 20.0,
                         reason="not sampled (SHADOW_SAMPLE=0.25)")
    with caplog.at_level(logging.INFO, logger="ai_engine.shadow"):
        ShadowLogger(30.0)("PatchTST", "BTCUSDT", result)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "[SHADOW] PatchTST | BTCUSDT | status=unsampled reason=not sampled (SHADOW_SAMPLE=0.25) | "
                 "mode=SHADOW_ONLY")]


def test_unset_and_one_give_what_the_engine_gave_before(tmp_path, models, series):
    """SHADOW_SAMPLE=1 is the default: the same records (config_id included) and the same analysis,
    with no sample field anywhere."""
    from ai_engine.analysis import analyze
    from ai_engine.analysis.render import to_json

    short = {k: v.slice(0, 400) for k, v in series.items()}
    unset_settings, unset = replay(tmp_path / "unset", models, short)
    one_settings, one = replay(tmp_path / "one", models, short, SHADOW_SAMPLE="1", SHADOW_PATCHTST_R2_SAMPLE="1")
    drop = ("decided_at", "decision_latency_ms")
    clean = lambda ds: [{k: v for k, v in d.items() if k not in drop} | {"model_breakdown": {  # noqa: E731
        m: {k: v for k, v in e.items() if k != "latency_ms"} for m, e in d["model_breakdown"].items()}} for d in ds]
    assert clean(unset) == clean(one)
    assert all(e["status"] == "ok" for d in unset for m, e in d["model_breakdown"].items() if m.startswith("patchtst"))
    hours = len(short["BTCUSDT"]) + 1.0
    docs = [to_json(analyze(s.store_path, hours, model="patchtst_r2")) for s in (unset_settings, one_settings)]
    for doc in docs:
        doc.pop("store")
    assert docs[0] == docs[1] and "sample" not in _keys(docs[0])


def _keys(doc) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    return {k for v in doc for k in _keys(v)} if isinstance(doc, list) else set()
