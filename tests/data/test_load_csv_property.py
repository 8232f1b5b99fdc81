"""Whatever bytes a candle file holds, loading either fails with DataError or yields valid candles."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_engine.data import load_csv
from ai_engine.exceptions import DataError

H = 3_600_000
T0 = 1_618_880_400_000

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 200).map(str),
    st.sampled_from(["", "abc", "1e400", "-0", " 7 ", "1_0", "0x10", "nan", "+inf", "\x00"]),
)
times = st.one_of(
    st.integers(-3, 40).map(lambda k: str(T0 + k * H)),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "x", f"{T0}.0", f"{T0 + 1}", str(T0 // 1000)]),
)
rows = st.lists(
    st.tuples(times, numbers, numbers, numbers, numbers, numbers).map(",".join)
    | st.text(max_size=30),
    max_size=25,
)


def assert_valid(series):
    t = series.open_time
    assert len(t) > 0 and np.all(np.diff(t) > 0) and np.all(t % H == 0)
    o, h, low, c, v = series.open, series.high, series.low, series.close, series.volume
    assert np.all(np.isfinite(np.stack([o, h, low, c, v])))
    assert np.all((o > 0) & (low > 0) & (c > 0) & (v >= 0))
    assert np.all(h >= np.maximum(o, c)) and np.all(low <= np.minimum(o, c))


def load_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "BTCUSDT-1h.csv"
        path.write_bytes(data)
        try:
            series = load_csv(path)
        except DataError:
            return
        assert_valid(series)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_other_errors(data):
    load_bytes(data)
    load_bytes(b"open_time,open,high,low,close,volume\n" + data)


@settings(max_examples=200, deadline=None)
@given(rows, st.sampled_from(["\n", "\r\n"]))
def test_arbitrary_rows_never_yield_an_invalid_candle(body, newline):
    load_bytes(("open_time,open,high,low,close,volume" + newline + newline.join(body)).encode())


fmt = st.sampled_from(["{!r}", "{:.8f}", "{:e}", " {} ", "{:.3g}", "+{}"])
price = st.floats(1e-8, 1e9, allow_nan=False)


@st.composite
def clean_rows(draw):
    n = draw(st.integers(1, 30))
    out, expected = [], []
    for i in range(n):
        o, c = draw(price), draw(price)
        hi, lo = max(o, c) * draw(st.floats(1, 1.1)), min(o, c) * draw(st.floats(0.9, 1))
        vals = [draw(fmt).format(x) for x in (o, hi, lo, c, draw(st.floats(0, 1e12)))]
        parsed = [float(x) for x in vals]
        if (
            parsed[1] < max(parsed[0], parsed[3])
            or parsed[2] > min(parsed[0], parsed[3])
            or min(parsed[:4]) <= 0
        ):
            continue  # rounding by the format broke the candle; not a clean row
        t = T0 + i * H
        out.append(",".join([str(t), *vals]))
        expected.append([t, *parsed])
    return out, expected


@settings(max_examples=100, deadline=None)
@given(clean_rows())
def test_clean_rows_load_exactly_as_written(data):
    """The vectorised path for clean files parses every value exactly as Python's float() does."""
    body, expected = data
    if not body:
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "BTCUSDT-1h.csv"
        path.write_text("open_time,open,high,low,close,volume\n" + "\n".join(body))
        s = load_csv(path)
    got = np.column_stack([s.open_time, s.open, s.high, s.low, s.close, s.volume])
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float64))
