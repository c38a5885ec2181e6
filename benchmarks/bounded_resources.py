"""Measures the bounded-resources figures of docs/RELIABILITY.md.

    python -m benchmarks.bounded_resources [postgresql://postgres@127.0.0.1:5432/test]

1. The endpoints with the default limits while 300 idle and 100 half-sent connections
   are open on 127.0.0.1: threads of the process before and during, the latency of
   /healthz, /readyz and /metrics (30 probes each), and how long until the server has
   closed every one of those connections.
2. ``Store.prune`` on a store holding a year of state (SQLite file, and PostgreSQL when
   a URL is given): rows before, rows removed, seconds taken.
"""

from __future__ import annotations

import select
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.core.silences import Silence
from riskwatch.service.http import Health, WebServer
from riskwatch.service.telemetry import Telemetry
from riskwatch.store import Store, open_store

HALF_SENT = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/pl"


def endpoints_under_load(idle: int = 300, half_sent: int = 100) -> None:
    """Threads, probe latency and time to close, with idle and half-sent connections."""
    before = threading.active_count()
    web = WebServer("127.0.0.1:0", Health(lambda: (True, ""), lambda: []), Telemetry())
    host, port = web.server.server_address[:2]
    opened_at = time.monotonic()
    opened = []
    for number in range(idle + half_sent):
        connection = socket.create_connection((str(host), int(port)), timeout=5)
        if number >= idle:
            connection.sendall(HALF_SENT)
        opened.append(connection)
    latencies: dict[str, list[float]] = {}
    for path in ("/healthz", "/readyz", "/metrics") * 30:
        started = time.monotonic()
        with urllib.request.urlopen(f"{web.url}{path}", timeout=5) as answer:  # noqa: S310
            answer.read()
        latencies.setdefault(path, []).append(time.monotonic() - started)
    during = threading.active_count()
    open_now = set(opened)
    while open_now and time.monotonic() - opened_at < 30:
        readable, _, _ = select.select(list(open_now), [], [], 1)
        for connection in readable:
            try:
                if connection.recv(4096) == b"":
                    open_now.discard(connection)
            except ConnectionResetError:
                open_now.discard(connection)
    closed_after = time.monotonic() - opened_at
    print(f"threads: {before} before, {during} with {idle} idle and {half_sent} half-sent "
          f"connections open")
    for path, seconds in latencies.items():
        ordered = sorted(seconds)
        print(f"{path}: median {ordered[len(ordered) // 2] * 1000:.1f} ms, "
              f"max {ordered[-1] * 1000:.1f} ms over {len(ordered)} probes")
    print(f"connections still open after {closed_after:.1f} s: {len(open_now)} of "
          f"{len(opened)}")
    for connection in opened:
        connection.close()
    web.close()


def fill_a_year(store: Store, now: datetime) -> None:
    """A year of a busy desk: 100,000 Slack messages, 2,000 silences, 500 refused
    messages, 50,000 audit rows, 200 firing alerts whose messages must stay."""
    firing = [AlertKey("margin", f"desk-{n}", "ETH:PERP-USDT") for n in range(200)]
    store.save_poll({key: Alert(key=key, state=State.FIRING, severity="critical",
                                exchange="Bybit", metric="maint_margin_ratio",
                                value=Decimal("0.9"), threshold=Decimal("0.8"), since=now,
                                firing_since=now) for key in firing}, [], [], now)
    rows = []
    for n in range(100_000):
        sent = now - timedelta(minutes=5 * n)
        key = firing[n % 200] if n % 50 == 0 else ("margin", f"gone-{n}", "")
        rows.append((uuid.uuid4().hex, "slack:desk", "C1", f"{n}.0", sent.isoformat(),
                     f'[["{key[0]}", "{key[1]}", "{key[2]}"]]'))
    store._write([("INSERT INTO slack_messages (id, destination, channel, ts, sent_at, keys) "
                   "VALUES (?, ?, ?, ?, ?, ?)", row) for row in rows])
    for n in range(2000):
        start = now - timedelta(hours=4 * n)
        store.add_silence(Silence(uuid.uuid4().hex, "*", None, None, start,
                                  start + timedelta(hours=2), "maintenance", start))
    store._write([("INSERT INTO outbox (id, destination, created_at, payload, status) "
                   "VALUES (?, ?, ?, ?, 'failed')",
                   (uuid.uuid4().hex, "webhook", (now - timedelta(days=n * 0.73)).isoformat(),
                    '{"notices": []}')) for n in range(500)])
    store.record_actions([
        Decision(now - timedelta(minutes=15 * n), "lev", "desk-1", "Bybit", "SOL:PERP-USDT",
                 Decimal(25), Decimal(5), "enforce", "acted", "ok") for n in range(50_000)])


def prune_a_year(url: str, label: str) -> None:
    """Rows before, rows removed and seconds for one prune of a year of state."""
    store = open_store(url)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    fill_a_year(store, now)
    tables = ("slack_messages", "silences", "outbox", "actions")
    before = {t: store._query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}  # noqa: S608
    started = time.monotonic()
    removed = store.prune(now)
    seconds = time.monotonic() - started
    after = {t: store._query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}  # noqa: S608
    started = time.monotonic()
    again = store.prune(now + timedelta(hours=1))
    hourly = time.monotonic() - started
    store.close()
    print(f"{label}: removed {removed} rows in {seconds:.2f} s; an hour later "
          f"{again} rows in {hourly:.2f} s")
    for table in tables:
        print(f"  {table}: {before[table]} -> {after[table]}")


def main() -> None:
    """Print every figure."""
    endpoints_under_load()
    with tempfile.TemporaryDirectory() as folder:
        prune_a_year(f"sqlite:///{Path(folder) / 'state.db'}", "SQLite")
    if len(sys.argv) > 1:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(sys.argv[1], autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        try:
            prune_a_year(f"{sys.argv[1]}?options=-csearch_path%3D{schema}", "PostgreSQL")
        finally:
            with psycopg.connect(sys.argv[1], autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
