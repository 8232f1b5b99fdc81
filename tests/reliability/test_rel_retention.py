"""Retention: ``TelemetryStore.prune`` bounds growth without touching what the analysis needs."""

from __future__ import annotations

import pytest

from ai_engine.engine import DecisionEngine
from ai_engine.exceptions import TransientError
from ai_engine.governor import FileGovernorBackend, Governor
from ai_engine.replay import replay_series
from ai_engine.telemetry.sqlite import TelemetryStore
from tests.reliability.conftest import settings_for


@pytest.fixture
def filled(models, series, tmp_path):
    settings = settings_for(tmp_path, models, ENSEMBLE_MIN_CONSENSUS="2")
    store = TelemetryStore(settings.store_path, outbox=True)
    engine = DecisionEngine(settings, store=store, governor=Governor(FileGovernorBackend(settings.governor_state_file)),
                            wait_for_shadow=True)
    replay_series(engine, series)
    engine.close()
    yield store
    store.close()


def test_prune_deletes_only_delivered_outbox_rows_by_default(filled):
    db = filled.connection
    n_out, n_dec = filled.count("outbox"), filled.count("decisions")
    db.execute("UPDATE outbox SET delivered_at = 1000 WHERE seq <= ?", (n_out // 2,))
    db.execute("UPDATE outbox SET delivered_at = 5000 WHERE seq = ?", (n_out // 2 + 1,))
    deleted = filled.prune(2000)
    assert deleted == {"outbox": n_out // 2}
    assert filled.count("outbox") == n_out - n_out // 2  # undelivered and recently delivered rows stay
    assert db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0] == n_out - n_out // 2 - 1
    assert filled.count("decisions") == n_dec  # the record is never trimmed unless asked


def test_prune_with_a_decision_retention_keeps_the_window(filled, series):
    times = sorted({int(t) for t in series["BTCUSDT"].open_time})
    cut = times[len(times) // 2]
    before = filled.count("decisions")
    kept = filled.connection.execute("SELECT COUNT(*) FROM decisions WHERE candle_open_time >= ?", (cut,)).fetchone()[0]
    deleted = filled.prune(0, decisions_before_ms=cut)
    assert deleted["decisions"] == before - kept and filled.count("decisions") == kept > 0
    db = filled.connection
    for table, col in (("predictions", "candle_open_time"), ("intents", "candle_open_time"), ("candles", "open_time")):
        assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} < ?", (cut,)).fetchone()[0] == 0
    orphans = db.execute("SELECT COUNT(*) FROM predictions p LEFT JOIN decisions d USING (event_id) "
                         "WHERE d.event_id IS NULL").fetchone()[0]
    assert orphans == 0


def test_prune_on_a_locked_store_is_a_transient_error_and_changes_nothing(filled):
    import sqlite3

    filled.connection.execute("UPDATE outbox SET delivered_at = 1")
    filled.connection.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(filled.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TransientError, match="prune failed"):
            filled.prune(2000)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert filled.count("outbox") > 0
