"""bench/run_all.py's partial runs: ``--only`` into an existing BENCHMARKS.md replaces the sections it
ran and keeps the others byte for byte, and the Targets table comes from every section's embedded
figures. Pure functions only: no benchmark runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("run_all", Path(__file__).resolve().parents[2] / "bench" / "run_all.py")
run_all = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_all)

PLAN = ["latency", "replay", "scale", "training", "features", "demo"]
MACHINE = {"cpu": "test", "cores": 2}
LAT = [{"symbols": 1, "latency_off_p50_ms": 1.241, "latency_off_p99_ms": 2.391, "latency_on_p50_ms": 1.253,
        "latency_on_p99_ms": 2.306, "p99_ratio_on_off": 0.964, "voters_forward_sum_ms": 0.621,
        "p50_ratio_to_voters_forward": 1.997, "publish_on_p50_ms": 2.913, "publish_on_p99_ms": 7.058,
        "publish_off_p50_ms": 1.55, "publish_off_p99_ms": 5.767}]
REP = {"decisions": 43800, "end_to_end_s": 12.4, "chunk": 512, "throughput_rows_s": 3550.0,
       "forward_limit_rows_s": 4020.0, "ratio_to_limit": 0.883}
SCALE = [{"symbols": n, "latency_p50_ms": p50, "latency_p99_ms": p50 * 1.3, "voters_forward_sum_ms": p50 / r,
          "p50_ratio_to_voters_forward": r, "rss_end_mib": rss, "store_decisions_per_s": 7000.0, "bus_rows_per_s": 9000.0}
         for n, p50, r, rss in [(1, 1.72, 2.43, 365.0), (400, 30.0, 1.1, 800.0), (1000, 70.0, 1.2, 1300.0)]]


def result(name: str, rc: int = 0, figures: object = None, output: str = "raw output", started: str = "2026-12-01 10:00 UTC") -> dict:
    return {"name": name, "cmd": f"python bench/bench_{name}.py", "rc": rc, "wall_s": 12.0, "output": output,
            "load_before": "0.50 0.40 0.30", "load_after": "0.60 0.40 0.30", "note": "", "started": started,
            "figures": figures}


def write(results: list[dict], existing: str | None = None, ran: list[str] | None = None) -> str:
    sections = run_all.merge(existing, {r["name"]: run_all.render_section(r) for r in results}, PLAN)
    return run_all.document(sections, MACHINE, "python bench/run_all.py --only x", "2026-12-05 08:00 UTC",
                            ran or [r["name"] for r in results])


def targets_table(doc: str) -> str:
    return run_all.split_sections(doc)["Targets"]


@pytest.fixture
def full() -> str:
    """A file from a run of latency, replay and features; features' output holds a ``## `` line."""
    return write([result("latency", figures=LAT), result("replay", figures=REP),
                  result("features", output="## not a heading\nbars 5000")])


def test_rerun_keeps_other_sections_byte_identical_in_plan_order(full: str) -> None:
    old = run_all.split_sections(full)
    doc = write([result("replay", figures={**REP, "end_to_end_s": 9.9}, started="2026-12-05 08:00 UTC")], full)
    new = run_all.split_sections(doc)
    assert list(new) == ["Machine", "Targets", "latency", "replay", "features"]
    assert new["latency"] == old["latency"] and new["features"] == old["features"]
    assert new["replay"] != old["replay"] and "run 2026-12-05 08:00 UTC" in new["replay"]
    assert "## not a heading\n" in new["features"]
    assert "which regenerated replay" in doc and "Each section carries the UTC date it was run" in doc


def test_merge_orders_by_plan_and_keeps_unknown_sections() -> None:
    existing = ("# Benchmarks\n\n## demo (issue 17) — by hand\n\nkept\n\n## latency — ok\n\nold\n\n"
                "## notes\n\nhand-written\n")
    new = {"replay": run_all.render_section(result("replay", figures=REP))}
    merged = run_all.merge(existing, new, PLAN)
    assert list(merged) == ["latency", "replay", "demo", "notes"]
    assert merged["demo"] == "## demo (issue 17) — by hand\n\nkept\n\n"
    assert merged["notes"] == "## notes\n\nhand-written\n"


