"""Loopback stand-ins for Binance: the REST klines endpoint and the kline websocket."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets

from ai_engine.types import INTERVAL_MS


def kline_array(t: int, interval: str) -> list:
    """One kline as Binance's documented array (prices as decimal strings)."""
    p = 100 + (t // INTERVAL_MS[interval]) % 50
    return [t, f"{p:.8f}", f"{p + 1:.8f}", f"{p - 1:.8f}", f"{p + 0.5:.8f}", "12.50000000",
            t + INTERVAL_MS[interval] - 1, "1250.0", 42, "6.0", "600.0", "0"]


def kline_event(symbol: str, t: int, interval: str, closed: bool = True) -> str:
    a = kline_array(t, interval)
    k = {"t": t, "T": a[6], "s": symbol, "i": interval, "o": a[1], "h": a[2], "l": a[3], "c": a[4], "v": a[5],
         "n": 42, "x": closed, "q": a[7]}
    return json.dumps({"e": "kline", "E": a[6] + 1, "s": symbol, "k": k})


class FakeRest:
    """GET /api/v3/klines over ``times`` per symbol; the first ``rate_limited`` calls answer 429."""

    def __init__(self, times: dict[str, list[int]], interval: str, rate_limited: int = 0) -> None:
        self.times, self.interval, self.rate_limited = times, interval, rate_limited
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                fake.requests.append(q)
                if fake.rate_limited > 0:
                    fake.rate_limited -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if url.path != "/api/v3/klines" or q.get("symbol") not in fake.times:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b'{"code":-1121,"msg":"Invalid symbol."}')
                    return
                lo, hi, limit = int(q["startTime"]), int(q["endTime"]), int(q["limit"])
                rows = [kline_array(t, fake.interval) for t in fake.times[q["symbol"]] if lo <= t <= hi][:limit]
                body = json.dumps(rows).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeKlineSocket:
    """Websocket server; connection n sends ``scripts[n]`` (messages) then drops the connection
    (the last script keeps the connection open)."""

    def __init__(self, scripts: list[list[str]]) -> None:
        self.scripts = scripts
        self.paths: list[str] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True).start()
        self._ready.wait(5)

    async def _handler(self, ws) -> None:
        n = len(self.paths)
        self.paths.append(ws.request.path)
        script = self.scripts[min(n, len(self.scripts) - 1)]
        for msg in script:
            await ws.send(msg)
        if n < len(self.scripts) - 1:
            await ws.close()
            return
        await self._stop.wait()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with websockets.serve(self._handler, "127.0.0.1", 0) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
