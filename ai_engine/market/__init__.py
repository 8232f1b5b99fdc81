"""Market data in: Binance REST and websocket adapters and the Redis klines consumer."""

from ai_engine.market.batch import CloseGrouper, MarketBatch
from ai_engine.market.binance_rest import (
    BINANCE_REST,
    FetchResult,
    KlineRow,
    fetch_klines,
    rows_to_candles,
    update_cache,
)
from ai_engine.market.binance_ws import BINANCE_WS, KlineFeed, parse_kline_event, stream_url
from ai_engine.market.redis_klines import RedisKlineSource, kline_entry

__all__ = [
    "BINANCE_REST",
    "BINANCE_WS",
    "CloseGrouper",
    "FetchResult",
    "KlineFeed",
    "KlineRow",
    "MarketBatch",
    "RedisKlineSource",
    "fetch_klines",
    "kline_entry",
    "parse_kline_event",
    "rows_to_candles",
    "stream_url",
    "update_cache",
]