def test_targets_of_a_benchmark_not_rerun_come_from_its_embedded_json(full: str) -> None:
    doc = write([result("replay", figures={**REP, "end_to_end_s": 9.9})], full)
    table = targets_table(doc)
    assert "| p50 latency (shadow off) / voters' forwards, 1 symbol(s) | 2.00 | ≤ 1.25 | ❌ |" in table
    assert "| p99 shadow on / off, 1 symbol(s) | 0.964 | ≤ 1.05 | ✅ |" in table
    assert "end to end | 9.9 s | ≤ 60 s | ✅ |" in table and "12.4 s" not in table
    assert run_all.figures(run_all.split_sections(doc)["latency"]) == LAT


def test_failed_run_replaces_its_section_and_its_old_figures_are_not_used() -> None:
    """Decision: a failed run's section replaces the old one, and its target rows say FAILED rather
    than show an older run's (passing) figures as if they held for the current code."""
    before = write([result("scale", figures=SCALE)])
    assert "| p50 latency / voters' bare forwards, 400 symbols | 1.10 | ≤ 1.25 | ✅ |" in targets_table(before)
    doc = write([result("scale", rc=1, figures=SCALE, output="Traceback ...")], before)
    section = run_all.split_sections(doc)["scale"]
    assert section.startswith("## scale — FAILED (exit 1)\n") and "Traceback" in section
    assert run_all.figures(section) is None and "| 400 |" not in section
    table = targets_table(doc)
    assert "| scale: last run FAILED (exit 1), no figures | — | | ❌ |" in table and "1.10" not in table


def test_section_without_figures_gets_a_row_saying_so() -> None:
    existing = "# Benchmarks\n\n## latency — ok\n\nfrom before the embedded figures\n"
    table = targets_table(write([result("replay", figures=REP)], existing))
    assert "| latency: no figures stored in its section (re-run with `--only latency`) | — | | |" in table


def test_scale_section_has_growth_table_above_raw_output_and_a_400_symbol_target() -> None:
    doc = write([result("scale", figures=SCALE)])
    section = run_all.split_sections(doc)["scale"]
    assert section.index("| 400 | 30.00 / 39.00 ms | 27.27 ms | 800 MiB | 7000 | 9000 |") < section.index("```")
    assert "Memory per symbol (end RSS slope 400 → 1000 symbols): 853 KiB." in section
    assert run_all.scale_rows(SCALE[:1]) == []  # a --quick run (1, 30 symbols) has no 400-symbol row


def test_embedded_json_cannot_close_its_comment() -> None:
    figs = {"rows": [{"note": "a --> b <!-- c"}], "target_s": 60}
    section = run_all.render_section(result("demo", figures=figs))
    assert section.count("-->") == 1
    assert run_all.figures(section) == figs


def test_main_only_merges_into_the_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring: --only into an existing --out merges, and scale's --json reaches its section."""
    import json

    def fake_run(name: str, args: list[str], timeout: int, note: str) -> dict:
        Path(args[args.index("--json") + 1]).write_text(json.dumps(SCALE))
        return result(name)

    monkeypatch.setattr(run_all, "run", fake_run)
    monkeypatch.setattr(run_all, "machine", lambda: MACHINE)
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(write([result("latency", figures=LAT)]))
    latency = run_all.split_sections(out.read_text())["latency"]
    assert run_all.main(["--only", "scale", "--out", str(out)]) == 0
    doc = out.read_text()
    assert run_all.split_sections(doc)["latency"] == latency
    assert "`python bench/run_all.py --only scale --out" in doc and "400 symbols | 1.10 | ≤ 1.25 | ✅ |" in doc
    assert run_all.main(["--only", "scale", "--fresh", "--out", str(out)]) == 0
    assert "latency" not in run_all.split_sections(out.read_text())
