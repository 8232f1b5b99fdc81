"""The shadow analysis on the dashboard: computed in the background by ``analysis.analyze``, the
same figures as ``ai-engine analyze --json``, served at once from the last round."""

from __future__ import annotations

import json
import urllib.request

from ai_engine.analysis import analyze, to_json
from ai_engine.dashboard import AnalysisJob, DashboardData, DashboardServer
from ai_engine.dashboard.analysis import summarize
from ai_engine.money import Execution
from tests.analysis.conftest import build_store


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback test server)
        return json.loads(resp.read())


def test_the_job_gives_the_gates_and_edge_of_analyze(tmp_path):
    store = build_store(tmp_path / "s.sqlite", n=600, history=200, tail=10, shadow="skilled")
    job = AnalysisJob(store, hours=24 * 30)
    assert job.snapshot()["state"] == "waiting" and job.snapshot()["models"] == []
    job.run_once()
    snap = job.snapshot()
    assert snap["state"] == "idle" and snap["computed_at"] and [m["model"] for m in snap["models"]] == ["patchtst"]
    m = snap["models"][0]
    ref_result = analyze(store, 24 * 30, model="patchtst", edge=True,
                         execution=Execution(fee_bps=10.0, slippage_bps=0.0, long_only=False, hold_bars=1))
    ref = to_json(ref_result)
    equity = m.pop("equity")
    assert m["error"] is None and m == {"model": "patchtst", "error": None} | summarize(ref)
    assert set(equity) == {"champion (as recorded)", "option A", "option B", "buy-and-hold"}
    assert all(len(c) == 200 for c in equity.values())
    champion = next(s for s in ref_result.edge.strategies if s.name == "champion (as recorded)")
    assert equity["champion (as recorded)"][-1] == round(float(champion.equity[-1]), 6)
    assert len(m["gates"]) == 4 and all(g["status"] in ("PASS", "FAIL", "INCONCLUSIVE") for g in m["gates"])
    assert all(g["lo"] <= g["value"] <= g["hi"] for g in m["gates"] if g["lo"] is not None)
    assert m["verdict"] == ref["verdict"] and m["edge_verdict"] == ref["edge"]["verdict"]
    assert [s["name"] for s in m["scenarios"]] == ["option A", "option B"] and m["recommendation"]["option"]


def test_the_endpoint_serves_the_last_round_and_says_when_it_is_off(tmp_path):
    store = build_store(tmp_path / "s.sqlite", n=300, history=200, tail=10)
    job = AnalysisJob(store, hours=24 * 30)
    job.run_once()
    data = DashboardData(store)
    on = DashboardServer(data, port=0, analysis=job).start()
    off = DashboardServer(data, port=0).start()
    try:
        doc = _get(on.url + "api/analysis")
        assert doc["enabled"] and doc["models"][0]["model"] == "patchtst" and doc["models"][0]["gates"]
        doc = _get(off.url + "api/analysis")
        assert not doc["enabled"] and doc["state"] == "off" and doc["models"] == []
    finally:
        on.close()
        off.close()
        data.close()


def test_a_store_without_candles_scores_nothing_and_says_so(dash_store):
    """The dashboard fixture's store has no candles: nothing is scored, the verdict says not ready."""
    job = AnalysisJob(dash_store.store, hours=24 * 30)
    job.run_once()
    (m,) = job.snapshot()["models"]
    assert m["model"] == "patchtst" and m["error"] is None and m["n_scored"] == 0
    assert m["verdict"] != "READY" and m["edge_verdict"] != "BETTER"


def test_a_failing_analysis_is_shown_and_the_others_go_on(tmp_path, monkeypatch):
    import ai_engine.analysis as analysis_pkg
    from ai_engine.exceptions import DataError

    store = build_store(tmp_path / "s.sqlite", n=300, history=200, tail=10)
    monkeypatch.setattr(analysis_pkg, "shadows_in_force", lambda path: ("patchtst", "ghost"))
    real = analysis_pkg.analyze

    def fake(path, hours, *, model, **kw):
        if model == "ghost":
            raise DataError("no predictions of ghost")
        return real(path, hours, model=model, **kw)

    monkeypatch.setattr(analysis_pkg, "analyze", fake)
    job = AnalysisJob(store, hours=24 * 30)
    job.run_once()
    by = {m["model"]: m for m in job.snapshot()["models"]}
    assert by["ghost"] == {"model": "ghost", "error": "no predictions of ghost"} and by["patchtst"]["gates"]
