"""Market data: candle files, validation, synthetic markets and time-ordered streams."""

from ai_engine.data.candles import REQUIRED_COLUMNS, CandleSeries, load_csv, load_dir
from ai_engine.data.stream import merge_stream, time_batches
from ai_engine.data.synthetic import DEFAULT_START_MS, synthetic_market
from ai_engine.data.validate import CandleValidator, Gap, ValidationReport, Verdict, iso_utc

__all__ = [
    "REQUIRED_COLUMNS",
    "CandleSeries",
    "load_csv",
    "load_dir",
    "merge_stream",
    "time_batches",
    "synthetic_market",
    "DEFAULT_START_MS",
    "CandleValidator",
    "Gap",
    "ValidationReport",
    "Verdict",
    "iso_utc",
]
