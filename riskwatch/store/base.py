"""What every state store does, in SQL both SQLite and PostgreSQL speak.

An engine (``sqlite.py``, ``postgres.py``) supplies the connection, its schema, how to
run a query and a transaction, and how to take the lead; every query lives here once.
Placeholders are written ``?``; an engine may rewrite them.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, cast

from riskwatch.core.history import KEEP, RAW_KEEP
from riskwatch.core.interactions import Acknowledgement, Click, Outcome
from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, AlertKey
from riskwatch.core.rules import Severity
from riskwatch.core.silences import Silence, Stage
from riskwatch.errors import NotLeading
from riskwatch.store.codec import decode_alert, encode_alert
from riskwatch.store.history import HISTORY_DDL, HistoryStore

_SCHEMA_STEPS: list[str] = [
    # version 1
    """
    CREATE TABLE alerts (
        rule TEXT NOT NULL, account TEXT NOT NULL, symbol TEXT NOT NULL,
        state TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (rule, account, symbol)
    );
    CREATE TABLE outbox (
        seq {serial},
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
        seq {serial}, at TEXT NOT NULL, rule TEXT NOT NULL,
        account TEXT NOT NULL, exchange TEXT NOT NULL, pair TEXT NOT NULL,
        from_leverage TEXT, to_leverage TEXT NOT NULL, mode TEXT NOT NULL,
        outcome TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX actions_at ON actions (at);
    """,
    # version 4: a call's row is written before the call and given its outcome after
    """
    ALTER TABLE actions ADD COLUMN audit_id TEXT;
    CREATE UNIQUE INDEX actions_audit_id ON actions (audit_id);
    """,
    # version 5: the leadership epoch, a fencing token (see Store.lead)
    """
    CREATE TABLE leadership (id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL);
    INSERT INTO leadership (id, epoch) VALUES (1, 0);
    """,
    # version 6: who added a silence
    """
    ALTER TABLE silences ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
    """,
    # version 7: each account's figures after each poll (riskwatch/store/history.py)
    HISTORY_DDL,
    # version 8: Slack clicks, each once (unique on the click itself; ``claim`` tells which
    # delivery of it took effect), acknowledgements per firing, the silence notices told
    # (silences stored before are marked told: nothing old is announced), who ended a
    # silence early
    """
    CREATE TABLE interactions (
        seq {serial}, click TEXT NOT NULL UNIQUE, claim TEXT NOT NULL, at TEXT NOT NULL,
        user_id TEXT NOT NULL, action TEXT NOT NULL, rule TEXT, account TEXT, symbol TEXT,
        outcome TEXT NOT NULL
    );
    CREATE INDEX interactions_at ON interactions (at);
    CREATE TABLE acknowledgements (
        click TEXT PRIMARY KEY, rule TEXT NOT NULL, account TEXT NOT NULL,
        symbol TEXT NOT NULL, firing_since TEXT NOT NULL, acked_by TEXT NOT NULL,
        acked_at TEXT NOT NULL, severity TEXT NOT NULL
    );
    CREATE TABLE silence_notices (
        silence_id TEXT NOT NULL, stage TEXT NOT NULL, told_at TEXT NOT NULL,
        PRIMARY KEY (silence_id, stage)
    );
    INSERT INTO silence_notices (silence_id, stage, told_at)
        SELECT id, 'created', created_at FROM silences;
    INSERT INTO silence_notices (silence_id, stage, told_at)
        SELECT id, 'ending', created_at FROM silences;
    INSERT INTO silence_notices (silence_id, stage, told_at)
        SELECT id, 'ended', created_at FROM silences;
    ALTER TABLE silences ADD COLUMN ended_by TEXT NOT NULL DEFAULT '';
    """,
]
# run first in a fenced transaction: touches one row while the epoch is still ours
FENCE_SQL = "UPDATE leadership SET epoch = epoch WHERE id = 1 AND epoch = ?"


def schema_steps(serial: str) -> list[str]:
    """The schema, one step per version, with the engine's auto-increment key type."""
    return [step.format(serial=serial) for step in _SCHEMA_STEPS]


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
class OutboxSummary:
    """The outbox at a glance, for /metrics, /readyz and the heartbeat."""

    pending: int
    failed: int
    oldest_pending: datetime | None


@dataclass(frozen=True)
class SlackMessage:
    """A message Slack accepted through the Web API: where it is and which alerts it showed."""

    id: str
    channel: str
    ts: str
    keys: tuple[AlertKey, ...]
    destination: str = ""  # the outbox destination it was sent to


@dataclass(frozen=True)
class NewMessage:
    """A message to put in the outbox."""

    id: str
    destination: str
    payload: dict[str, Any]


class Store(HistoryStore, ABC):
    """State that a restart must not forget, shared by replicas where the engine allows.

    Fencing: a process that takes the lead raises the leadership epoch and keeps the new
    value. While it leads, every write it makes checks, in the same transaction, that the
    epoch is still its own, and :meth:`check_lead` does the same before a side effect
    outside the store (a Slack post, a leverage call). A leader deposed while a poll was
    in flight (its lock connection lost, a standby already leading) therefore cannot
    save, send or act twice: its writes fail with :class:`NotLeading`.
    """

    description = "state store"
    epoch: int | None = None  # our leadership epoch while we lead
    _has_led = False  # once it has led, a process writes as the leader or not at all

    @abstractmethod
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read; raise StoreError on failure."""

    @abstractmethod
    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]],
               fence: int | None = None) -> None:
        """Run writes in one transaction; raise StoreError on failure.

        With ``fence``, the transaction first checks that the leadership epoch is still
        ``fence`` and raises NotLeading (writing nothing) when it is not.
        """

    def _fenced(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Write as the leader: refused if another process has taken the lead since."""
        if self._has_led and self.epoch is None:
            raise NotLeading("this process no longer leads")
        self._write(statements, fence=self.epoch)

    def lead(self) -> bool:
        """Take or keep the lead; a new lead raises the epoch (the fencing token)."""
        if not self.try_lead():
            self.epoch = None
            return False
        if self.epoch is None:
            self.epoch = self._raise_epoch()
            self._has_led = True
        return True

    def _raise_epoch(self) -> int:
        self._write([("UPDATE leadership SET epoch = epoch + 1 WHERE id = 1", ())])
        rows = self._query("SELECT epoch FROM leadership WHERE id = 1")
        return int(rows[0][0])

    def check_lead(self) -> None:
        """Raise NotLeading unless we still lead (right before a side effect).

        A store that never led (a single-use tool, a test) is not fenced.
        """
        if not self._has_led:
            return
        if self.epoch is None:
            raise NotLeading("this process no longer leads")
        rows = self._query("SELECT epoch FROM leadership WHERE id = 1")
        if not rows or int(rows[0][0]) != self.epoch:
            self.epoch = None
            raise NotLeading("another replica took the lead")

    @abstractmethod
    def close(self) -> None:
        """Close connections (and give up the lead)."""

    def __enter__(self) -> Self:
        """``with open_store(url) as store:`` closes the store when the block ends."""
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        """Close, however the block ended; an exception in flight goes on unchanged."""
        self.close()

    @abstractmethod
    def try_lead(self) -> bool:
        """Be (or stay) the one process that polls, notifies and acts; True if so."""

    @abstractmethod
    def release_lead(self) -> None:
        """Give up the lead (at a clean stop), so a standby takes over at once."""

    # ------------------------------------------------------------------ alerts

    def load_alerts(self) -> dict[AlertKey, Alert]:
        """Every stored alert."""
        rows = self._query("SELECT data FROM alerts")
        alerts = (decode_alert(data) for (data,) in rows)
        return {alert.key: alert for alert in alerts}

    def save_poll(
        self, changed: Mapping[AlertKey, Alert], dropped: Iterable[AlertKey],
        messages: Iterable[NewMessage], now: datetime,
        told: Iterable[tuple[str, Stage]] = (),
    ) -> None:
        """Store one poll's alert changes, its outgoing messages and the silence notices
        they tell (``told``: silence id and stage) atomically."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM alerts WHERE rule=? AND account=? AND symbol=?", tuple(key))
            for key in dropped
        ]
        statements += _alert_upserts(changed)
        statements += [
            ("INSERT INTO outbox (id, destination, created_at, payload) VALUES (?, ?, ?, ?)",
             (message.id, message.destination, now.isoformat(), json.dumps(message.payload)))
            for message in messages
        ]
        statements += [
            ("INSERT INTO silence_notices (silence_id, stage, told_at) VALUES (?, ?, ?) "
             "ON CONFLICT (silence_id, stage) DO NOTHING", (silence_id, stage.value,
                                                            now.isoformat()))
            for silence_id, stage in told
        ]
        if statements:
            self._fenced(statements)

    # ------------------------------------------------------------------ outbox

    def outbox(self, status: str = "pending") -> list[OutboxRow]:
        """Messages with ``status``, oldest first."""
        rows = self._query(
            "SELECT seq, id, destination, created_at, payload, status, attempts, "
            "next_attempt_at, last_error FROM outbox WHERE status=? ORDER BY seq", (status,)
        )
        return _outbox_rows(rows)

    def outbox_summary(self) -> OutboxSummary:
        """How many messages wait, how many were refused, and when the oldest waiting was made."""
        rows = self._query("SELECT status, count(*), min(created_at) FROM outbox GROUP BY status")
        found = {status: (count, oldest) for status, count, oldest in rows}
        pending, oldest = found.get("pending", (0, None))
        return OutboxSummary(int(pending), int(found.get("failed", (0, None))[0]),
                             datetime.fromisoformat(oldest) if oldest else None)

    def backlogs(self) -> dict[str, int]:
        """How many messages wait for each destination."""
        rows = self._query("SELECT destination, count(*) FROM outbox WHERE status='pending' "
                           "GROUP BY destination")
        return {str(destination): int(count) for destination, count in rows}

    def backlog(self, destination: str) -> list[OutboxRow]:
        """Every message waiting for ``destination``, oldest first."""
        rows = self._query(
            "SELECT seq, id, destination, created_at, payload, status, attempts, "
            "next_attempt_at, last_error FROM outbox WHERE status='pending' AND destination=? "
            "ORDER BY seq", (destination,))
        return _outbox_rows(rows)

    def fold(self, folded: Sequence[OutboxRow], messages: Iterable[NewMessage],
             now: datetime) -> None:
        """Replace waiting messages by the messages that sum them up, atomically.

        The new messages keep the time of the oldest one they replace: a destination that
        stays down still shows its oldest message's age growing (/metrics, /readyz).
        """
        since = min((row.created_at for row in folded), default=now)
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM outbox WHERE seq=?", (row.seq,)) for row in folded]
        statements += [
            ("INSERT INTO outbox (id, destination, created_at, payload) VALUES (?, ?, ?, ?)",
             (message.id, message.destination, since.isoformat(), json.dumps(message.payload)))
            for message in messages
        ]
        self._fenced(statements)

    def outbox_heads(self) -> list[OutboxRow]:
        """The oldest waiting message of each destination (the next one each may send)."""
        rows = self._query(
            "SELECT seq, id, destination, created_at, payload, status, attempts, "
            "next_attempt_at, last_error FROM outbox WHERE seq IN (SELECT min(seq) FROM outbox "
            "WHERE status='pending' GROUP BY destination) ORDER BY seq"
        )
        return _outbox_rows(rows)

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
                "INSERT INTO slack_messages (id, destination, channel, ts, sent_at, keys) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (row.id, row.destination, channel, ts, now.isoformat(), json.dumps(keys))))
        self._fenced(statements)

    def retry_later(self, row: OutboxRow, due: datetime, error: str) -> None:
        """Keep ``row`` and try again at ``due``."""
        self._fenced([("UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, last_error=? "
                       "WHERE seq=?", (due.isoformat(), error, row.seq))])

    def refused(self, row: OutboxRow, error: str) -> None:
        """Slack refused ``row`` for good: keep it, marked failed, for the operator to see."""
        self._fenced([("UPDATE outbox SET attempts=attempts+1, status='failed', last_error=? "
                       "WHERE seq=?", (error, row.seq))])

    def slack_message(self, message_id: str) -> SlackMessage | None:
        """Where an earlier outbox message landed, if it was posted through the Web API."""
        rows = self._query("SELECT channel, ts, keys, destination FROM slack_messages "
                           "WHERE id=?", (message_id,))
        if not rows:
            return None
        found = rows[0]
        keys = tuple(AlertKey(*key) for key in json.loads(found[2]))
        return SlackMessage(message_id, found[0], found[1], keys, found[3])

    def slack_message_at(self, channel: str, ts: str) -> SlackMessage | None:
        """The message Slack keeps at ``channel`` and ``ts`` (where a button was clicked)."""
        rows = self._query("SELECT id FROM slack_messages WHERE channel=? AND ts=?",
                           (channel, ts))
        return self.slack_message(str(rows[0][0])) if rows else None

    # ------------------------------------------------------------------ Slack clicks

    def record_click(self, click: Click, outcome: Outcome, key: AlertKey | None,
                     now: datetime, messages: Iterable[NewMessage] = ()) -> bool:
        """Store a click and what it does, once: True if this call took effect.

        Any replica may call this, for any delivery of a click. The interaction row is
        unique on the click itself; this call writes it with a claim of its own (INSERT
        … ON CONFLICT DO NOTHING), and every other write of the transaction happens only
        if the stored claim is its own. A redelivered envelope, or the same click handled
        by a second replica at the same time, therefore writes nothing more (PostgreSQL
        makes the second insert wait for the first transaction, then skip).
        """
        claim = uuid.uuid4().hex
        mine = "EXISTS (SELECT 1 FROM interactions WHERE click = ? AND claim = ?)"
        guard = (click.key, claim)
        rule, account, symbol = key if key is not None else (None, None, None)
        statements: list[tuple[str, tuple[Any, ...]]] = [(
            "INSERT INTO interactions (click, claim, at, user_id, action, rule, account, "
            "symbol, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (click) DO NOTHING",
            (click.key, claim, now.isoformat(), click.user, click.action, rule, account, symbol,
             outcome.verdict.value))]
        if outcome.ack is not None:
            ack = outcome.ack
            statements.append((
                "INSERT INTO acknowledgements (click, rule, account, symbol, firing_since, "
                f"acked_by, acked_at, severity) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE {mine}",
                (click.key, *ack.key, ack.firing_since.isoformat(), ack.by, ack.at.isoformat(),
                 ack.severity, *guard)))
        if outcome.silence is not None:
            new = outcome.silence
            statements.append((
                "INSERT INTO silences (id, rule, account, symbol, starts_at, ends_at, reason, "
                f"created_at, created_by) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {mine}",
                (new.id, new.rule, new.account, new.symbol, new.starts_at.isoformat(),
                 new.ends_at.isoformat(), new.reason, new.created_at.isoformat(),
                 new.created_by, *guard)))
        statements += [
            ("UPDATE silences SET ends_at = ?, ended_by = ? WHERE id = ? AND ends_at > ? AND "  # noqa: S608 - fixed SQL
             + mine, (now.isoformat(), click.author, ended, now.isoformat(), *guard))
            for ended in outcome.ended
        ]
        statements += [
            ("INSERT INTO outbox (id, destination, created_at, payload) "
             f"SELECT ?, ?, ?, ? WHERE {mine}",
             (message.id, message.destination, now.isoformat(), json.dumps(message.payload),
              *guard))
            for message in messages
        ]
        self._write(statements)  # any replica: not fenced, and every write is guarded
        rows = self._query("SELECT claim FROM interactions WHERE click = ?", (click.key,))
        return bool(rows) and rows[0][0] == claim

    def interactions(self) -> list[dict[str, Any]]:
        """Every stored click, oldest first: who, what, when, which alert, the outcome."""
        rows = self._query("SELECT at, user_id, action, rule, account, symbol, outcome "
                           "FROM interactions ORDER BY seq")
        return [{"at": datetime.fromisoformat(at), "user": user, "action": action,
                 "rule": rule, "account": account, "symbol": symbol, "outcome": outcome}
                for at, user, action, rule, account, symbol, outcome in rows]

    def acknowledgements(self) -> list[Acknowledgement]:
        """Every stored acknowledgement (the core tells which hold)."""
        rows = self._query("SELECT rule, account, symbol, firing_since, acked_by, acked_at, "
                           "severity FROM acknowledgements")
        return [Acknowledgement(AlertKey(rule, account, symbol),
                                datetime.fromisoformat(since), by,
                                datetime.fromisoformat(at), cast(Severity, severity))
                for rule, account, symbol, since, by, at, severity in rows]

    def silences_told(self) -> dict[str, frozenset[Stage]]:
        """For each silence, the notices of it already told."""
        told: dict[str, set[Stage]] = {}
        for silence_id, stage in self._query("SELECT silence_id, stage FROM silence_notices"):
            told.setdefault(str(silence_id), set()).add(Stage(stage))
        return {silence_id: frozenset(stages) for silence_id, stages in told.items()}

    # ------------------------------------------------------------------ actions

    def record_actions(self, decisions: Iterable[Decision],
                       decided: Mapping[AlertKey, Alert] | None = None) -> None:
        """Append leverage decisions to the audit log, in one transaction with ``decided``.

        ``decided`` are the alerts these decisions mark as decided for their firing: stored
        with the rows, before any call is made, so that no later poll and no other replica
        calls again in the same firing, whatever happens after the call.
        """
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT INTO actions (at, rule, account, exchange, pair, from_leverage, "
             "to_leverage, mode, outcome, detail, audit_id) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (d.at.isoformat(), d.rule, d.account, d.exchange, d.pair,
              None if d.from_leverage is None else str(d.from_leverage), str(d.to_leverage),
              d.mode, d.outcome, d.detail, d.audit_id))
            for d in decisions
        ]
        statements += _alert_upserts(decided or {})
        if statements:
            self._fenced(statements)  # a deposed leader records, and so calls, nothing

    def record_outcomes(self, decisions: Iterable[Decision]) -> None:
        """Give the audit rows of calls (written as ``calling``) their outcome and answer."""
        statements = [("UPDATE actions SET outcome=?, detail=? WHERE audit_id=?",
                       (d.outcome, d.detail, d.audit_id))
                      for d in decisions if d.audit_id is not None]
        if statements:
            self._write(statements)

    def actions(self, since: datetime | None = None) -> list[Decision]:
        """The audit log, oldest first (from ``since`` on, when given)."""
        rows = self._query(
            "SELECT at, rule, account, exchange, pair, from_leverage, to_leverage, mode, "
            "outcome, detail, audit_id FROM actions WHERE at >= ? ORDER BY seq",
            (since.isoformat() if since else "",))
        return [Decision(datetime.fromisoformat(at), rule, account, exchange, pair,
                         None if old is None else Decimal(old), Decimal(new), mode, outcome,
                         detail, audit_id=audit_id)
                for at, rule, account, exchange, pair, old, new, mode, outcome, detail, audit_id
                in rows]

    # ------------------------------------------------------------------ silences

    def add_silence(self, silence: Silence) -> None:
        """Store a new silence."""
        self._write([("INSERT INTO silences (id, rule, account, symbol, starts_at, ends_at, "
                      "reason, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (silence.id, silence.rule, silence.account, silence.symbol,
                       silence.starts_at.isoformat(), silence.ends_at.isoformat(),
                       silence.reason, silence.created_at.isoformat(), silence.created_by))])

    def silences(self) -> list[Silence]:
        """Every stored silence, newest first (expired ones included)."""
        rows = self._query("SELECT id, rule, account, symbol, starts_at, ends_at, reason, "
                           "created_at, created_by, ended_by FROM silences "
                           "ORDER BY created_at DESC")
        return [Silence(id_, rule, account, symbol, datetime.fromisoformat(starts),
                        datetime.fromisoformat(ends), reason, datetime.fromisoformat(created),
                        by or "", ended or "")
                for id_, rule, account, symbol, starts, ends, reason, created, by, ended in rows]

    def remove_silence(self, silence_id: str, now: datetime | None = None,
                       by: str = "") -> bool:
        """End a silence; False when no silence has that id.

        With ``now``, a silence not yet over ends at ``now`` (kept, so that the threads
        of its alerts are told it ended, and by ``by``); otherwise it is deleted.
        """
        rows = self._query("SELECT ends_at FROM silences WHERE id=?", (silence_id,))
        if not rows:
            return False
        if now is not None and datetime.fromisoformat(rows[0][0]) > now:
            self._write([("UPDATE silences SET ends_at=?, ended_by=?, starts_at=CASE WHEN "
                          "starts_at > ? THEN ? ELSE starts_at END WHERE id=?",
                          (now.isoformat(), by, now.isoformat(), now.isoformat(), silence_id))])
        else:
            self._write([("DELETE FROM silences WHERE id=?", (silence_id,))])
        return True

    def alert(self, key: AlertKey) -> Alert | None:
        """One stored alert."""
        rows = self._query("SELECT data FROM alerts WHERE rule=? AND account=? AND symbol=?",
                           tuple(key))
        return decode_alert(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ retention

    def prune(self, now: datetime, retention: Retention | None = None) -> int:
        """Remove what no alert, message or operator needs any more; the rows removed.

        Per table (see :class:`Retention`): a Slack message goes a week after it was sent
        unless it shows an alert still stored or a waiting message replies to it or
        updates it; a silence 30 days after it ended; a message Slack refused for good
        30 days after it was made; a leverage decision a year after it was made.
        Waiting messages and alerts are never pruned (resolved alerts leave the store a
        day after they resolve, at the next poll). Run by the leader; one transaction,
        then the history's own (:meth:`prune_history`: raw points downsampled after 48 h,
        dropped after 90 days; its rows removed count too).
        """
        keep = retention if retention is not None else Retention()
        live = {tuple(key) for key in self._query("SELECT rule, account, symbol FROM alerts")}
        awaited = _referenced_messages(self._query(
            "SELECT payload FROM outbox WHERE status='pending'"))
        messages = [
            id_ for id_, keys in self._query(
                "SELECT id, keys FROM slack_messages WHERE sent_at < ?",
                (_cutoff(now, keep.slack_messages),))
            if id_ not in awaited and not live.intersection(map(tuple, json.loads(keys)))
        ]
        silences = [id_ for (id_,) in self._query("SELECT id FROM silences WHERE ends_at < ?",
                                                  (_cutoff(now, keep.silences),))]
        refused = [seq for (seq,) in self._query(
            "SELECT seq FROM outbox WHERE status='failed' AND created_at < ?",
            (_cutoff(now, keep.refused_messages),))]
        audit = [seq for (seq,) in self._query("SELECT seq FROM actions WHERE at < ?",
                                               (_cutoff(now, keep.actions),))]
        clicks = [seq for (seq,) in self._query("SELECT seq FROM interactions WHERE at < ?",
                                                (_cutoff(now, keep.interactions),))]
        acks = [click for (click,) in self._query(
            "SELECT click FROM acknowledgements WHERE acked_at < ?",
            (_cutoff(now, keep.interactions),))]
        statements = [
            *_delete_in("slack_messages", "id", messages),
            *_delete_in("silences", "id", silences),
            *_delete_in("silence_notices", "silence_id", silences),
            *_delete_in("outbox", "seq", refused),
            *_delete_in("actions", "seq", audit),
            *_delete_in("interactions", "seq", clicks),
            *_delete_in("acknowledgements", "click", acks),
        ]
        if statements:
            self._write(statements)
        return (len(messages) + len(silences) + len(refused) + len(audit) + len(clicks)
                + len(acks) + self.prune_history(now, keep.history_raw, keep.history))


def _outbox_rows(rows: list[tuple[Any, ...]]) -> list[OutboxRow]:
    return [
        OutboxRow(seq, id_, destination, datetime.fromisoformat(created), json.loads(payload),
                  state, attempts, datetime.fromisoformat(due) if due else None, error)
        for seq, id_, destination, created, payload, state, attempts, due, error in rows
    ]


@dataclass(frozen=True)
class Retention:
    """How long :meth:`Store.prune` keeps rows that nothing needs any more."""

    slack_messages: timedelta = timedelta(days=7)  # after sending, once its alerts are gone
    silences: timedelta = timedelta(days=30)  # after the silence ended
    refused_messages: timedelta = timedelta(days=30)  # outbox rows Slack refused for good
    actions: timedelta = timedelta(days=365)  # the leverage audit log
    interactions: timedelta = timedelta(days=90)  # Slack clicks and acknowledgements
    history_raw: timedelta = RAW_KEEP  # each poll's point, then 5-minute points
    history: timedelta = KEEP  # 5-minute points, then gone


_DELETE_BATCH = 500  # keys per statement, far below every engine's parameter limit


def _cutoff(now: datetime, keep: timedelta) -> str:
    """``now - keep`` as stored: times are ISO 8601 in UTC, so text order is time order."""
    return (now - keep).astimezone(UTC).isoformat()


def _delete_in(table: str, column: str, keys: list[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """DELETE statements for ``keys`` of ``table``, a batch at a time."""
    statements = []
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = tuple(keys[start:start + _DELETE_BATCH])
        marks = ", ".join("?" * len(batch))
        statements.append((f"DELETE FROM {table} WHERE {column} IN ({marks})", batch))  # noqa: S608 - fixed names
    return statements


def _referenced_messages(rows: list[tuple[Any, ...]]) -> set[str]:
    """Ids of Slack messages that waiting outbox rows reply to or update."""
    found: set[str] = set()
    for (payload,) in rows:
        data = json.loads(payload)
        found.update(str(data[field]) for field in ("thread", "update") if data.get(field))
    return found


def run_fenced(execute: Callable[[str, tuple[Any, ...]], Any],
               statements: Iterable[tuple[str, tuple[Any, ...]]], fence: int | None) -> None:
    """Inside a transaction: prove the lead (when ``fence`` is given), then run the
    statements; a deposed leader raises :class:`NotLeading` and writes nothing."""
    if fence is not None and execute(FENCE_SQL, (fence,)).rowcount != 1:
        raise NotLeading("another process took the lead")
    for statement, args in statements:
        execute(statement, args)


def _alert_upserts(alerts: Mapping[AlertKey, Alert]) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that store ``alerts``, each replacing the row of its key."""
    return [("INSERT INTO alerts (rule, account, symbol, state, data) VALUES (?, ?, ?, ?, ?) "
             "ON CONFLICT (rule, account, symbol) DO UPDATE SET state = excluded.state, "
             "data = excluded.data",
             (*key, alert.state.value, encode_alert(alert)))
            for key, alert in alerts.items()]
