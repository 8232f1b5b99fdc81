"""Each validation rule: the bad row is dropped, logged with symbol and UTC time, and counted."""

from __future__ import annotations

import logging

import pytest

from ai_engine.data import CandleValidator, ValidationReport, load_csv
from ai_engine.exceptions import ConfigError
from ai_engine.types import Candle

HEADER = "open_time,open,high,low,close,volume\n"
H = 3_600_000
T0 = 1_618_880_400_000  # 2021-04-20T01:00:00Z
T1 = "2021-04-20T02:00:00Z"  # time of the second row


def load_with(tmp_path, caplog, bad_row):
    rows = [f"{T0},100,101,99,100.5,10", bad_row, f"{T0 + 2 * H},100,101,99,100.5,10"]
    path = tmp_path / "BTCUSDT-1h.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    report = ValidationReport()
    with caplog.at_level(logging.INFO, logger="ai_engine.data"):
        series = load_csv(path, report=report)
    return series, report


@pytest.mark.parametrize(
    ("bad_row", "kind", "logged"),
    [
        (f"{T0 + H},nan,101,99,100,1", "non_finite", f"quarantined BTCUSDT {T1}: open is nan"),
        (f"{T0 + H},100,inf,99,100,1", "non_finite", f"quarantined BTCUSDT {T1}: high is inf"),
        (
            f"{T0 + H},100,abc,99,100,1",
            "non_numeric",
            f"quarantined BTCUSDT {T1}: high 'abc' is not a number",
        ),
        (
            f"{T0 + H},100,101,0,100,1",
            "non_positive_price",
            f"quarantined BTCUSDT {T1}: low 0.0 <= 0",
        ),
        (
            f"{T0 + H},2.0,1.0,0.5,1.5,1",
            "high_below_body",
            f"quarantined BTCUSDT {T1}: high 1.0 < max(open, close) 2.0",
        ),
        (
            f"{T0 + H},2.0,3.0,1.8,1.5,1",
            "low_above_body",
            f"quarantined BTCUSDT {T1}: low 1.8 > min(open, close) 1.5",
        ),
        (
            f"{T0 + H},100,101,99,100,-5",
            "negative_volume",
            f"quarantined BTCUSDT {T1}: volume -5.0 < 0",
        ),
        (
            f"{T0},100,101,99,100,1",
            "duplicate",
            "quarantined BTCUSDT 2021-04-20T01:00:00Z: duplicate",
        ),
        (
            f"{T0 - H},100,101,99,100,1",
            "out_of_order",
            "quarantined BTCUSDT 2021-04-20T00:00:00Z: out of order",
        ),
        (
            f"{T0 + H + 60_000},100,101,99,100,1",
            "misaligned",
            "quarantined BTCUSDT 2021-04-20T02:01:00Z: open_time",
        ),
        (
            f"{(T0 + H) // 1000},100,101,99,100,1",
            "time_range",
            "quarantined BTCUSDT line 3: open_time",
        ),
        (
            f"{T0 + H}.0,100,101,99,100,1",
            "non_numeric",
            "quarantined BTCUSDT line 3: open_time '1618884000000.0'",
        ),
        (f"{T0 + H},100,101,99", "malformed", "quarantined BTCUSDT line 3: 4 fields, header has 6"),
    ],
)
def test_bad_row_is_quarantined_and_logged(tmp_path, caplog, bad_row, kind, logged):
    series, report = load_with(tmp_path, caplog, bad_row)
    assert report.quarantined == {kind: 1}
    assert logged in caplog.text
    assert [r.levelname for r in caplog.records if r.message.startswith("quarantined ")] == ["WARNING"]
    assert list(series.open_time) == [T0, T0 + 2 * H]  # neighbours untouched
    assert series.close.tolist() == [100.5, 100.5]
    # the dropped row leaves a one-bar gap, reported as such
    if kind not in ("duplicate", "out_of_order"):
        assert [g.missing for g in report.gaps] == [1]


def test_log_lines_are_capped_per_file(tmp_path, caplog):
    rows = [f"{T0 + i * H},100,101,99,100,-1" for i in range(60)] + [
        f"{T0 + 60 * H},100,101,99,100,1"
    ]
    path = tmp_path / "ETHUSDT-1h.csv"
    path.write_text(HEADER + "\n".join(rows))
    report = ValidationReport()
    with caplog.at_level(logging.WARNING, logger="ai_engine.data"):
        s = load_csv(path, report=report)
    assert len(s) == 1 and report.quarantined["negative_volume"] == 60
    lines = [r.message for r in caplog.records]
    assert len(lines) == 52 and "… and 10 more quarantine lines" in lines[-2]
    assert lines[-1].startswith("ETHUSDT 1h: 60 of 61 rows quarantined (negative_volume 60); 0 gaps")  # the file's totals
    assert "quarantined negative_volume: 60" in str(report)


