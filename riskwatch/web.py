"""``/healthz``, ``/readyz`` and ``/metrics`` on ``RISKWATCH_HTTP``.

A small WSGI app served by the standard library in a thread: the endpoints only read
what the daemon last wrote, so they answer even while a poll is running.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from riskwatch.errors import SettingsError
from riskwatch.telemetry import Telemetry


@dataclass
class Health:
    """What the endpoints report, as functions of the daemon's state."""

    alive: Callable[[], tuple[bool, str]]
    ready: Callable[[], list[str]]  # reasons not to be ready; empty when ready
    role: Callable[[], str] = lambda: "leader"  # leader or standby


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # probes every few seconds would drown the log


def make_app(health: Health, telemetry: Telemetry) -> Callable[..., Iterable[bytes]]:
    """The WSGI application."""
    metrics = make_wsgi_app(telemetry.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == "/healthz":
            ok, reason = health.alive()
            return _json(start_response, ok, {"status": "ok" if ok else "stalled",
                                              "reason": reason})
        if path == "/readyz":
            reasons = health.ready()
            return _json(start_response, not reasons,
                         {"status": "ready" if not reasons else "not ready",
                          "role": health.role(), "reasons": reasons})
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz, /readyz or /metrics\n"]

    return app


def _json(start_response: Callable[..., Any], ok: bool, body: dict[str, Any]) -> list[bytes]:
    start_response("200 OK" if ok else "503 Service Unavailable",
                   [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class WebServer:
    """Serves the endpoints in a background thread."""

    def __init__(self, address: str, health: Health, telemetry: Telemetry) -> None:
        host, _, port = address.rpartition(":")
        try:
            self.server = make_server(host.strip("[]"), int(port), make_app(health, telemetry),
                                      server_class=_Server, handler_class=_QuietHandler)
        except OSError as error:
            raise SettingsError(f"RISKWATCH_HTTP: cannot listen on {address}: "
                                f"{error.strerror or error}") from None
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,),
                                       daemon=True, name="riskwatch-http")
        self.thread.start()

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
