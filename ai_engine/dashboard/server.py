"""The dashboard's HTTP server: the static page and its JSON endpoints, read-only.

Safe by construction:

- GET and HEAD only; every other method is 405 (nothing reachable here can change the engine).
- Loopback by default; a non-loopback address is refused at start unless a token is set
  (``DASHBOARD_TOKEN``). With a token every request carries it (``Authorization: Bearer …``,
  ``?token=``, or the ``HttpOnly``, ``SameSite=Strict`` cookie set on the first request that gave
  it); it is compared with ``hmac.compare_digest`` and never logged (the query is cut from the
  log lines).
- A strict Content-Security-Policy (``default-src 'self'``, no inline script or style),
  ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, no caching, no referrer.
- Without a token, only requests naming a loopback host (``Host: 127.0.0.1``, ``localhost``,
  ``[::1]``) are answered (403 otherwise): a foreign page re-bound to 127.0.0.1 (DNS rebinding)
  cannot read the data.
- A fixed pool of worker threads, a cap on open connections (one over the cap is closed at
  once), a socket timeout per read and a deadline per connection: a slow or hostile client holds
  one worker for at most the deadline and never starves the others, nor the engine that may share
  the process.
- Clients share reads: answers within ``cache_s`` of each other come from one store read (the
  governor, a file stat, is always read fresh), so ten open pages cost the store the reads of one.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ai_engine.dashboard.data import DashboardData
from ai_engine.exceptions import ConfigError

__all__ = ["DashboardServer", "CSP", "TOKEN_ENV", "check_bind", "is_loopback"]

log = logging.getLogger("ai_engine.dashboard")

TOKEN_ENV = "DASHBOARD_TOKEN"
COOKIE = "ai_engine_dashboard"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/app.css": ("app.css", "text/css; charset=utf-8"),
           "/favicon.svg": ("favicon.svg", "image/svg+xml")}


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` without a token (ConfigError, one line)."""
    if not token and not is_loopback(host):
        raise ConfigError(f"refusing to serve the dashboard on non-loopback address {host}: set {TOKEN_ENV} "
                          "(requests must then carry it), or bind 127.0.0.1")


def _load_static() -> dict[str, bytes]:
    pkg = resources.files("ai_engine.dashboard") / "static"
    return {name: (pkg / name).read_bytes() for name in {n for n, _ in _STATIC.values()}}


def _no_analysis() -> dict:
    return {"enabled": False, "state": "off", "models": [],
            "error": "the shadow analysis is off (--analysis-hours 0, or AI_ENGINE_DASHBOARD_ANALYSIS_HOURS=0 for serve)"}


class _SharedReads:
    """One computation per key and ``ttl_s``: concurrent and close requests wait for the same
    answer instead of each reading the store (the engine's, when beside ``serve``). A failed
    computation is not kept; the table holds at most ``max_keys`` answers."""

    def __init__(self, ttl_s: float, max_keys: int = 64) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._answers: dict[tuple, tuple[float, dict]] = {}

    def get(self, key: tuple, compute: Callable[[], dict]) -> dict:
        if self.ttl_s <= 0:
            return compute()
        with self._lock:
            if key not in self._key_locks and len(self._key_locks) >= self.max_keys:
                self._key_locks.clear()
                self._answers.clear()
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            hit = self._answers.get(key)
            started = time.monotonic()
            if hit is not None and started - hit[0] < self.ttl_s:
                return hit[1]
            doc = compute()
            self._answers[key] = (started, doc)
            return doc


