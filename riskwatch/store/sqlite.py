"""The SQLite state store: one file, one writer, every poll's changes in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from riskwatch.actions import Decision
from riskwatch.alerts import Alert, AlertKey
from riskwatch.errors import StoreError
from riskwatch.silences import Silence
from riskwatch.store.codec import alert_from_dict, alert_to_dict

SCHEMA: list[str] = [
    # version 1
    """
    CREATE TABLE alerts (
        rule TEXT NOT NULL, account TEXT NOT NULL, symbol TEXT NOT NULL,
        state TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (rule, account, symbol)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        destination TEXT NOT NULL,
        created_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_pending ON outbox (status, destination, seq);
    CREATE TABLE slack_messages (
        id TEXT PRIMARY KEY, destination TEXT NOT NULL, channel TEXT NOT NULL,
        ts TEXT NOT NULL, sent_at TEXT NOT NULL, keys TEXT NOT NULL
    );
    """,
    # version 2
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY, rule TEXT NOT NULL, account TEXT, symbol TEXT,
        starts_at TEXT NOT NULL, ends_at TEXT NOT NULL, reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # version 3
    """
    CREATE TABLE actions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, rule TEXT NOT NULL,
        account TEXT NOT NULL, exchange TEXT NOT NULL, pair TEXT NOT NULL,
        from_leverage TEXT, to_leverage TEXT NOT NULL, mode TEXT NOT NULL,
        outcome TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX actions_at ON actions (at);
    """,
]


@dataclass(frozen=True)
class OutboxRow:
    """A message waiting for (or refused by) its destination."""

    seq: int
    id: str
    destination: str
    created_at: datetime
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class SlackMessage:
    """A message Slack accepted through the Web API: where it is and which alerts it showed."""

    id: str
    channel: str
    ts: str
    keys: tuple[AlertKey, ...]


@dataclass(frozen=True)
class NewMessage:
    """A message to put in the outbox."""

    id: str
    destination: str
    payload: dict[str, Any]


class SqliteStore:
    """State in one SQLite file (WAL, so ``riskwatch alerts`` can read while the daemon writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"RISKWATCH_STATE: cannot open {path}: {error}") from error

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(SCHEMA[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"state store {self.path}: {error}") from error

    # ------------------------------------------------------------------ alerts

    def load_alerts(self) -> dict[AlertKey, Alert]:
        """Every stored alert."""
        rows = self._db.execute("SELECT data FROM alerts").fetchall()
        alerts = (alert_from_dict(json.loads(data)) for (data,) in rows)
        return {alert.key: alert for alert in alerts}

    def save_poll(
        self, changed: Mapping[AlertKey, Alert], dropped: Iterable[AlertKey],
        messages: Iterable[NewMessage], now: datetime,
    ) -> None:
        """Store one poll's alert changes and its outgoing messages atomically."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM alerts WHERE rule=? AND account=? AND symbol=?", tuple(key))
            for key in dropped
        ]
        statements += [
            ("INSERT OR REPLACE INTO alerts (rule, account, symbol, state, data) "
             "VALUES (?, ?, ?, ?, ?)",
             (*key, alert.state.value, json.dumps(alert_to_dict(alert))))
            for key, alert in changed.items()
        ]
        statements += [
            ("INSERT INTO outbox (id, destination, created_at, payload) VALUES (?, ?, ?, ?)",
             (message.id, message.destination, now.isoformat(), json.dumps(message.payload)))
            for message in messages
        ]
        if statements:
            self._write(statements)

    # ------------------------------------------------------------------ outbox

    def outbox(self, status: str = "pending") -> list[OutboxRow]:
        """Messages with ``status``, oldest first."""
        rows = self._db.execute(
            "SELECT seq, id, destination, created_at, payload, status, attempts, "
            "next_attempt_at, last_error FROM outbox WHERE status=? ORDER BY seq", (status,)
        ).fetchall()
        return [
            OutboxRow(seq, id_, destination, datetime.fromisoformat(created), json.loads(payload),
                      state, attempts, datetime.fromisoformat(due) if due else None, error)
            for seq, id_, destination, created, payload, state, attempts, due, error in rows
        ]

    def delivered(self, row: OutboxRow, channel: str | None, ts: str | None,
                  now: datetime) -> None:
        """Slack accepted ``row``: remove it, and remember where it landed for threads."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM outbox WHERE seq=?", (row.seq,)),
        ]
        if channel and ts:
            keys = [[n["alert"]["rule"], n["alert"]["account"], n["alert"]["symbol"]]
                    for n in row.payload.get("notices", [])]
            statements.append((
                "INSERT OR REPLACE INTO slack_messages (id, destination, channel, ts, sent_at, "
                "keys) VALUES (?, ?, ?, ?, ?, ?)",
                (row.id, row.destination, channel, ts, now.isoformat(), json.dumps(keys))))
        self._write(statements)

    def retry_later(self, row: OutboxRow, due: datetime, error: str) -> None:
        """Keep ``row`` and try again at ``due``."""
        self._write([("UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, last_error=? "
                      "WHERE seq=?", (due.isoformat(), error, row.seq))])

    def refused(self, row: OutboxRow, error: str) -> None:
        """Slack refused ``row`` for good: keep it, marked failed, for the operator to see."""
        self._write([("UPDATE outbox SET attempts=attempts+1, status='failed', last_error=? "
                      "WHERE seq=?", (error, row.seq))])

    def slack_message(self, message_id: str) -> SlackMessage | None:
        """Where an earlier outbox message landed, if it was posted through the Web API."""
        found = self._db.execute("SELECT channel, ts, keys FROM slack_messages WHERE id=?",
                                 (message_id,)).fetchone()
        if found is None:
            return None
        keys = tuple(AlertKey(*key) for key in json.loads(found[2]))
        return SlackMessage(message_id, found[0], found[1], keys)

    # ------------------------------------------------------------------ actions

    def record_actions(self, decisions: Iterable[Decision]) -> None:
        """Append leverage decisions to the audit log."""
        self._write([
            ("INSERT INTO actions (at, rule, account, exchange, pair, from_leverage, "
             "to_leverage, mode, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (d.at.isoformat(), d.rule, d.account, d.exchange, d.pair,
              None if d.from_leverage is None else str(d.from_leverage), str(d.to_leverage),
              d.mode, d.outcome, d.detail))
            for d in decisions
        ])

    def actions(self, since: datetime | None = None) -> list[Decision]:
        """The audit log, oldest first (from ``since`` on, when given)."""
        rows = self._db.execute(
            "SELECT at, rule, account, exchange, pair, from_leverage, to_leverage, mode, "
            "outcome, detail FROM actions WHERE at >= ? ORDER BY seq",
            (since.isoformat() if since else "",)).fetchall()
        return [Decision(datetime.fromisoformat(at), rule, account, exchange, pair,
                         None if old is None else Decimal(old), Decimal(new), mode, outcome,
                         detail)
                for at, rule, account, exchange, pair, old, new, mode, outcome, detail in rows]

    # ------------------------------------------------------------------ silences

    def add_silence(self, silence: Silence) -> None:
        """Store a new silence."""
        self._write([("INSERT INTO silences (id, rule, account, symbol, starts_at, ends_at, "
                      "reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (silence.id, silence.rule, silence.account, silence.symbol,
                       silence.starts_at.isoformat(), silence.ends_at.isoformat(),
                       silence.reason, silence.created_at.isoformat()))])

    def silences(self) -> list[Silence]:
        """Every stored silence, newest first (expired ones included)."""
        rows = self._db.execute("SELECT id, rule, account, symbol, starts_at, ends_at, reason, "
                                "created_at FROM silences ORDER BY created_at DESC").fetchall()
        return [Silence(id_, rule, account, symbol, datetime.fromisoformat(starts),
                        datetime.fromisoformat(ends), reason, datetime.fromisoformat(created))
                for id_, rule, account, symbol, starts, ends, reason, created in rows]

    def remove_silence(self, silence_id: str) -> bool:
        """Delete a silence; False when no silence has that id."""
        found = self._db.execute("SELECT 1 FROM silences WHERE id=?", (silence_id,)).fetchone()
        if found is None:
            return False
        self._write([("DELETE FROM silences WHERE id=?", (silence_id,))])
        return True

    def alert(self, key: AlertKey) -> Alert | None:
        """One stored alert."""
        found = self._db.execute("SELECT data FROM alerts WHERE rule=? AND account=? AND "
                                 "symbol=?", tuple(key)).fetchone()
        return alert_from_dict(json.loads(found[0])) if found else None
