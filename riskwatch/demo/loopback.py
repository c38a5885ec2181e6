"""A tiny threaded HTTP server on 127.0.0.1, for the demo's simulated API and for test fakes.

A handler is a function ``(Request) -> Reply``; the server runs in a daemon thread so it
answers over real HTTP while the asyncio loop of the daemon runs in the main thread.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    """What the server received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] = ("", 0)  # the client's address and port (one per connection)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """What the handler answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0  # seconds between bytes of the body: an API that answers slowly

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(data).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request], Reply]


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up (a timeout on its side) is normal here, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 at a free port until :meth:`close`."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        outer = handler

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes; with Nagle's algorithm and
            # delayed ACKs each answer would wait ~40 ms for nothing
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qsl(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()},
                                  self.rfile.read(length) if length else b"",
                                  (str(self.client_address[0]), int(self.client_address[1])))
                reply = outer(request)
                if reply.status == 0:  # a reset: hang up without answering
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if not reply.trickle:
                    self.wfile.write(reply.body)
                    return
                for index in range(len(reply.body)):
                    self.wfile.write(reply.body[index:index + 1])
                    self.wfile.flush()
                    time.sleep(reply.trickle)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep the terminal for alerts

        self.server = _QuietServer(("127.0.0.1", port), _RequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True,
                                       name="loopback-http")
        self.thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
