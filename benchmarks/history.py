"""History at scale: what recording, evaluating and reloading it costs a poll.

For N accounts x 20 assets (the payloads of benchmarks/poll_work.py), on one core:

- the poll's work without history (the 25 rules of benchmarks/rules.yaml) and with the
  shipped history rules added (a daily drawdown and a 15-minute change) over a day of
  history in the leader's book, and ``decide`` with those two rules alone (the poll
  times move by more than the history rules cost on a shared machine);
- ``points_of`` (a point per account from the snapshot) and ``record_history`` on SQLite
  and on PostgreSQL, median over the polls of the raw span, each as a share of the poll;
- a restart: ``HistoryBook.load`` of a day (24 h of 5-minute peaks, 288 rows per account,
  then the raw rows of the change look-back), and the memory the loaded book holds
  (tracemalloc).

The store is filled the way the daemon fills it: ``record_history`` once per 15-second
poll for the raw span (20 minutes: a 15-minute change, its tolerance, the open bucket),
after a day of 5-minute peaks written in bulk.
Raw rows older than the raw span are not written: the load reads history by the index on
time from the raw span on, so they are never touched.

    python -m benchmarks.history                  # N = 1,000 and 10,000
    python -m benchmarks.history --sizes 1000 --json
    RISKWATCH_BENCH_PG=postgresql://127.0.0.1:5432/test python -m benchmarks.history
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.generate import payload_bytes
from benchmarks.poll_work import RULES, median_seconds, peak_bytes
from riskwatch.core.evaluate import NO_HISTORY, CompiledRule, compile_rules, decide
from riskwatch.core.history import BUCKET, History, Point, bucket_of, points_of
from riskwatch.core.lifecycle import Alert, AlertKey
from riskwatch.core.snapshot import Snapshot
from riskwatch.memory import paused_gc
from riskwatch.rulefiles.loader import load_rules
from riskwatch.service.history_book import HistoryBook
from riskwatch.source.decode import read_snapshot
from riskwatch.store import Store, open_store
from riskwatch.store.history import PEAK_COLUMNS, PEAKS, stored_time

HISTORY_RULES = Path(__file__).parent / "history_rules.yaml"
INTERVAL = timedelta(seconds=15)
NOW = datetime(2026, 3, 2, 23, 55, tzinfo=UTC)  # a day of history since 00:00 UTC
PG = os.environ.get("RISKWATCH_BENCH_PG", "postgresql://127.0.0.1:5432/test")


def poll(body: bytes, rules: list[CompiledRule], alerts: dict[AlertKey, Alert],
         history: History) -> dict[AlertKey, Alert]:
    """Bytes -> snapshot -> decisions -> the next alert states, as poll_work does."""
    with paused_gc():
        snapshot = read_snapshot(body, "cached", NOW, "bench")
        decisions = decide(rules, snapshot, alerts, NOW, history=history)
    updated = dict(alerts)
    for key in decisions.dropped:
        updated.pop(key, None)
    updated.update(decisions.changed)
    return updated


def _peak_rows(names: list[str], hours: int) -> Iterator[list[tuple[Any, ...]]]:
    """A day of 5-minute peaks (equity walking randomly), an hour of buckets at a time."""
    rng = random.Random(7)
    level = dict.fromkeys(names, 100_000.0)
    edge = NOW - timedelta(hours=hours)
    while edge < bucket_of(NOW - timedelta(minutes=30)):
        rows = []
        for _ in range(12):
            for name in names:
                level[name] *= 1 + rng.gauss(0, 0.002)
                rows.append((name, stored_time(edge), stored_time(edge) + 3_000_000,
                             f"{level[name]:.2f}"))
            edge += BUCKET
        yield rows


def _fill(store: Store, points: dict[str, Point], span: timedelta) -> list[float]:
    """A day of peaks, then one ``record_history`` per poll over ``span``; the time of
    each of those calls."""
    for rows in _peak_rows(list(points), 24):
        store._write_rows([], PEAKS, PEAK_COLUMNS, rows)
    writes = []
    when = NOW - span
    while when <= NOW:
        moved = {name: replace(point, at=when) for name, point in points.items()}
        gc.collect()
        with paused_gc():
            started = time.perf_counter()
            store.record_history(moved, when)
            writes.append(time.perf_counter() - started)
        when += INTERVAL
    return writes


def _with_time(snapshot: Snapshot, when: datetime) -> Snapshot:
    return replace(snapshot, accounts=tuple(replace(a, taken_at=when)
                                                 for a in snapshot.accounts))


@contextmanager
def _pg_store() -> Iterator[Store]:
    """A store in a fresh schema of the benchmark database, dropped afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with open_store(f"{PG}?options=-csearch_path%3D{schema}") as store:
            yield store
    finally:
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _load(store: Store, rules: list[CompiledRule]) -> tuple[float, HistoryBook]:
    gc.collect()
    book = HistoryBook(INTERVAL)
    started = time.perf_counter()
    book.load(store, rules, NOW)
    return time.perf_counter() - started, book


