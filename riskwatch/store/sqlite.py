"""The SQLite engine: one file in WAL mode, one leader per file through a lock file."""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from riskwatch.errors import StoreError
from riskwatch.store.base import Store, run_fenced, schema_steps

SCHEMA = schema_steps(serial="INTEGER PRIMARY KEY AUTOINCREMENT")


class SqliteStore(Store):
    """State in one SQLite file (WAL, so ``riskwatch alerts`` can read while the daemon writes).

    Two daemons pointed at one file would both alert; a lock file beside the database
    makes the second one stand by instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self._lock: IO[bytes] | None = None
        try:
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            # a lock held elsewhere for longer than this is a failed write (the daemon
            # stands by and tries again next tick) rather than a frozen event loop
            self._db = sqlite3.connect(path, timeout=2, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"RISKWATCH_STATE: cannot open {path}: {error}") from error

    def close(self) -> None:
        """Close the database and give up the lead."""
        self.release_lead()
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(SCHEMA[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"state store {self.path}: {error}") from error

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]],
               fence: int | None = None) -> None:
        self._write_rows(statements, "", (), (), fence)

    def _write_rows(self, statements: Iterable[tuple[str, tuple[Any, ...]]], table: str,
                    columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
                    fence: int | None = None) -> None:
        """``statements``, then ``rows`` (if any) with one ``executemany``, in one
        transaction, checked against ``fence`` first."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                run_fenced(self._db.execute, statements, fence)
                if rows:
                    marks = ", ".join("?" * len(columns))
                    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - fixed names
                    self._db.executemany(insert, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"state store {self.path}: {error}") from error

    def try_lead(self) -> bool:
        """Hold an exclusive lock on ``<state>.lock``: one daemon per state file."""
        if self._lock is not None:
            return True
        handle = Path(f"{self.path}.lock").open("ab")  # noqa: SIM115 - held while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def release_lead(self) -> None:
        """Release the lock file."""
        self.epoch = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
