"""Readiness for systemd and operators: ``sd_notify`` and a read-only HTTP health endpoint.

``sd_notify`` writes the datagram systemd expects on ``$NOTIFY_SOCKET`` (a path, or ``@name`` for
the abstract namespace) without depending on libsystemd, and never blocks. The health server answers ``GET /health``
on 127.0.0.1 only, with a JSON snapshot; every other method is refused, so nothing reachable over
HTTP can change the engine's state.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HealthServer", "fetch_health", "sd_notify"]

log = logging.getLogger("ai_engine.health")


def sd_notify(message: str) -> bool:
    """Send ``message`` (e.g. ``READY=1``) to systemd; False when not run under a notify unit."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.send(message.encode(), socket.MSG_DONTWAIT)  # a full queue must never stall decisions
    except OSError as exc:
        log.warning("sd_notify %s to %s failed: %s", message, os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def _handler(snapshot: Callable[[], dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ai-engine"

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body, sort_keys=True, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 405:
                self.send_header("Allow", "GET")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            if self.path.split("?")[0] not in ("/health", "/"):
                self._send(404, {"error": f"unknown path {self.path}; use GET /health"})
                return
            try:
                self._send(200, snapshot())
            except Exception as exc:  # a broken snapshot is reported, never crashes the service
                self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

        def _refuse(self) -> None:
            self._send(405, {"error": f"{self.command} not allowed; the health endpoint is read-only (GET /health)"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (base-class signature)
            log.debug("health %s", format % args)

    return Handler


class HealthServer:
    """``GET /health`` on 127.0.0.1:``port`` in a daemon thread."""

    def __init__(self, port: int, snapshot: Callable[[], dict]) -> None:
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(snapshot))
        except OSError as exc:
            from ai_engine.exceptions import ConfigError

            raise ConfigError(f"health endpoint cannot listen on 127.0.0.1:{port} (AI_ENGINE_HEALTH_PORT): {exc}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def fetch_health(port: int, timeout: float = 2.0) -> dict | None:
    """The running service's snapshot, or None when nothing answers on the port."""
    import urllib.error
    import urllib.request

    if not port:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, json.JSONDecodeError):
        return None
