"""``/healthz``, ``/readyz`` and ``/metrics`` on ``RISKWATCH_HTTP``.

A small WSGI app served by the standard library: the endpoints only read what the
daemon last wrote, so they answer even while a poll is running.

The server holds a fixed number of threads whatever clients do. One thread accepts
connections and reads requests without blocking; only a request that has arrived in
full goes to one of a few worker threads. A client must send its request within
``Limits.timeout`` of connecting and read the answer within as long again, or it is
closed; at most ``Limits.connections`` connections may wait for their request, and
past that the oldest is closed, so a probe that connects now is still answered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

from riskwatch.errors import SettingsError
from riskwatch.service.telemetry import Telemetry

HEADER_LIMIT = 16 * 1024  # bytes of request line and headers; more is refused with 431
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Connection: close\r\n\r\nbusy, try again\n")
_TIMEOUT = (b"HTTP/1.0 408 Request Timeout\r\nContent-Type: text/plain\r\n"
            b"Connection: close\r\n\r\nrequest not received in time\n")
_TOO_LARGE = (b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
              b"Connection: close\r\n\r\nrequest headers too large\n")


@dataclass(frozen=True)
class Limits:
    """What one client may cost the endpoints."""

    timeout: float = 5.0  # seconds to send the whole request, and again to read the answer
    connections: int = 256  # connections waiting for their request; past it the oldest goes
    workers: int = 4  # threads answering complete requests
    queue: int = 64  # complete requests waiting for a worker; past it: 503 at once


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of the pages past the endpoints: status code, content type, body."""

    status: int
    content_type: str
    body: bytes


class Pages(Protocol):
    """More pages to serve (the status page), past the endpoints of this module."""

    def handles(self, path: str) -> bool:
        """Is ``path`` one of these pages?"""

    def answer(self, path: str, query: str) -> Answer:
        """The answer for ``path``."""


@dataclass
class Health:
    """What the endpoints report, as functions of the daemon's state."""

    alive: Callable[[], tuple[bool, str]]
    ready: Callable[[], list[str]]  # reasons not to be ready; empty when ready
    role: Callable[[], str] = lambda: "leader"  # leader or standby
    warnings: Callable[[], list[str]] = list  # wrong with the data, not with the process


