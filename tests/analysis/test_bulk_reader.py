"""The bulk reader gives the same columns through ADBC and through sqlite3, whatever a hand-edited
store holds: text coded against a vocabulary (-1 NULL, len(vocab) unknown), numbers with NULL as
NaN, and a column the driver cannot type (NULL first, numbers later; text in a number column)
read again through sqlite3 instead of failing."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ai_engine.analysis.decisions import BulkReader, text

VOCAB = ("SELL", "HOLD", "BUY")


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "t.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE x (i INTEGER, a TEXT, c REAL)")
    rows = [(k, ["SELL", "HOLD", "BUY", None, "buy", 7][k % 6], None if k < 1500 else k / 10) for k in range(3000)]
    db.executemany("INSERT INTO x VALUES (?,?,?)", rows)
    db.commit()
    db.close()
    return path, rows


def _readers(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    return db, BulkReader(db, f"file:{path}?mode=ro"), BulkReader(db, None)


def _expected_codes(rows):
    return np.array([VOCAB.index(a) if a in VOCAB else (-1 if a is None else 3) for _, a, _ in rows])


def test_text_is_coded_the_same_through_adbc_and_sqlite3(store):
    path, rows = store
    db, adbc, plain = _readers(path)
    sql = f"SELECT i, {text('a')} FROM x ORDER BY i"
    for bulk in (adbc, plain):
        i, a = bulk.columns(sql, [], (None, VOCAB))
        assert i.tolist() == list(range(3000))
        assert a.tolist() == _expected_codes(rows).tolist()  # 'buy' and the number 7 are unknown, NULL is -1
    adbc.close()
    db.close()


def test_a_column_the_driver_cannot_type_is_read_through_sqlite3(store):
    path, rows = store
    db, adbc, _ = _readers(path)
    (c,) = adbc.columns("SELECT c FROM x ORDER BY i", [], (None,))  # 1500 NULLs, then REAL: a type mismatch for ADBC
    assert np.isnan(c[:1500]).all() and c[1500:].tolist() == [r[2] for r in rows[1500:]]
    adbc.close()
    db.close()


def test_text_in_a_number_column_is_an_error_not_a_guess(store):
    path, _ = store
    db, adbc, _ = _readers(path)
    with pytest.raises(ValueError):
        adbc.columns("SELECT a FROM x", [], (None,))
    adbc.close()
    db.close()


def test_reads_on_several_threads_agree_with_one_thread(store):
    path, rows = store
    db, adbc, _ = _readers(path)
    sql = f"SELECT i, {text('a')} FROM x WHERE i >= ? ORDER BY i"
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda lo: adbc.columns(sql, [lo], (None, VOCAB)), range(0, 3000, 250)))
    codes = _expected_codes(rows)
    for lo, (i, a) in zip(range(0, 3000, 250), got, strict=True):
        assert i.tolist() == list(range(lo, 3000)) and a.tolist() == codes[lo:].tolist()
    adbc.close()
    db.close()
