"""The PostgreSQL engine: state shared by replicas, one leader through an advisory lock.

The leader holds ``pg_try_advisory_lock`` on a connection of its own; if the leader
dies its connection closes and PostgreSQL frees the lock, so a standby's next attempt
(every poll interval) takes it. The schema carries its version and upgrades itself,
under a transaction-scoped advisory lock so two replicas never migrate at once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from riskwatch.errors import StoreError
from riskwatch.store.base import Store, run_fenced, schema_steps

LOCK_NAME = "riskwatch:leader"
MIGRATION_LOCK = "riskwatch:migrate"

SCHEMA = schema_steps(serial="BIGSERIAL PRIMARY KEY")

_PLACEHOLDER = re.compile(r"\?")


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class PostgresStore(Store):
    """State in PostgreSQL (``RISKWATCH_STATE=postgresql://...``), shared by replicas."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.description = _redact(url)
        self._lock_conn: psycopg.Connection[Any] | None = None
        try:
            self._db = self._connect()
            self._migrate()
        except psycopg.Error as error:
            raise StoreError(f"RISKWATCH_STATE: cannot use {self.description}: "
                             f"{_first_line(error)}") from None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def _migrate(self) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (MIGRATION_LOCK,))
            self._db.execute("CREATE TABLE IF NOT EXISTS riskwatch_schema (version INTEGER)")
            row = self._db.execute("SELECT max(version) FROM riskwatch_schema").fetchone()
            version = row[0] if row and row[0] is not None else 0
            for number, script in enumerate(SCHEMA[version:], start=version + 1):
                self._db.execute(script)
                self._db.execute("INSERT INTO riskwatch_schema (version) VALUES (%s)", (number,))

    def close(self) -> None:
        """Close both connections (which frees the lead)."""
        self.release_lead()
        with contextlib.suppress(psycopg.Error):
            self._db.close()

    def _fail(self, error: psycopg.Error) -> StoreError:
        if self._db.broken or self._db.closed:
            with contextlib.suppress(psycopg.Error):
                self._db = self._connect()
        return StoreError(f"state store {self.description}: {_first_line(error)}")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(_PLACEHOLDER.sub("%s", sql), args).fetchall()
        except psycopg.Error as error:
            raise self._fail(error) from None

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]],
               fence: int | None = None) -> None:
        self._write_rows(statements, "", (), (), fence)

    def _execute(self, statement: str, args: tuple[Any, ...]) -> Any:
        """Run one statement written with ``?`` placeholders."""
        return self._db.execute(_PLACEHOLDER.sub("%s", statement), args)

    def _write_rows(self, statements: Iterable[tuple[str, tuple[Any, ...]]], table: str,
                    columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
                    fence: int | None = None) -> None:
        """``statements``, then ``rows`` (if any) with one ``COPY``, in one transaction,
        checked against ``fence`` first."""
        try:
            with self._db.transaction():
                run_fenced(self._execute, statements, fence)
                if rows:
                    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                    with self._db.cursor() as cursor, cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
        except psycopg.Error as error:
            raise self._fail(error) from None

    def try_lead(self) -> bool:
        """Hold the session advisory lock; False while another replica holds it."""
        try:
            if self._lock_conn is not None and not self._lock_conn.closed:
                self._lock_conn.execute("SELECT 1")  # still connected, so still holding it
                return True
            self.epoch = None  # a new lock: a new epoch
            self._lock_conn = self._connect()
            row = self._lock_conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s || current_schema()))",
                                          (LOCK_NAME,)).fetchone()
        except psycopg.Error:
            self.release_lead()
            return False
        if row is None or not row[0]:
            self.release_lead()
            return False
        return True

    def release_lead(self) -> None:
        """Close the lock connection: PostgreSQL frees the lock at once."""
        self.epoch = None
        if self._lock_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._lock_conn.close()
            self._lock_conn = None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