class _Writer:
    """The answer's side of a connection: every write must end by one deadline."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self.connection = connection
        self.deadline = deadline
        self.closed = False

    def write(self, data: bytes) -> int:
        """Send all of ``data`` before the deadline, or raise TimeoutError."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client did not read the answer in time")
        self.connection.settimeout(left)
        self.connection.sendall(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """The connection itself is closed by the server."""
        self.closed = True


class _AnswerWriter(ServerHandler):
    """wsgiref's response writer, silent about clients that go away or read too slowly."""

    def log_exception(self, exc_info: Any) -> None:
        if not isinstance(exc_info[1], OSError):
            super().log_exception(exc_info)


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, fed a request already read in full by the acceptor."""

    request: tuple[socket.socket, bytes, float]

    def setup(self) -> None:
        connection, data, deadline = self.request
        self.connection = connection
        self.rfile = io.BytesIO(data)
        self.wfile = _Writer(connection, deadline)  # type: ignore[assignment]

    def handle(self) -> None:
        """Answer the one request of this connection (it is at most twice HEADER_LIMIT)."""
        self.raw_requestline = self.rfile.readline(65537)
        if not self.parse_request():  # an error answer has been sent
            return
        answer = _AnswerWriter(self.rfile, self.wfile, self.get_stderr(),  # type: ignore[arg-type]
                               self.get_environ(), multithread=True)
        answer.request_handler = self  # type: ignore[attr-defined] # wsgiref logs through it
        answer.run(self.server.get_app())  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.rfile.close()

    def log_message(self, format: str, *args: Any) -> None:
        return  # probes every few seconds would drown the log


@dataclass
class _Waiting:
    """A connection whose request has not arrived in full yet."""

    connection: socket.socket
    address: Any
    deadline: float
    data: bytearray


class _Server(WSGIServer):
    """A WSGI server with a fixed number of threads and a deadline on every request."""

    request_queue_size = 128  # the listen backlog: a burst of connects is not dropped

    def __init__(self, address: tuple[str, int], limits: Limits) -> None:
        super().__init__(address, _Handler)
        self.limits = limits
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._ready: queue.Queue[tuple[socket.socket, Any, bytes] | None] = queue.Queue(
            maxsize=limits.queue)
        self._workers = [threading.Thread(target=self._work, daemon=True,
                                          name=f"riskwatch-http-{number}")
                         for number in range(limits.workers)]

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept and read requests until :meth:`shutdown`; workers answer them."""
        for worker in self._workers:
            worker.start()
        waiting: dict[socket.socket, _Waiting] = {}  # oldest first
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    wait = poll_interval
                    if waiting:
                        oldest = next(iter(waiting.values()))
                        wait = min(wait, max(0.0, oldest.deadline - time.monotonic()))
                    for key, _ in selector.select(wait):
                        if key.data is None:
                            self._accept(selector, waiting)
                            continue
                        entry: _Waiting = key.data
                        if waiting.get(entry.connection) is entry:  # not closed this round
                            self._read(selector, waiting, entry)
                    self._expire(selector, waiting)
            finally:
                for entry in waiting.values():
                    _close(entry.connection)
                for _ in self._workers:
                    self._ready.put(None)
                for worker in self._workers:
                    worker.join(timeout=self.limits.timeout + 1)
                self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving and wait until the acceptor and the workers have ended."""
        self._stop.set()
        self._stopped.wait(timeout=self.limits.timeout + 5)

    def _accept(self, selector: selectors.BaseSelector,
                waiting: dict[socket.socket, _Waiting]) -> None:
        while True:
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # most likely out of file descriptors
                if not waiting:
                    self._stop.wait(0.05)  # no spinning while the connection waits its turn
                    return
                _drop_oldest(selector, waiting)  # frees a descriptor for the newcomer
                continue
            connection.setblocking(False)
            while len(waiting) >= self.limits.connections:
                _drop_oldest(selector, waiting)
            deadline = time.monotonic() + self.limits.timeout
            entry = _Waiting(connection, address, deadline, bytearray())
            waiting[connection] = entry
            selector.register(connection, selectors.EVENT_READ, entry)

    def _read(self, selector: selectors.BaseSelector,
              waiting: dict[socket.socket, _Waiting], entry: _Waiting) -> None:
        try:
            chunk = entry.connection.recv(HEADER_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        entry.data += chunk
        complete = b"\r\n\r\n" in entry.data or b"\n\n" in entry.data
        if chunk and not complete and len(entry.data) <= HEADER_LIMIT:
            return
        del waiting[entry.connection]
        selector.unregister(entry.connection)
        if not chunk and not complete:  # the client went away
            _close(entry.connection)
        elif not complete:
            _close(entry.connection, _TOO_LARGE)
        else:
            try:
                self._ready.put_nowait((entry.connection, entry.address, bytes(entry.data)))
            except queue.Full:
                _close(entry.connection, _BUSY)

    def _expire(self, selector: selectors.BaseSelector,
                waiting: dict[socket.socket, _Waiting]) -> None:
        now = time.monotonic()
        while waiting:
            oldest = next(iter(waiting.values()))
            if oldest.deadline > now:
                return
            del waiting[oldest.connection]
            selector.unregister(oldest.connection)
            _close(oldest.connection, _TIMEOUT if oldest.data else None)

    def _work(self) -> None:
        while (item := self._ready.get()) is not None:
            connection, address, data = item
            deadline = time.monotonic() + self.limits.timeout
            try:
                self.finish_request((connection, data, deadline), address)  # type: ignore[arg-type]
            except OSError:
                pass  # the client went away or did not read the answer in time
            except Exception:
                self.handle_error(connection, address)
            finally:
                _close(connection, graceful=True)


def _drop_oldest(selector: selectors.BaseSelector,
                 waiting: dict[socket.socket, _Waiting]) -> None:
    """Close the connection that has waited longest for its request."""
    oldest = waiting.pop(next(iter(waiting)))
    selector.unregister(oldest.connection)
    _close(oldest.connection)


def _close(connection: socket.socket, last_words: bytes | None = None, *,
           graceful: bool = False) -> None:
    """Close a client connection, first telling it why when that costs no waiting."""
    with contextlib.suppress(OSError):
        if last_words is not None:
            connection.setblocking(False)
            connection.send(last_words)
            graceful = True
        if graceful:
            connection.shutdown(socket.SHUT_WR)
    connection.close()


def make_app(health: Health, telemetry: Telemetry, *, token: str | None = None,
             pages: Pages | None = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI application; with ``token``, every path but /healthz needs it."""
    metrics = make_wsgi_app(telemetry.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if token is not None and path != "/healthz" and not authorised(environ, token):
            start_response("401 Unauthorized", [
                ("Content-Type", "text/plain"),
                ("WWW-Authenticate", 'Basic realm="riskwatch", charset="UTF-8"')])
            return [b"this page needs RISKWATCH_HTTP_TOKEN (bearer, or basic auth with the "
                    b"token as password)\n"]
        if pages is not None and pages.handles(path):
            answer = pages.answer(path, environ.get("QUERY_STRING", ""))
            start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}",
                           [("Content-Type", answer.content_type)])
            return [answer.body]
        if path == "/metrics":
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        if path == "/healthz":
            ok, reason = health.alive()
            return _json(start_response, ok, {"status": "ok" if ok else "stalled",
                                              "reason": reason})
        if path == "/readyz":
            reasons = health.ready()
            body = {"status": "ready" if not reasons else "not ready",
                    "role": health.role(), "reasons": reasons}
            warnings = health.warnings()
            if warnings:
                body["warnings"] = warnings
            return _json(start_response, not reasons, body)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz, /readyz or /metrics\n"]

    return app


def authorised(environ: dict[str, Any], token: str) -> bool:
    """Does the request carry ``token``, as a bearer token or as a basic-auth password?"""
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    given = value.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def _json(start_response: Callable[..., Any], ok: bool, body: dict[str, Any]) -> list[bytes]:
    start_response("200 OK" if ok else "503 Service Unavailable",
                   [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class WebServer:
    """Serves the endpoints in a background thread."""

    def __init__(self, address: str, health: Health, telemetry: Telemetry, *,
                 limits: Limits | None = None, token: str | None = None,
                 pages: Pages | None = None) -> None:
        limits = limits if limits is not None else Limits()
        for name in ("timeout", "connections", "workers", "queue"):
            if getattr(limits, name) <= 0:
                raise ValueError(f"HTTP limits: {name} must be positive, "
                                 f"not {getattr(limits, name)}")
        host, _, port = address.rpartition(":")
        try:
            self.server = _Server((host.strip("[]"), int(port)), limits)
        except OSError as error:
            raise SettingsError(f"RISKWATCH_HTTP: cannot listen on {address}: "
                                f"{error.strerror or error}") from None
        self.server.set_app(make_app(health, telemetry, token=token, pages=pages))
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
