"""The stored history of each account: recorded after each successful poll, read back at a
restart, downsampled and dropped by :meth:`Store.prune`.

One row per account and poll (``step`` 0), or per account and 5-minute bucket once older
than ``RAW_KEEP`` (``step`` 300; see :mod:`riskwatch.core.history`). Numbers are stored as
decimal text (exact, as the ``actions`` table stores leverage) and times as ISO 8601 in
UTC with microseconds, so that text order is time order. Writes go in bulk: one
``executemany`` (SQLite) or one ``COPY`` (PostgreSQL) per call, in one transaction.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from riskwatch.core.history import (
    BUCKET,
    DEFAULT_INTERVAL,
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

TABLE = "history"
# every column, in the order rows are written and read
COLUMNS: tuple[str, ...] = ("account", "at", "step", *FIELDS, "equity_high")
RAW, DOWNSAMPLED = 0, int(BUCKET.total_seconds())
SLICE = timedelta(hours=1)  # raw rows downsampled per transaction (bounded memory)

HISTORY_DDL = """
CREATE TABLE history (
    account TEXT NOT NULL, at TEXT NOT NULL, step INTEGER NOT NULL,
    equity TEXT, margin_balance TEXT, maint_margin_ratio TEXT, initial_margin_ratio TEXT,
    effective_leverage TEXT, gross_notional TEXT, unrealized_pnl TEXT,
    liquidation_buffer TEXT, equity_high TEXT
);
CREATE INDEX history_at ON history (at);
CREATE INDEX history_account_at ON history (account, at);
"""

Statements = list[tuple[str, tuple[Any, ...]]]


def stored_time(at: datetime) -> str:
    """A time as the history table stores it (fixed width, UTC)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _number(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def row_of(account: str, point: Point, step: int = RAW) -> tuple[Any, ...]:
    """A point as a row of the history table."""
    return (account, stored_time(point.at), step,
            *(_text(getattr(point, name)) for name in FIELDS), _text(point.equity_high))


def point_of_row(row: Sequence[Any]) -> tuple[str, Point]:
    """A row of the history table as its account and point."""
    account, at, _step, *numbers = row
    values = dict(zip((*FIELDS, "equity_high"), map(_number, numbers), strict=True))
    return str(account), Point(at=datetime.fromisoformat(at), **values)


class HistoryStore:
    """The history part of a state store (mixed into :class:`~riskwatch.store.base.Store`)."""

    _has_led: bool
    epoch: int | None

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
        """Store one poll's point per account (none later than ``now``) in one transaction."""
        rows = [row_of(account, point if point.at <= now else replace(point, at=now))
                for account, point in points.items()]
        if rows:
            self._write_rows([], TABLE, COLUMNS, rows, fence=self._fence())

    def load_history(self, since: datetime,
                     interval: timedelta = DEFAULT_INTERVAL) -> dict[str, Series]:
        """Every account's points from ``since`` on (a restart reads what its rules need:
        ``since = now - horizon(rules)``), as series recorded at ``interval``."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM history WHERE at >= ? "  # noqa: S608 - fixed names
                           "ORDER BY account, at", (stored_time(since),))
        by_account: dict[str, list[Point]] = {}
        for row in rows:
            account, point = point_of_row(row)
            by_account.setdefault(account, []).append(point)
        return {account: series_of(points, interval) for account, points in by_account.items()}

    def account_history(self, account: str, since: datetime) -> list[Point]:
        """One account's points from ``since`` on, oldest first (for the status page)."""
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM history "  # noqa: S608 - fixed names
                           "WHERE account = ? AND at >= ? ORDER BY at",
                           (account, stored_time(since)))
        return [point_of_row(row)[1] for row in rows]

    def prune_history(self, now: datetime, raw_for: timedelta = RAW_KEEP,
                      keep_for: timedelta = KEEP) -> int:
        """Downsample raw points older than ``raw_for`` to 5-minute points, an hour at a time,
        and drop points older than ``keep_for``; the rows removed (net)."""
        removed = self._drop_history(now - keep_for)
        cutoff = bucket_of(now - raw_for)  # whole buckets only: one is never split
        found = self._query("SELECT min(at) FROM history WHERE step = ? AND at < ?",
                            (RAW, stored_time(cutoff)))
        oldest = found[0][0] if found else None
        if oldest is None:
            return removed
        start = bucket_of(datetime.fromisoformat(oldest))
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