def candle(t, o=100.0, h=101.0, low=99.0, c=100.5, v=10.0, symbol="BTCUSDT", interval="1h"):
    return Candle(symbol, interval, t, o, h, low, c, v)


def test_streaming_validator_rejects_warns_and_accepts():
    val = CandleValidator("1h")
    assert val.check(candle(T0)).accept
    dup = val.check(candle(T0))
    assert not dup.accept and dup.kind == "duplicate" and dup.reason.startswith("duplicate: ")
    older = val.check(candle(T0 - H))
    assert not older.accept and older.kind == "out_of_order"
    bad = val.check(candle(T0 + H, h=99.5))
    assert not bad.accept and bad.reason == "high_below_body: high 99.5 < max(open, close) 100.5"
    assert not val.check(candle(T0 + H, v=float("nan"))).accept
    assert val.check(candle(T0 + H + 1)).kind == "misaligned"
    assert val.check(candle(T0 + H, interval="5m")).kind == "interval"
    gap = val.check(candle(T0 + 3 * H))
    assert gap.accept and gap.warning and gap.kind == "gap"
    assert gap.reason == "gap BTCUSDT after 2021-04-20T01:00:00Z: 2 missing bars"
    ok = val.check(candle(T0 + 4 * H))
    assert ok.accept and not ok.warning and ok.reason is None
    # state is per symbol: ETHUSDT's first candle is fine even though it is older
    assert val.check(candle(T0, symbol="ETHUSDT")).accept
    assert val.last_open_time("BTCUSDT", "1h") == T0 + 4 * H
    with pytest.raises(ConfigError, match="unknown interval"):
        CandleValidator("7m")


def test_a_file_in_newest_first_order_is_refused_with_the_fix(tmp_path):
    # Quarantining all but the first row "out of order" left replays with nothing to decide and
    # exit 0; a file in the wrong order as a whole says so.
    rows = [f"{T0 + k * H},100,101,99,100.5,10" for k in range(50)][::-1]
    path = tmp_path / "BTCUSDT-1h.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    from ai_engine.exceptions import DataError

    with pytest.raises(DataError, match="49 of 50 rows are out of time order .*sort the file by open_time ascending"):
        load_csv(path)
    path.write_text(HEADER + "\n".join(rows[::-1][:48] + [rows[0], rows[1]]) + "\n")  # one stray row: quarantined
    assert len(load_csv(path)) == 49


def test_check_many_gives_each_candle_the_verdict_check_gives():
    """A closing time screened in one pass: the same verdicts and the same memory as ``check`` one
    candle at a time, whatever is wrong with a candle (each kind below), gaps included."""
    h = 3_600_000
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % h
    symbols = [f"S{i}" for i in range(9)]
    first = [Candle(s, "1h", t0, 10.0, 11.0, 9.0, 10.5, 1.0) for s in symbols]
    nxt = [
        Candle("S0", "1h", t0 + h, 10.0, 11.0, 9.0, 10.5, 1.0),  # fine
        Candle("S1", "1h", t0 + 4 * h, 10.0, 11.0, 9.0, 10.5, 1.0),  # a gap of 3 bars
        Candle("S2", "1h", t0, 10.0, 11.0, 9.0, 10.5, 1.0),  # duplicate
        Candle("S3", "1h", t0 - h, 10.0, 11.0, 9.0, 10.5, 1.0),  # out of order
        Candle("S4", "1h", t0 + h, 10.0, 9.5, 9.0, 10.5, 1.0),  # high below the body
        Candle("S5", "1h", t0 + h, 10.0, 11.0, 9.0, float("nan"), 1.0),  # not finite
        Candle("S6", "1h", t0 + h + 1, 10.0, 11.0, 9.0, 10.5, 1.0),  # off the grid
        Candle("S7", "1h", t0 + h, 10.0, 11.0, 9.0, 10.5, -1.0),  # negative volume
        Candle("NEW", "1h", t0 + h, 10.0, 11.0, 9.0, 10.5, 1.0),  # a symbol seen first
    ]
    one, many = CandleValidator("1h"), CandleValidator("1h")
    for c in first:
        one.check(c)
    many.check_many(first)
    want = [one.check(c) for c in nxt]
    assert many.check_many(nxt) == want
    assert [v.kind for v in want] == [None, "gap", "duplicate", "out_of_order", "high_below_body",
                                      "non_finite", "misaligned", "negative_volume", None]
    for s in [*symbols, "NEW"]:
        assert many.last_open_time(s, "1h") == one.last_open_time(s, "1h")
    many.forget("S0")
    assert many.last_open_time("S0", "1h") is None and many.check_many([nxt[0]])[0].accept
