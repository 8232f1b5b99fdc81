"""`analyze` judges one artifact by default (the version in force, the rows `activate` judges), says
what it left out, and reads a clear interval as PASS/FAIL with few rows; progress, synthetic
candles and a compared voter are named in the report."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ai_engine.analysis import analyze, render_text
from ai_engine.cli.main import main

OLD_SHA = "ee" * 32


@pytest.fixture
def redeployed_store(make_store):
    """300 hours: the first 100 decisions made while an older patchtst (v1) voted, the rest with v2
    in shadow (the configuration in force)."""
    path = make_store(n=300, shadow="skilled")
    with sqlite3.connect(path) as db:
        applied, payload = db.execute("SELECT applied_at, payload FROM configs").fetchone()
        old = json.loads(payload)
        old["models"]["patchtst"] |= {"role": "voter", "weight": 20, "version": "v1", "sha256": OLD_SHA}
        db.execute("INSERT INTO configs VALUES ('cfg-old', ?, 'start', ?)", (applied - 1000, json.dumps(old)))
        first = [e for (e,) in db.execute("SELECT event_id FROM decisions ORDER BY candle_open_time LIMIT 100")]
        marks = ",".join("?" * len(first))
        db.execute(f"UPDATE decisions SET config_id='cfg-old' WHERE event_id IN ({marks})", first)
        db.execute(f"UPDATE predictions SET role='voter' WHERE model='patchtst' AND event_id IN ({marks})", first)
    return path


def _cli(capsys, *args) -> tuple[int, str]:
    """Exit code and stdout then stderr, unwrapped."""
    rc = main(["analyze", *map(str, args)])
    out = capsys.readouterr()
    return rc, " ".join((out.out + out.err).split())


def test_the_version_in_force_by_default_and_others_on_request(redeployed_store, capsys):
    rc, out = _cli(capsys, "--store", redeployed_store, "--hours", 300, "--no-edge")
    assert "Rows: the version in force: v2 (sha256 cdcdcdcdcdcd…) as shadow; 100 rows of other versions or roles" in out
    assert "Prediction rows in window 200 " in out
    # the same rows as the activation gate's (role shadow, that sha256)
    gate = analyze(redeployed_store, 300, only=("shadow", "cd" * 32), edge=False).primary
    assert gate.n_rows == 200 and analyze(redeployed_store, 300, all_versions=False, edge=False).primary.n_rows == 200

    _, out = _cli(capsys, "--store", redeployed_store, "--hours", 300, "--no-edge", "--all-versions")
    assert "every row of the model in the window (all versions and roles)" in out
    assert "Prediction rows in window 300 " in out and "model version changed inside the window" in out
    for flag, value in (("--version", "v1"), ("--sha256", "eeee")):
        _, out = _cli(capsys, "--store", redeployed_store, "--hours", 300, "--no-edge", flag, value)
        assert f"Rows: {flag} {value}: v1 (sha256 eeeeeeeeeeee…) as voter; 200 rows" in out, out
        assert "Prediction rows in window 100 " in out
    rc, out = _cli(capsys, "--store", redeployed_store, "--version", "v9")
    assert rc == 2 and "error: --version v9: no recorded configuration" in out
    rc, _ = _cli(capsys, "--store", redeployed_store, "--version", "v1", "--all-versions")
    assert rc == 2


def test_a_clear_interval_is_judged_with_few_rows_but_not_below_30(make_store):
    flat = make_store(n=50, shadow="flat")
    m = analyze(flat, 50, edge=False).primary
    assert m.n_valid == 50 < 100
    g1, g2 = m.gates[:2]
    assert g2.hi < 0.05 and g2.status == "FAIL" and g1.lo > 0.70 and g1.status == "FAIL"
    assert m.verdict == "NOT_READY"
    tiny = analyze(make_store(n=20, shadow="flat"), 20, edge=False).primary
    assert [g.status for g in tiny.gates] == ["INCONCLUSIVE"] * 4
    assert "only 20 valid predictions (< 30: too few to judge)" in tiny.gates[1].detail


def test_progress_synthetic_and_a_compared_voter_are_named(make_store):
    path = make_store(n=300, shadow="skilled")
    text = render_text(analyze(path, 300, compare="lgbm", edge=False))
    assert "300 valid predictions at 1/h → ~168 expected in 7 days" in text
    assert "Progress vs target (10,000 predictions): 300 (3%); 404 more days at this rate" in text
    assert "lgbm (a VOTER: it already votes, so this verdict is for reference, not activation): " in text
    assert "SYNTHETIC" not in text
    with sqlite3.connect(path) as db:
        db.execute("UPDATE decisions SET synthetic = 1")

    def spec_report(p) -> list[str]:
        return render_text(analyze(p, 300, edge=False)).split("\n── Edge:")[0].rstrip().splitlines()

    lines = spec_report(path)
    assert lines[-2].startswith("⚠ SYNTHETIC candles: 300 of the window's 300 decisions")
    assert lines[-1] == spec_report(make_store(n=300, shadow="skilled"))[-1]  # the spec's verdict line, unchanged


def test_html_opens_with_the_verdict_and_a_gate_summary_and_renders_sections_as_html(make_store, tmp_path):
    from ai_engine.analysis import write_html

    page = write_html(analyze(make_store(n=300, shadow="copy"), 300, compare="lgbm"), tmp_path / "r.html").read_text()
    body = page.split("<body>", 1)[1]
    verdict, gates = body.index('<div class="verdict"'), body.index("<h2>Gate summary</h2>")
    assert verdict < gates < body.index("<h2>1. Action Distribution</h2>") < body.index("<h2>Figures</h2>")
    assert "patchtst: READY FOR ACTIVATION" in body[verdict:gates]
    assert body[gates:].split("</table>", 1)[0].count("<tr>") == 6  # header, four gates, gates passed
    assert not any(e in page for e in "✅❌⏳")  # missing glyphs on a plain machine's fonts
    assert '"DejaVu Sans"' in page and '"Liberation Sans"' in page
    assert "Action Distribution" not in "".join(p.split("</pre>")[0] for p in page.split("<pre>")[1:])