def _endpoints(data: DashboardData, analysis, cache_s: float) -> dict[str, Callable[[dict[str, list[str]]], dict]]:
    shared = _SharedReads(cache_s)

    def decisions(q: dict[str, list[str]]) -> dict:
        raw = (q.get("limit") or ["50"])[0]
        try:
            limit = int(raw)
        except ValueError:
            raise _BadRequest(f"limit={raw!r} is not an integer") from None
        return shared.get(("decisions", limit), lambda: data.decisions(limit))

    def cached(name: str, read: Callable[[], dict]) -> Callable[[dict[str, list[str]]], dict]:
        return lambda q: shared.get((name,), read)

    return {
        "/api/overview": cached("overview", data.overview),
        "/api/models": cached("models", data.models),
        "/api/governor": lambda q: data.governor(),
        "/api/summary": cached("summary", data.summary),
        "/api/latency": cached("latency", data.latency),
        "/api/shadow": cached("shadow", data.shadow),
        "/api/analysis": lambda q: analysis.snapshot() if analysis is not None else _no_analysis(),
        "/api/decisions": decisions,
        "/api/audit": cached("audit", data.audit),
        "/api/policy": cached("policy", data.policy),
    }


class _BadRequest(Exception):
    pass


def _finite(obj):
    """``obj`` with every NaN or infinity replaced by None (JSON has no spelling for them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8780`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _handler(endpoints: dict, static: dict[str, bytes], token: str | None, timeout_s: float,
             hosts: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    token_b = token.encode() if token else None

    class Handler(BaseHTTPRequestHandler):
        server_version = "ai-engine-dashboard"
        sys_version = ""
        timeout = timeout_s  # StreamRequestHandler sets it on the socket: reads and writes time out

        def _headers(self, code: int, ctype: str, length: int, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()

        def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self._headers(code, ctype, len(body), extra)
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, doc: dict, extra: dict[str, str] | None = None) -> None:
            try:
                text = json.dumps(doc, sort_keys=True, default=str, allow_nan=False)
            except ValueError:  # a NaN in a stored payload: null, never invalid JSON
                text = json.dumps(_finite(doc), sort_keys=True, default=str, allow_nan=False)
            body = text.encode()
            self._send(code, body, "application/json; charset=utf-8", extra)

        def _given_token(self, query: dict[str, list[str]]) -> tuple[bytes | None, bool]:
            """(token the request carries, whether it came in the URL or a header)."""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                return auth[7:].strip().encode(), True
            if query.get("token"):
                return query["token"][0].encode(), True
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    return unquote(value).encode(), False
            return None, False

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            extra: dict[str, str] = {}
            if token_b is None and _host_name(self.headers.get("Host", "")) not in hosts:
                # Without a token only loopback names are answered: a page elsewhere whose name
                # was re-bound to 127.0.0.1 (DNS rebinding) cannot read the data.
                self._json(403, {"error": "this dashboard answers only to 127.0.0.1, localhost or ::1 "
                                          "(set DASHBOARD_TOKEN to serve other names)"}, extra)
                return
            if token_b is not None:
                given, explicit = self._given_token(query)
                if given is None or not hmac.compare_digest(given, token_b):
                    self._json(401, {"error": "this dashboard needs its token: open it as /?token=…, or send "
                                              "'Authorization: Bearer …'"}, {"WWW-Authenticate": "Bearer"})
                    return
                if explicit:  # the page's own requests (app.js, app.css, the API) then carry the cookie
                    extra["Set-Cookie"] = f"{COOKIE}={quote(token, safe='')}; HttpOnly; SameSite=Strict; Path=/"
            if url.path in _STATIC:
                name, ctype = _STATIC[url.path]
                self._send(200, static[name], ctype, extra)
                return
            endpoint = endpoints.get(url.path)
            if endpoint is None:
                self._json(404, {"error": f"unknown path {url.path}; see docs/dashboard.md"}, extra)
                return
            try:
                doc = endpoint(query)
            except _BadRequest as exc:
                self._json(400, {"error": str(exc)}, extra)
                return
            except Exception as exc:  # a failed read is reported to the page, never kills the server
                log.warning("dashboard %s failed: %s: %s", url.path, type(exc).__name__, exc)
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"}, extra)
                return
            self._json(200, doc, extra)

        do_HEAD = do_GET  # noqa: N815

        def _refuse(self) -> None:
            self._json(405, {"error": f"{self.command} is not allowed; the dashboard is read-only (GET, HEAD)"},
                       {"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse  # noqa: N815

        def log_request(self, code="-", size="-") -> None:
            # The path without its query: a ?token= never reaches a log line.
            path = urlsplit(self.path).path if isinstance(self.path, str) else "-"
            log.debug("dashboard %s %s %s %s", self.client_address[0], self.command, path, code)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (base-class signature)
            # Only errors come here (log_request is above); the request line may hold the token.
            msg = format % args
            if token:
                msg = msg.replace(token, "***")
            log.debug("dashboard %s", msg)

    return Handler


class _PoolHTTPServer(HTTPServer):
    """An HTTPServer whose requests run on a fixed pool, with a cap on open connections."""

    daemon_threads = True

    def __init__(self, address, handler, *, workers: int, max_connections: int, deadline_s: float) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dashboard")
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused_connections = 0
        self.cut_connections = 0  # past the per-connection deadline
        self._deadline_s = deadline_s
        self._active: dict[socket.socket, float] = {}
        self._active_lock = threading.Lock()
        self._closing = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="dashboard-reaper", daemon=True)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._reaper.start()

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_connections += 1
            self.shutdown_request(request)  # over the cap: closed at once, nothing queued
            return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request, client_address) -> None:
        with self._active_lock:
            self._active[request] = time.monotonic() + self._deadline_s
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(request, None)
            self.shutdown_request(request)
            self._slots.release()

    def _reap(self) -> None:
        """Cut connections past their deadline: a client that trickles its request a byte at a
        time (each read within the socket timeout) holds a worker no longer than this."""
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._active_lock:
                late = [r for r, t in self._active.items() if t < now]
                for r in late:
                    del self._active[r]
            for r in late:
                self.cut_connections += 1
                with contextlib.suppress(OSError):
                    r.shutdown(socket.SHUT_RDWR)  # the worker's blocked read returns, it closes

    def handle_error(self, request, client_address) -> None:
        log.debug("dashboard connection from %s failed", client_address[0], exc_info=True)

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class DashboardServer:
    """The dashboard on ``host:port`` in a daemon thread.

    Args:
        data: what the endpoints read (a ``DashboardData``).
        host: the address to bind; loopback (127.0.0.1) by default. Any other address needs
            ``token``.
        port: the port; 0 picks a free one (see ``port``).
        token: the access token (``DASHBOARD_TOKEN``); None serves loopback without one.
        workers: the fixed number of threads that answer requests.
        max_connections: open connections at most (queued or being answered); more are closed.
        timeout_s: the socket timeout of each connection, in seconds.
        deadline_s: the longest a connection is served, in seconds; then it is cut.
        analysis: the background shadow analysis (an ``AnalysisJob``) behind ``/api/analysis``;
            None: that endpoint says it is off.
        cache_s: requests this close together share one read of the store (0: every request
            reads); under the page's poll interval, so each poll still sees newer data.

    Raises:
        ConfigError: a non-loopback ``host`` without a token, or an address it cannot bind.
    """

    def __init__(self, data: DashboardData, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 workers: int = 4, max_connections: int = 32, timeout_s: float = 5.0,
                 deadline_s: float = 15.0, analysis=None, cache_s: float = 1.0) -> None:
        token = token or None
        check_bind(host, token)
        self.data = data
        self.host = host
        hosts = frozenset({"127.0.0.1", "localhost", "::1", host.lower()})
        handler = _handler(_endpoints(data, analysis, cache_s), _load_static(), token, timeout_s, hosts)
        try:
            self._server = _PoolHTTPServer((host, port), handler, workers=workers, max_connections=max_connections,
                                           deadline_s=deadline_s)
        except OSError as exc:
            raise ConfigError(f"dashboard cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> DashboardServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
