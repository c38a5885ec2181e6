"""The endpoints stay answerable when clients open connections and send nothing, or half a
request: a fixed number of threads, a deadline per request, a bound on open connections.

Everything runs over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from riskwatch.service.http import Health, Limits, WebServer
from riskwatch.service.telemetry import Telemetry
from tests.integration.test_web import get

HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/pl"
# threads the endpoints may add, however many clients connect (acceptor and workers)
THREAD_ALLOWANCE = 10


def _health() -> Health:
    return Health(alive=lambda: (True, ""), ready=lambda: [], role=lambda: "leader")


@contextlib.contextmanager
def serving(limits: Limits | None = None) -> Iterator[WebServer]:
    """A WebServer on a free loopback port, closed afterwards."""
    web = (WebServer("127.0.0.1:0", _health(), Telemetry()) if limits is None
           else WebServer("127.0.0.1:0", _health(), Telemetry(), limits=limits))
    try:
        yield web
    finally:
        web.close()


@contextlib.contextmanager
def clients(web: WebServer, idle: int, half_sent: int) -> Iterator[list[socket.socket]]:
    """``idle`` connections that send nothing and ``half_sent`` that stop mid-request."""
    host, port = web.server.server_address[:2]
    opened: list[socket.socket] = []
    try:
        for number in range(idle + half_sent):
            connection = socket.create_connection((str(host), int(port)), timeout=5)
            if number >= idle:
                connection.sendall(HALF_SENT)
            opened.append(connection)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    """True if the server closes ``connection`` (EOF or reset) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], left)
        if not readable:
            return False
        try:
            if connection.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
    return False


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = get(url)
    return status, time.monotonic() - started


def test_probes_answer_fast_and_threads_stay_bounded_under_300_idle_and_100_half_sent() -> None:
    """With 300 idle and 100 half-sent connections open, every endpoint answers within a
    second and the process holds no more threads than a fixed allowance."""
    baseline = threading.active_count()
    with serving() as web, clients(web, idle=300, half_sent=100):
        for path in ("/healthz", "/readyz", "/metrics") * 3:
            status, seconds = _timed_get(f"{web.url}{path}")
            assert status == 200, path
            assert seconds < 1.0, (path, seconds)
        assert threading.active_count() - baseline <= THREAD_ALLOWANCE


def test_idle_and_half_sent_connections_are_closed_after_the_timeout() -> None:
    """A connection that sends nothing, or stops mid-request, is closed once the request
    timeout passes; a half-sent request is told 408 first."""
    with serving(Limits(timeout=1.0)) as web, clients(web, idle=20, half_sent=20) as opened:
        assert all(_closed_by_server(c, within=3.0) for c in opened)
    with serving(Limits(timeout=1.0)) as web, clients(web, idle=0, half_sent=1) as [half]:
        answer = half.recv(4096)
        assert answer.startswith(b"HTTP/1.0 408 "), answer


def test_a_request_dripped_byte_by_byte_is_cut_at_the_deadline() -> None:
    """The timeout bounds the whole request, not each read: a client that sends one byte
    every 0.2 s is closed about a timeout after it connected."""
    with serving(Limits(timeout=1.0)) as web:
        host, port = web.server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=5) as connection:
            started = time.monotonic()
            closed_after: float | None = None
            for byte in HALF_SENT * 3:
                try:
                    connection.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - started
                    break
                if _closed_by_server(connection, within=0.2):
                    closed_after = time.monotonic() - started
                    break
            assert closed_after is not None and closed_after < 2.0


def test_connections_past_the_bound_push_out_the_oldest_and_probes_still_get_in() -> None:
    """Past the bound of open connections the oldest waiting ones are closed at once (not
    after the timeout), so a probe arriving last is still answered."""
    limits = Limits(timeout=30.0, connections=50)
    with serving(limits) as web, clients(web, idle=80, half_sent=0) as opened:
        status, seconds = _timed_get(f"{web.url}/healthz")
        assert status == 200 and seconds < 1.0
        assert all(_closed_by_server(c, within=2.0) for c in opened[:30])
        assert not any(_closed_by_server(c, within=0.05) for c in opened[-40:])