def measure(accounts: int, repeats: int, span: timedelta, engines: list[str]) -> dict[str, Any]:
    """Every figure for one size."""
    body = payload_bytes("cached", accounts)
    plain = compile_rules(load_rules([RULES]))
    rules = compile_rules(load_rules([RULES, HISTORY_RULES]))
    snapshot = read_snapshot(body, "cached", NOW, "bench")
    snapshot = _with_time(snapshot, NOW)
    row: dict[str, Any] = {"accounts": accounts, "rules": len(rules)}
    book: HistoryBook | None = None
    row["points_of_s"] = median_seconds(lambda: points_of(snapshot, NOW), repeats)
    points = points_of(snapshot, NOW)
    for engine in engines:
        with (_pg_store() if engine == "postgresql" else _sqlite_store()) as store:
            writes = _fill(store, points, span)
            row[f"record_{engine}_s"] = statistics.median(writes)
            row[f"load_{engine}_s"], book = _load(store, rules)
            if engine == engines[0]:
                row["book_bytes"] = peak_bytes(lambda: _load(store, rules)[1])[0]
    assert book is not None
    row["history_accounts"] = len(book.series)
    alerts = poll(body, plain, {}, NO_HISTORY)
    row["poll_s"] = median_seconds(lambda: poll(body, plain, alerts, NO_HISTORY), repeats)
    view = book.view()
    alerts = poll(body, rules, {}, view)
    row["poll_history_s"] = median_seconds(lambda: poll(body, rules, alerts, view), repeats)
    alone = compile_rules(load_rules([HISTORY_RULES]))
    row["history_rules_s"] = median_seconds(
        lambda: decide(alone, snapshot, {}, NOW, history=view), repeats)
    return row


@contextmanager
def _sqlite_store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as folder, \
            open_store(f"sqlite:///{folder}/state.db") as store:
        yield store


def main() -> None:
    """Print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--span-minutes", type=float, default=20.0,
                        help="polls recorded before loading (the raw span of the rules)")
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    span = timedelta(minutes=args.span_minutes)
    rows = [measure(n, args.repeats, span, args.engines) for n in args.sizes]
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return
    print("riskwatch history — cached payload, 20 assets per account, 25 rules + daily "
          "drawdown + 15-minute change, a day of history; ms (share of the poll without "
          "history)")
    for row in rows:
        base = row["poll_s"]

        def share(key: str, base: float = base, row: dict[str, Any] = row) -> str:
            return (f"{row[key] * 1e3:8.1f} ({row[key] / base:5.1%})" if key in row
                    else f"{'-':>17}")

        print(f"{row['accounts']:>7,} accounts: poll {base * 1e3:.1f} ms, with history "
              f"{share('poll_history_s')} (the 2 history rules alone "
              f"{share('history_rules_s')}); points_of {share('points_of_s')}; "
              f"record_history SQLite {share('record_sqlite_s')}, PostgreSQL "
              f"{share('record_postgresql_s')}")
        loads = ", ".join(f"{engine} {row[f'load_{engine}_s']:.2f} s" for engine in
                          ("sqlite", "postgresql") if f"load_{engine}_s" in row)
        print(f"{'':>17}restart load of a day: {loads}; book "
              f"{row['book_bytes'] / 1e6:.1f} MB for {row['history_accounts']:,} accounts")


if __name__ == "__main__":
    main()
