"""Loading real and crafted kline CSV files."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ai_engine.data import CandleSeries, ValidationReport, load_csv, load_dir
from ai_engine.exceptions import ConfigError, DataError

HEADER = "open_time,open,high,low,close,volume\n"
H = 3_600_000
T0 = 1_618_880_400_000  # 2021-04-20T01:00:00Z


def write(tmp_path, rows, name="BTCUSDT-1h.csv", header=HEADER):
    path = tmp_path / name
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def good_rows(n, t0=T0):
    return [f"{t0 + i * H},100,101,99,100.5,10" for i in range(n)]


def test_real_btcusdt_loads_and_reports_its_five_gaps(candles_dir, caplog):
    report = ValidationReport()
    with caplog.at_level(logging.INFO, logger="ai_engine.data"):
        s = load_csv(candles_dir / "BTCUSDT-1h.csv", report=report)
    assert (s.symbol, s.interval, s.synthetic) == ("BTCUSDT", "1h", False)
    assert len(s) == report.rows_kept == report.rows_read == 23987
    assert report.n_quarantined == 0
    assert [(g.missing) for g in report.gaps] == [2, 3, 4, 2, 1]
    assert report.missing_bars == 12
    assert "gap BTCUSDT after 2021-04-20T01:00:00Z: 2 missing bars" in caplog.text
    assert "5 gaps (12 missing bars)" in str(report)
    assert np.all(np.diff(s.open_time) > 0) and np.all(s.open_time % H == 0)
    assert s.open_time[0] == 1_617_566_400_000 and s.close[0] == 58025.11


def test_load_dir_cuts_time_range_and_names_missing_file(candles_dir):
    start, end = 1_640_995_200_000, 1_641_081_600_000  # one day of 2022
    out = load_dir(candles_dir, ["BTCUSDT", "ETHUSDT"], "1h", start_ms=start, end_ms=end)
    assert list(out) == ["BTCUSDT", "ETHUSDT"]
    assert all(len(s) == 24 and s.open_time[0] == start for s in out.values())
    with pytest.raises(DataError) as err:
        load_dir(candles_dir, ["NOPEUSDT"], "1h")
    msg = str(err.value)
    assert "NOPEUSDT-1h.csv" in msg and "BTCUSDT" in msg and "SOLUSDT" in msg
    with pytest.raises(DataError, match="available for 5m: BTCUSDT, ETHUSDT"):
        load_dir(candles_dir, ["SOLUSDT"], "5m")


def test_load_dir_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown interval '7h'"):
        load_dir(tmp_path, ["BTCUSDT"], "7h")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_dir(tmp_path, "BTCUSDT", "1h")
    with pytest.raises(DataError, match="candle directory not found"):
        load_dir(tmp_path / "nowhere", ["BTCUSDT"], "1h")
    write(tmp_path, good_rows(3))
    with pytest.raises(DataError, match=r"no BTCUSDT 1h candles in \[2030"):
        load_dir(tmp_path, ["BTCUSDT"], "1h", start_ms=1_893_456_000_000)


def test_wrong_header_is_a_data_error_naming_the_path(tmp_path):
    path = write(tmp_path, good_rows(3), header="time,open,high,low,close,volume\n")
    with pytest.raises(DataError) as err:
        load_csv(path)
    assert str(path) in str(err.value) and "missing open_time" in str(err.value)


def test_extra_columns_and_column_order_are_handled(tmp_path):
    header = "close,open_time,volume,open,low,high,trades\n"
    path = write(tmp_path, [f"100.5,{T0},10,100,99,101,7"], header=header)
    c = load_csv(path).candle(0)
    assert (c.open_time, c.open, c.high, c.low, c.close, c.volume) == (T0, 100, 101, 99, 100.5, 10)


def test_empty_file_all_bad_rows_and_missing_file(tmp_path):
    empty = tmp_path / "ETHUSDT-1h.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_csv(empty)
    with pytest.raises(DataError, match="no valid candle rows"):
        load_csv(write(tmp_path, []))
    with pytest.raises(DataError, match=r"no valid candle rows \(2 read; non_positive_price 2\)"):
        load_csv(write(tmp_path, [f"{T0},0,1,0,1,1", f"{T0 + H},-1,1,-1,1,1"]))
    with pytest.raises(DataError, match="candle file not found"):
        load_csv(tmp_path / "XRPUSDT-1h.csv")
    (tmp_path / "BNBUSDT-1h.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_csv(tmp_path / "BNBUSDT-1h.csv")


def test_symbol_and_interval_come_from_the_file_name_or_arguments(tmp_path):
    path = write(tmp_path, good_rows(2), name="prices.csv")
    with pytest.raises(DataError, match="<SYMBOL>-<interval>.csv"):
        load_csv(path)
    s = load_csv(path, "SOLUSDT", "1h")
    assert (s.symbol, s.interval) == ("SOLUSDT", "1h")
    with pytest.raises(DataError, match="unknown interval '2d'"):
        load_csv(write(tmp_path, good_rows(2), name="BTCUSDT-2d.csv"))


def test_series_is_immutable_and_slices(tmp_path):
    s = load_csv(write(tmp_path, good_rows(5)))
    with pytest.raises(ValueError):
        s.close[0] = 1.0
    part = s.slice(1, 3)
    assert isinstance(part, CandleSeries) and len(part) == 2 and part.open_time[0] == T0 + H
    assert s.candle(-1).open_time == T0 + 4 * H
    assert len(s.time_slice(T0 + H, T0 + 3 * H)) == 2
    assert len(s.time_slice(T0 + 10 * H)) == 0


def test_clean_and_quarantining_paths_agree(candles_dir, tmp_path):
    """A single bad row switches the loader to its row-by-row path; good rows load the same."""
    lines = (candles_dir / "BTCUSDT-1h.csv").read_text().splitlines()[:3500]
    clean = write(tmp_path, lines[1:], name="BTCUSDT-1h.csv")
    dirty = write(tmp_path, [*lines[1:], f"{1_699_999_200_000},1,1,1,1,-1"], name="ETHUSDT-1h.csv")
    rep_a, rep_b = ValidationReport(), ValidationReport()
    a, b = load_csv(clean, report=rep_a), load_csv(dirty, "BTCUSDT", "1h", report=rep_b)
    for field in ("open_time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert rep_a.gaps == rep_b.gaps and len(rep_a.gaps) == 3
    assert rep_b.quarantined == {"negative_volume": 1} and rep_a.n_quarantined == 0