def test_the_server_closes_its_threads_and_connections_on_close() -> None:
    """close() stops the acceptor and every worker and closes waiting connections."""
    baseline = threading.active_count()
    with serving() as web, clients(web, idle=5, half_sent=5) as opened:
        assert get(f"{web.url}/healthz")[0] == 200
        web.close()
        assert all(_closed_by_server(c, within=2.0) for c in opened)
        assert threading.active_count() == baseline


def test_oversized_headers_are_refused_with_431() -> None:
    """Request headers past 16 KiB are answered 431 and closed, not buffered on."""
    with serving() as web:
        host, port = web.server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=5) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 20_000)
            assert connection.recv(4096).startswith(b"HTTP/1.0 431 ")


def test_when_every_worker_is_busy_and_the_queue_full_a_request_gets_503_at_once() -> None:
    """Complete requests past the queue are told 503 at once instead of waiting."""
    release = threading.Event()

    def slow_ready() -> list[str]:
        release.wait(10)
        return []

    health = Health(alive=lambda: (True, ""), ready=slow_ready)
    web = WebServer("127.0.0.1:0", health, Telemetry(), limits=Limits(workers=1, queue=1))
    try:
        held = [threading.Thread(target=get, args=(f"{web.url}/readyz",)) for _ in range(2)]
        for thread in held:
            thread.start()
            time.sleep(0.2)  # the first occupies the worker, the second the queue
        status, seconds = _timed_get(f"{web.url}/healthz")
        assert status == 503 and seconds < 1.0
        release.set()
        for thread in held:
            thread.join()
        assert get(f"{web.url}/healthz")[0] == 200
    finally:
        release.set()
        web.close()


def test_a_client_that_does_not_read_its_answer_frees_the_worker_at_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A worker writing a large answer to a client that never reads gives up after the
    timeout, quietly, and the next request is answered."""
    reasons = ["x" * 1000] * 50_000  # a 50 MB answer, far past the socket buffers
    health = Health(alive=lambda: (True, ""), ready=lambda: reasons)
    web = WebServer("127.0.0.1:0", health, Telemetry(), limits=Limits(timeout=1.0, workers=1))
    try:
        host, port = web.server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=5) as reader:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")  # and never reads
            time.sleep(0.3)
            status, seconds = _timed_get(f"{web.url}/healthz")
        assert status == 200 and seconds < 2.0
    finally:
        web.close()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("limits", [Limits(timeout=0), Limits(connections=0), Limits(workers=0)])
def test_limits_must_be_positive(limits: Limits) -> None:
    """A zero timeout, connection bound or worker count is refused with one clear line."""
    with pytest.raises(ValueError, match="must be positive"):
        WebServer("127.0.0.1:0", _health(), Telemetry(), limits=limits)


SERVE_WITH_FEW_FILES = """
import resource, sys, time
from riskwatch.service.telemetry import Telemetry
from riskwatch.service.http import Health, Limits, WebServer
web = WebServer("127.0.0.1:0", Health(lambda: (True, ""), lambda: []), Telemetry(),
                limits=Limits(timeout=30.0, connections=1000))
import os
files = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (files + 30, files + 30))
print(web.url, flush=True)
sys.stdin.read()
"""


def test_out_of_file_descriptors_the_oldest_waiting_connection_makes_room() -> None:
    """When the process runs out of file descriptors, the oldest waiting connection is
    closed so that a probe is still accepted and answered within a second."""
    import subprocess
    import sys

    with subprocess.Popen([sys.executable, "-c", SERVE_WITH_FEW_FILES],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            host, port = url.removeprefix("http://").split(":")
            opened = [socket.create_connection((host, int(port)), timeout=5) for _ in range(60)]
            try:
                status, seconds = _timed_get(f"{url}/healthz")
                assert status == 200 and seconds < 1.0
            finally:
                for connection in opened:
                    connection.close()
        finally:
            server.kill()
