"""The stored history of each account: recorded after each successful poll, read back at a
restart, downsampled and dropped by :meth:`Store.prune`.

One row per account and poll (``step`` 0), or per account and 5-minute bucket once older
than ``RAW_KEEP`` (``step`` 300; see :mod:`riskwatch.core.history`). Numbers are stored as
decimal text (exact, as the ``actions`` table stores leverage); times as integer
microseconds since the epoch (UTC), cheaper to write, index and compare than text. Writes
go in bulk: one ``executemany`` (SQLite) or one ``COPY`` (PostgreSQL) per call.

``history_peaks`` holds, per account and 5-minute bucket of the last ``RAW_KEEP``, the time
of the bucket's first point and its highest equity: all a drawdown reads, so a new leader
reads a day of it (288 rows per account) instead of every poll's row. It is written as the
buckets close, from the points :meth:`HistoryStore.record_history` is given (seeded from the
stored rows of the open bucket when a process first records); older than ``RAW_KEEP`` the
downsampled rows of ``history`` serve instead. A bucket may appear more than once (a
leader change in it): readers take the earliest first time and the highest equity.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

from riskwatch.core.history import (
    BUCKET,
    DEFAULT_INTERVAL,
    EPOCH,
    FIELDS,
    KEEP,
    RAW_KEEP,
    Point,
    Series,
    bucket_of,
    downsample,
    series_of,
)
from riskwatch.errors import NotLeading

TABLE, PEAKS = "history", "history_peaks"
# every column, in the order rows are written and read
COLUMNS: tuple[str, ...] = ("account", "at", "step", *FIELDS, "equity_high")
PEAK_COLUMNS: tuple[str, ...] = ("account", "bucket", "first_at", "high")
RAW, DOWNSAMPLED = 0, int(BUCKET.total_seconds())
SLICE = timedelta(hours=1)  # raw rows downsampled per transaction (bounded memory)
_MICRO = timedelta(microseconds=1)
BUCKET_US = BUCKET // _MICRO

# One index on time (reads and pruning go by time) and one by account (an account's chart).
HISTORY_DDL = """
CREATE TABLE history (
    account TEXT NOT NULL, at BIGINT NOT NULL, step INTEGER NOT NULL,
    equity TEXT, margin_balance TEXT, maint_margin_ratio TEXT, initial_margin_ratio TEXT,
    effective_leverage TEXT, gross_notional TEXT, unrealized_pnl TEXT,
    liquidation_buffer TEXT, equity_high TEXT
);
CREATE INDEX history_at ON history (at);
CREATE INDEX history_account_at ON history (account, at);
CREATE TABLE history_peaks (
    account TEXT NOT NULL, bucket BIGINT NOT NULL, first_at BIGINT NOT NULL, high TEXT
);
CREATE INDEX history_peaks_bucket ON history_peaks (bucket);
"""

Statements = list[tuple[str, tuple[Any, ...]]]
Bucket = tuple[int, str | None]  # a 5-minute bucket: its first time (µs), its peak (text)
_Open = tuple[int, int, Decimal | None]  # an open bucket: edge, first time (µs), peak


def stored_time(at: datetime) -> int:
    """A time as the history tables store it: microseconds since the epoch."""
    return (at - EPOCH) // _MICRO


def time_of(stored: int) -> datetime:
    """A stored time as a datetime (UTC)."""
    return EPOCH + int(stored) * _MICRO


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _number(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


_VALUES = attrgetter(*FIELDS, "equity_high")


def row_of(account: str, point: Point, step: int = RAW) -> tuple[Any, ...]:
    """A point as a row of the history table."""
    return (account, stored_time(point.at), step,
            *[value if value is None else str(value) for value in _VALUES(point)])


def point_of_row(row: Sequence[Any]) -> tuple[str, Point]:
    """A row of the history table as its account and point."""
    account, at, _step, *numbers = row
    values = dict(zip((*FIELDS, "equity_high"), map(_number, numbers), strict=True))
    return str(account), Point(at=time_of(at), **values)


def _higher(peak: Decimal | None, equity: Decimal | None) -> Decimal | None:
    if equity is None or (peak is not None and peak >= equity):
        return peak
    return equity


class HistoryStore:
    """The history part of a state store (mixed into :class:`~riskwatch.store.base.Store`)."""

    _has_led: bool
    epoch: int | None
    _open_buckets: dict[str, _Open] | None = None  # per account, the bucket being recorded

    @abstractmethod
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read; raise StoreError on failure."""

    @abstractmethod
    def _write_rows(self, statements: Statements, table: str, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]], fence: int | None = None) -> None:
        """Run ``statements``, then insert ``rows`` into ``table`` in bulk, in one
        transaction (checked against ``fence`` first, as ``Store._write``)."""

    def _fence(self) -> int | None:
        """The epoch to fence a write with, as ``Store._fenced`` does."""
        if self._has_led and self.epoch is None:
            raise NotLeading("this process no longer leads")
        return self.epoch

    def record_history(self, points: Mapping[str, Point], now: datetime) -> None:
        """Store one poll's point per account (none later than ``now``) in one transaction;
        then the 5-minute peaks of the buckets this poll closed, if any."""
        if not points:
            return
        fence = self._fence()
        rows = [row_of(account, point if point.at <= now else replace(point, at=now))
                for account, point in points.items()]
        self._write_rows([], TABLE, COLUMNS, rows, fence=fence)
        closed = self._close_buckets(rows)
        if closed:
            self._write_rows([], PEAKS, PEAK_COLUMNS, closed, fence=fence)

    def _close_buckets(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Fold the rows just written into each account's open bucket; the peak rows of the
        buckets they close."""
        if self._open_buckets is None:
            self._open_buckets = self._seed_buckets(min(row[1] for row in rows))
        opened, closed = self._open_buckets, []
        for account, at, _step, text, *_ in rows:
            edge = at - at % BUCKET_US
            equity = None if text is None else Decimal(text)
            current = opened.get(account)
            if current is not None and current[0] == edge:
                if equity is not None and (current[2] is None or equity > current[2]):
                    opened[account] = (edge, min(current[1], at), equity)
                elif at < current[1]:
                    opened[account] = (edge, at, current[2])
                continue
            if current is not None:
                closed.append((account, current[0], current[1], _text(current[2])))
            opened[account] = (edge, at, equity)
        return closed

    def _seed_buckets(self, at: int) -> dict[str, _Open]:
        """The open buckets as stored rows show them when this process first records (a
        leader change within a bucket loses none of its points); any bucket since the last
        stored peak (at most two back) that the previous leader left open is closed here."""
        edge = at - at % BUCKET_US
        found = self._query(f"SELECT max(bucket) FROM {PEAKS}")  # noqa: S608 - fixed names
        latest = found[0][0] if found and found[0][0] is not None else None
        start = max(edge - 2 * BUCKET_US, latest + BUCKET_US if latest is not None else 0)
        rows = self._query("SELECT account, at, equity FROM history WHERE step = ? AND at >= ? "
                           "ORDER BY at", (RAW, start))
        buckets: dict[tuple[str, int], _Open] = {}
        for account, when, text in rows:
            key = (str(account), int(when) - int(when) % BUCKET_US)
            equity = _number(text)
            current = buckets.get(key)
            buckets[key] = ((key[1], int(when), equity) if current is None
                            else (key[1], current[1], _higher(current[2], equity)))
        closed = [(account, bucket, first, _text(peak))
                  for (account, _), (bucket, first, peak) in buckets.items() if bucket < edge]
        if closed:
            self._write_rows([], PEAKS, PEAK_COLUMNS, closed, fence=self._fence())
        return {account: value for (account, _), value in buckets.items() if value[0] >= edge}

    def load_history(self, since: datetime,
                     interval: timedelta = DEFAULT_INTERVAL) -> dict[str, Series]:
        """Every account's points from ``since`` on (as recorded, or downsampled where
        retention has), as series recorded at ``interval``."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM history WHERE at >= ? "  # noqa: S608 - fixed names
                           "ORDER BY at", (stored_time(since),))
        by_account: dict[str, list[Point]] = {}
        for row in rows:
            account, point = point_of_row(row)
            by_account.setdefault(account, []).append(point)
        return {account: series_of(points, interval) for account, points in by_account.items()}

    def load_rows(self, since: datetime, fields: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
        """Each account's rows from ``since`` on, oldest first, as (time in µs, equity, then
        ``fields``), numbers as stored (decimal text): what a restart reads within the raw
        span (few columns, no sort but the index's, nothing parsed that is never read)."""
        names = tuple(name for name in fields if name in FIELDS)
        columns = ", ".join(("account", "at", "equity", *names))
        rows = self._query(f"SELECT {columns} FROM history WHERE at >= ? ORDER BY at",  # noqa: S608 - fixed names
                           (stored_time(since),))
        by_account: dict[str, list[tuple[Any, ...]]] = {}
        get = by_account.get
        for row in rows:
            kept = get(row[0])
            if kept is None:
                kept = by_account[row[0]] = []
            kept.append(row[1:])
        return by_account

    def load_peaks(self, since: datetime, until: datetime) -> dict[str, list[Bucket]]:
        """Each account's 5-minute buckets in [since, until), oldest first: the first point's
        time (µs since the epoch) and the highest equity as stored (decimal text, for the
        reader to parse where it needs the number), from the downsampled rows where the
        peaks are pruned. Of a bucket stored twice, both are returned (readers merge them)."""
        span = (stored_time(since), stored_time(until))
        rows = self._query("SELECT account, at, equity_high FROM history "
                           "WHERE step = ? AND at >= ? AND at < ? ORDER BY at",
                           (DOWNSAMPLED, *span))
        rows += self._query(f"SELECT account, first_at, high FROM {PEAKS} "  # noqa: S608 - fixed names
                            "WHERE bucket >= ? AND bucket < ? ORDER BY bucket", span)
        by_account: dict[str, list[Bucket]] = {}
        get = by_account.get
        for account, first, high in rows:
            buckets = get(account)
            if buckets is None:
                buckets = by_account[account] = []
            buckets.append((first, high))
        return by_account

    def account_history(self, account: str, since: datetime) -> list[Point]:
        """One account's points from ``since`` on, oldest first (for the status page)."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM history "  # noqa: S608 - fixed names
                           "WHERE account = ? AND at >= ? ORDER BY at",
                           (account, stored_time(since)))
        return [point_of_row(row)[1] for row in rows]

    def latest_points(self, since: datetime) -> dict[str, Point]:
        """Each account's newest point from ``since`` on (for ``/riskwatch status``)."""
        rows = self._query(
            f"SELECT {', '.join(COLUMNS)} FROM history WHERE at >= ? AND (account, at) IN "  # noqa: S608 - fixed names
            "(SELECT account, max(at) FROM history WHERE at >= ? GROUP BY account)",
            (stored_time(since), stored_time(since)))
        return dict(point_of_row(row) for row in rows)

    def history_accounts(self, since: datetime) -> list[str]:
        """The accounts with a point from ``since`` on, by name (for the status page)."""
        rows = self._query("SELECT DISTINCT account FROM history WHERE at >= ? "
                           "ORDER BY account", (stored_time(since),))
        return [str(account) for (account,) in rows]

    def prune_history(self, now: datetime, raw_for: timedelta = RAW_KEEP,
                      keep_for: timedelta = KEEP) -> int:
        """Downsample raw points older than ``raw_for`` to 5-minute points, an hour at a time,
        and drop points older than ``keep_for``; the history rows removed (net). Peaks older
        than ``raw_for`` go too (the downsampled rows hold the same)."""
        removed = self._drop_history(now - keep_for)
        cutoff = bucket_of(now - raw_for)  # whole buckets only: one is never split
        self._write_rows([(f"DELETE FROM {PEAKS} WHERE bucket < ?",  # noqa: S608 - fixed names
                           (stored_time(cutoff),))], PEAKS, PEAK_COLUMNS, [])
        found = self._query("SELECT min(at) FROM history WHERE step = ? AND at < ?",
                            (RAW, stored_time(cutoff)))
        oldest = found[0][0] if found else None
        if oldest is None:
            return removed
        start = bucket_of(time_of(oldest))
        while start < cutoff:
            end = min(start + SLICE, cutoff)
            removed += self._downsample_slice(start, end)
            start = end
        return removed

    def _drop_history(self, before: datetime) -> int:
        old = self._query("SELECT count(*) FROM history WHERE at < ?", (stored_time(before),))
        count = int(old[0][0]) if old else 0
        if count:
            self._write_rows([("DELETE FROM history WHERE at < ?", (stored_time(before),))],
                             TABLE, COLUMNS, [])
        return count

    def _downsample_slice(self, start: datetime, end: datetime) -> int:
        """Replace the raw rows in [start, end) by their 5-minute points, atomically."""
        span = (stored_time(start), stored_time(end))
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM history "  # noqa: S608 - fixed names
                           "WHERE step = ? AND at >= ? AND at < ? ORDER BY account, at",
                           (RAW, *span))
        if not rows:
            return 0
        by_account: dict[str, list[Point]] = {}
        for row in rows:
            account, point = point_of_row(row)
            by_account.setdefault(account, []).append(point)
        kept = [row_of(account, point, DOWNSAMPLED)
                for account, points in by_account.items() for point in downsample(points)]
        self._write_rows([("DELETE FROM history WHERE step = ? AND at >= ? AND at < ?",
                           (RAW, *span))], TABLE, COLUMNS, kept)
        return len(rows) - len(kept)
