"""Market data: candle files, validation, synthetic markets and time-ordered streams."""

from ai_engine.data.candles import REQUIRED_COLUMNS, CandleSeries, load_csv, load_dir
from ai_engine.data.validate import CandleValidator, Gap, ValidationReport, Verdict, iso_utc

__all__ = [
    "REQUIRED_COLUMNS",
    "CandleSeries",
    "load_csv",
    "load_dir",
    "CandleValidator",
    "Gap",
    "ValidationReport",
    "Verdict",
    "iso_utc",
]
