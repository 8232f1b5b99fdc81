"""Binance public market data over REST (``GET /api/v3/klines``), stdlib only.

Pages through ``startTime``/``endTime`` with ``limit=1000``, honours 429/418 ``Retry-After``,
keeps closed candles only, and merges them into the CSV cache the engine reads
(``<SYMBOL>-<interval>.csv`` with ``open_time,open,high,low,close,volume``) without duplicates.
Prices are kept as Binance's decimal strings, so the cache never loses precision.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ai_engine.exceptions import DataError, TransientError
from ai_engine.lifecycle.envfile import write_atomic
from ai_engine.types import INTERVAL_MS, Candle

__all__ = ["BINANCE_REST", "KlineRow", "FetchResult", "fetch_klines", "rows_to_candles", "update_cache"]

log = logging.getLogger("ai_engine.market")

BINANCE_REST = "https://api.binance.com"
HEADER = ("open_time", "open", "high", "low", "close", "volume")
PAGE = 1000


@dataclass(frozen=True, slots=True)
class KlineRow:
    """One closed kline as Binance's strings (open_time in ms)."""

    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    path: Path
    fetched: int
    added: int
    total: int
    first_open_time: int | None
    last_open_time: int | None


def _get_json(url: str, *, retries: int, timeout_s: float, max_wait_s: float) -> object:
    """GET ``url`` as JSON; waits out 429/418 (Retry-After) and retries 5xx/network errors."""
    delay = 1.0
    for attempt in range(retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "ai-engine"})
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (418, 429):
                wait = float(exc.headers.get("Retry-After") or delay)
                if wait > max_wait_s or attempt == retries:
                    raise TransientError(f"Binance rate limit (HTTP {exc.code}) asks to wait {wait:g}s: {url}") from None
                log.warning("Binance HTTP %d (rate limit); waiting %gs as Retry-After asks", exc.code, wait)
                time.sleep(wait)
                continue
            if 400 <= exc.code < 500:
                body = exc.read().decode("utf-8", "replace")[:200]
                raise DataError(f"Binance refused {url}: HTTP {exc.code} {body}") from None
            err = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            err = str(getattr(exc, "reason", exc))
        except json.JSONDecodeError as exc:
            raise DataError(f"Binance answered {url} with invalid JSON: {exc}") from None
        if attempt == retries:
            raise TransientError(f"Binance unreachable after {retries + 1} tries ({err}): {url}")
        log.warning("Binance request failed (%s); retry in %.1fs", err, delay)
        time.sleep(delay)
        delay = min(delay * 2, max_wait_s)
    raise AssertionError("unreachable")


def _parse(raw: object, symbol: str, url: str) -> list[KlineRow]:
    if not isinstance(raw, list):
        raise DataError(f"Binance klines for {symbol} are not a list: {str(raw)[:200]} ({url})")
    rows = []
    for k in raw:
        try:
            rows.append(KlineRow(int(k[0]), *(str(k[i]) for i in range(1, 6))))
            float(k[4])
        except (TypeError, ValueError, IndexError):
            raise DataError(f"Binance kline for {symbol} is malformed: {str(k)[:200]}") from None
    return rows


def fetch_klines(
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int | None = None,
    *,
    base_url: str = BINANCE_REST,
    now_ms: int | None = None,
    retries: int = 5,
    timeout_s: float = 10.0,
    max_wait_s: float = 120.0,
) -> list[KlineRow]:
    """Closed klines of ``symbol`` with ``start_ms <= open_time`` and close time ``<= end_ms``."""
    if interval not in INTERVAL_MS:
        raise DataError(f"interval {interval!r} is not supported; expected one of {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[interval]
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    end_ms = now_ms if end_ms is None else min(end_ms, now_ms)
    out: list[KlineRow] = []
    cursor = start_ms
    while cursor + step <= end_ms:
        query = urllib.parse.urlencode({"symbol": symbol, "interval": interval, "startTime": cursor,
                                        "endTime": end_ms - 1, "limit": PAGE})
        url = f"{base_url.rstrip('/')}/api/v3/klines?{query}"
        page = _parse(_get_json(url, retries=retries, timeout_s=timeout_s, max_wait_s=max_wait_s), symbol, url)
        closed = [r for r in page if r.open_time >= cursor and r.open_time + step <= end_ms]
        out.extend(closed)
        if len(page) < PAGE or not page:
            break
        cursor = page[-1].open_time + step
    return out


def rows_to_candles(symbol: str, interval: str, rows: list[KlineRow]) -> list[Candle]:
    return [Candle(symbol, interval, r.open_time, float(r.open), float(r.high), float(r.low), float(r.close),
                   float(r.volume)) for r in rows]


def _read_cache(path: Path) -> dict[int, tuple[str, ...]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, ()))
        if header != HEADER:
            raise DataError(f"{path} has header {','.join(header)!r}; expected {','.join(HEADER)!r}")
        rows = {}
        for n, row in enumerate(reader, start=2):
            if len(row) != 6 or not row[0].isdigit():
                raise DataError(f"{path} line {n} is malformed: {','.join(row)[:120]!r}")
            rows[int(row[0])] = tuple(row[1:])
    return rows


def update_cache(
    out_dir: Path,
    symbol: str,
    interval: str,
    days: float,
    *,
    base_url: str = BINANCE_REST,
    now_ms: int | None = None,
) -> FetchResult:
    """Fetch the last ``days`` of closed klines and merge them into ``<out_dir>/<SYMBOL>-<interval>.csv``."""
    symbol = symbol.upper()
    if not symbol.isalnum():
        raise DataError(f"symbol {symbol!r} is not valid; use letters and digits, e.g. BTCUSDT")
    if days <= 0:
        raise DataError(f"--days must be positive, got {days:g}")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    step = INTERVAL_MS.get(interval)
    if step is None:
        raise DataError(f"interval {interval!r} is not supported; expected one of {', '.join(INTERVAL_MS)}")
    start = (now_ms - int(days * 86_400_000)) // step * step
    path = Path(out_dir) / f"{symbol}-{interval}.csv"
    existing = _read_cache(path)
    fetched = fetch_klines(symbol, interval, start, base_url=base_url, now_ms=now_ms)
    merged = dict(existing)
    for r in fetched:
        merged[r.open_time] = (r.open, r.high, r.low, r.close, r.volume)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for t in sorted(merged):
        w.writerow((t, *merged[t]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    times = sorted(merged)
    return FetchResult(path, len(fetched), len(merged) - len(existing), len(merged),
                       times[0] if times else None, times[-1] if times else None)
