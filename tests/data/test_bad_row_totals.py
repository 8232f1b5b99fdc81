"""Quarantine totals per file and per symbol, the --max-bad-rows threshold (load_dir, `data check`,
`replay`: beyond it the command fails with one error line, exit 2), and the synthetic column."""

from __future__ import annotations

import logging

import pytest

from ai_engine.cli.main import main
from ai_engine.data import ValidationReport, load_dir
from ai_engine.exceptions import DataError
from tests.data.test_candles import good_rows, write


@pytest.fixture
def dirty_dir(tmp_path):
    """BTCUSDT with 3 bad rows (two negative volumes, one high below low), ETHUSDT clean."""
    rows = good_rows(300)
    rows[10] = rows[10].rsplit(",", 1)[0] + ",-1"
    rows[20] = rows[20].rsplit(",", 1)[0] + ",-2"
    t = rows[30].split(",", 1)[0]
    rows[30] = f"{t},100,98,99,100,10"
    write(tmp_path, rows, "BTCUSDT-1h.csv")
    write(tmp_path, good_rows(300), "ETHUSDT-1h.csv")
    return tmp_path


def test_totals_are_logged_per_file_and_the_threshold_fails_the_load(dirty_dir, caplog):
    reports: dict[str, ValidationReport] = {}
    with caplog.at_level(logging.INFO, logger="ai_engine.data"):
        load_dir(dirty_dir, ["BTCUSDT", "ETHUSDT"], "1h", reports=reports, max_bad_rows=3)
    assert reports["BTCUSDT"].n_quarantined == 3 and reports["ETHUSDT"].n_quarantined == 0
    totals = [r.getMessage() for r in caplog.records if "rows quarantined" in r.getMessage()]
    assert len(totals) == 1 and totals[0].startswith("BTCUSDT 1h: 3 of 300 rows quarantined (")
    with pytest.raises(DataError, match=r"BTCUSDT-1h.csv: 3 of 300 rows quarantined, more than --max-bad-rows 2"):
        load_dir(dirty_dir, ["BTCUSDT", "ETHUSDT"], "1h", max_bad_rows=2)


def test_data_check_prints_totals_per_symbol_and_fails_beyond_the_threshold(dirty_dir, capsys):
    assert main(["data", "check", "--data", str(dirty_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["symbol", "read", "kept", "quarantined", "gaps", "missing", "reasons"]
    btc = out[1].split()
    assert btc[:6] == ["BTCUSDT", "300", "297", "3", "3", "3"] and "negative_volume 2" in out[1]  # a dropped row is a gap
    assert out[2].split()[:4] == ["ETHUSDT", "300", "300", "0"] and out[3].split()[:4] == ["total", "600", "597", "3"]
    assert main(["data", "check", "--data", str(dirty_dir), "--max-bad-rows", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: more quarantined rows than --max-bad-rows 2: BTCUSDT 3"
    assert main(["replay", "--data", str(dirty_dir), "--symbols", "BTCUSDT,ETHUSDT", "--env-file", "none",
                 "--store", str(dirty_dir / "s.sqlite"), "--max-bad-rows", "0"]) == 2
    assert "more than --max-bad-rows 0" in capsys.readouterr().err


def test_a_synthetic_column_of_ones_marks_the_series_synthetic(tmp_path):
    from ai_engine.data import load_csv

    rows = [r + ",1" for r in good_rows(5)]
    marked = write(tmp_path, rows, "BTCUSDT-1h.csv", header="open_time,open,high,low,close,volume,synthetic\n")
    assert load_csv(marked).synthetic and load_csv(marked).candle(0).synthetic
    assert not load_csv(write(tmp_path, good_rows(5), "ETHUSDT-1h.csv")).synthetic
