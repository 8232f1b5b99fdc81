"""Stores written by an earlier version stay readable, and are upgraded in place without losing a row."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np
import pytest

from ai_engine.analysis import analyze, to_json
from ai_engine.exceptions import DataError
from ai_engine.telemetry import SCHEMA_VERSION, TelemetryStore

# What version 1 wrote: predictions keyed by (event_id, model), with a (model, time) index.
V1_PREDICTIONS = """
CREATE TABLE predictions_v1 (
    event_id TEXT NOT NULL, model TEXT NOT NULL, symbol TEXT NOT NULL, candle_open_time INTEGER NOT NULL,
    role TEXT NOT NULL, status TEXT NOT NULL, action TEXT, confidence REAL, prob REAL, logit REAL,
    p_sell REAL, p_hold REAL, p_buy REAL, weight REAL, version TEXT, sha256 TEXT, latency_ms REAL, reason TEXT,
    PRIMARY KEY (event_id, model)
) WITHOUT ROWID;
INSERT INTO predictions_v1 SELECT * FROM predictions;
DROP TABLE predictions;
ALTER TABLE predictions_v1 RENAME TO predictions;
CREATE INDEX predictions_model_time ON predictions (model, candle_open_time);
PRAGMA user_version=1;
"""


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM predictions ORDER BY event_id, model").fetchall()


def _key(path) -> list[str]:
    with sqlite3.connect(path) as db:
        cols = db.execute("PRAGMA table_info(predictions)").fetchall()
    return [c[1] for c in sorted((c for c in cols if c[5]), key=lambda c: c[5])]


def _as_v1(path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_PREDICTIONS)
    db.close()


def test_new_store_keys_predictions_by_model_and_time(make_store):
    path = make_store(n=50)
    assert _key(path) == ["model", "candle_open_time", "event_id"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_version_1_store_is_analysed_as_it_is_and_upgraded_with_every_row(make_store, tmp_path):
    path = make_store(n=400)
    expected_rows = _rows(path)
    expected = to_json(analyze(path, 400))
    _as_v1(path)
    assert _key(path) == ["event_id", "model"]

    # read-only (the analysis) reads version 1 as it is, without writing to it
    assert to_json(analyze(path, 400)) == expected
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1

    # the engine's writable open upgrades it in place, once, keeping every row
    store = TelemetryStore(path)
    store.close()
    assert _key(path) == ["model", "candle_open_time", "event_id"]
    assert _rows(path) == expected_rows
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "predictions_v2" not in names and "predictions_model_time" not in names
    assert to_json(analyze(path, 400)) == expected

    # and a replayed row is still a duplicate: ignored, not added
    row = expected_rows[0]
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT OR IGNORE INTO predictions VALUES ({','.join('?' * len(row))})", row)
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == len(expected_rows)


@pytest.mark.parametrize("readonly", [False, True])
def test_unknown_schema_version_is_refused_with_its_number(make_store, readonly):
    path = make_store(n=20)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(DataError, match=rf"schema version 99, expected {SCHEMA_VERSION}"):
        TelemetryStore(path, readonly=readonly)


def _as_v2(path) -> None:
    """What version 2 wrote: decisions indexed by time alone."""
    with closing(sqlite3.connect(path)) as db:
        db.executescript("DROP INDEX decisions_time; CREATE INDEX decisions_time ON decisions (candle_open_time);"
                         "PRAGMA user_version=2;")


def _decision_plan(path) -> str:
    from ai_engine.analysis.decisions import BulkReader, read_decisions

    plans = []
    with closing(sqlite3.connect(path)) as db:
        class Explain(BulkReader):  # the analysis's own decision query, explained instead of run
            def columns(self, sql, args, kinds):
                plans.extend(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", list(args)))
                return [np.empty(0, dtype=np.int64)] * len(kinds)

        read_decisions(Explain(db, None), -1, 2**53, [], [], [])
    return " ".join(plans)


def test_the_analysis_reads_decisions_from_the_index_alone(make_store):
    """The decision read never steps over the payloads (about 1.6 kB a decision) and needs no sort."""
    path = make_store(n=50)
    plan = _decision_plan(path)
    assert "COVERING INDEX decisions_time" in plan and "TEMP B-TREE" not in plan, plan


def test_version_2_store_is_read_as_it_is_and_upgraded_to_the_covering_index(make_store):
    path = make_store(n=300)
    expected = to_json(analyze(path, 300))
    _as_v2(path)
    assert "COVERING" not in _decision_plan(path)
    assert to_json(analyze(path, 300)) == expected  # read-only: as it is
    TelemetryStore(path).close()  # the engine's open upgrades it
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "COVERING INDEX decisions_time" in _decision_plan(path)
    assert to_json(analyze(path, 300)) == expected
