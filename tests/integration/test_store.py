"""Both state stores, SQLite and real PostgreSQL, hold the same state the same way."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.core.silences import Silence
from riskwatch.errors import StoreError
from riskwatch.store import NewMessage, Store, open_store
from riskwatch.store.base import schema_steps
from riskwatch.store.postgres import PostgresStore
from tests.helpers import T0, at, closed_port

KEY = AlertKey("margin", "desk-1", "ETH:PERP-USDT")


def _alert(state: State = State.FIRING) -> Alert:
    return Alert(key=KEY, state=state, severity="critical", exchange="Bybit",
                 metric="maint_margin_ratio", value=Decimal("0.85"), threshold=Decimal("0.8"),
                 since=T0, firing_since=T0, thread="m1", action="lowered")


def test_alerts_and_outbox_round_trip(store_url: str) -> None:
    """An alert and its message are stored together, read back equal, and delivered once."""
    store = open_store(store_url)
    store.save_poll({KEY: _alert()}, [], [NewMessage("m1", "webhook", {"notices": []})], T0)
    store.save_poll({KEY: _alert()}, [], [], at(1))  # an upsert, not a duplicate
    assert store.load_alerts() == {KEY: _alert()}
    [row] = store.outbox()
    store.retry_later(row, at(5), "HTTP 500")
    [row] = store.outbox()
    assert (row.attempts, row.next_attempt_at, row.last_error) == (1, at(5), "HTTP 500")
    store.delivered(row, "C1", "1.0001", at(6))
    assert store.outbox() == []
    landed = store.slack_message("m1")
    assert landed is not None and (landed.channel, landed.ts) == ("C1", "1.0001")
    store.save_poll({}, [KEY], [], at(7))
    assert store.load_alerts() == {} and store.alert(KEY) is None
    store.close()


def test_refused_messages_stay_as_failed(store_url: str) -> None:
    """A permanently refused message is kept, marked failed, out of the pending queue."""
    store = open_store(store_url)
    store.save_poll({}, [], [NewMessage("m1", "webhook", {"notices": []})], T0)
    [row] = store.outbox()
    store.refused(row, "invalid_auth")
    assert store.outbox() == [] and [r.last_error for r in store.outbox("failed")] == [
        "invalid_auth"]
    store.close()


def test_silences_and_audit_log(store_url: str) -> None:
    """Silences and leverage decisions are stored and read back."""
    store = open_store(store_url)
    silence = Silence("s1", "margin", "desk-*", None, T0, at(3600), "why", T0)
    store.add_silence(silence)
    assert store.silences() == [silence]
    assert store.remove_silence("s1") and not store.remove_silence("s1")
    decision = Decision(T0, "lev", "desk-1", "Bybit", "SOL:PERP-USDT", Decimal(25), Decimal(5),
                        "enforce", "acted", "ok")
    store.record_actions([decision])
    assert store.actions() == [decision]
    assert store.actions(since=T0 + timedelta(seconds=1)) == []
    store.close()


def test_state_survives_reopening(store_url: str) -> None:
    """A second process opening the same store sees the same state; migrations run once."""
    first = open_store(store_url)
    first.save_poll({KEY: _alert()}, [], [], T0)
    first.close()
    second = open_store(store_url)
    assert second.load_alerts() == {KEY: _alert()}
    second.close()


def test_one_leader_at_a_time(store_url: str) -> None:
    """Two stores on one state: one leads; when it lets go the other takes over."""
    a: Store = open_store(store_url)
    b: Store = open_store(store_url)
    assert a.try_lead() and a.try_lead()
    assert not b.try_lead()
    a.release_lead()
    assert b.try_lead() and not a.try_lead()
    a.close()
    b.close()


def test_postgres_schema_is_versioned_and_upgrades_itself(pg_url: str) -> None:
    """A fresh schema gets every version once; opening again adds none."""
    PostgresStore(pg_url).close()
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as connection:
        versions = [row[0] for row in connection.execute("SELECT version FROM riskwatch_schema")]
    assert versions == list(range(1, len(schema_steps("")) + 1))


def test_unreachable_postgres_is_one_clear_error() -> None:
    """A PostgreSQL that does not answer is a StoreError naming the URL without password."""
    port = closed_port()
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://rw:hunter2@127.0.0.1:{port}/test")
    assert f"postgresql://rw:***@127.0.0.1:{port}/test" in str(caught.value)
    assert "hunter2" not in str(caught.value)


GONE = AlertKey("margin", "desk-9", "BTC:PERP-USDT")  # an alert no longer stored
RESOLVED = AlertKey("margin", "desk-2", "SOL:PERP-USDT")
NOW = T0 + timedelta(days=400)


def _days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def _posted(store: Store, message_id: str, keys: list[AlertKey], sent: datetime) -> None:
    """A message Slack accepted through the Web API at ``sent``, showing ``keys``."""
    notices = [{"alert": {"rule": k.rule, "account": k.account, "symbol": k.symbol}}
               for k in keys]
    store.save_poll({}, [], [NewMessage(message_id, "slack:desk", {"notices": notices})], sent)
    [row] = [r for r in store.outbox() if r.id == message_id]
    store.delivered(row, "C1", f"{sent.timestamp():.4f}", sent)


def _decision(at_: datetime) -> Decision:
    return Decision(at_, "lev", "desk-1", "Bybit", "SOL:PERP-USDT", Decimal(25), Decimal(5),
                    "enforce", "acted", "ok")


def test_prune_removes_only_what_is_no_longer_needed(store_url: str) -> None:
    """prune drops old Slack messages of gone alerts, long-expired silences, old refused
    messages and year-old audit rows, keeps everything an alert or a waiting message needs,
    and says how many rows went."""
    store = open_store(store_url)
    store.save_poll({KEY: _alert(),
                     RESOLVED: replace(_alert(State.RESOLVED), key=RESOLVED, since=NOW)},
                    [], [], NOW)
    _posted(store, "firing-parent", [KEY, GONE], _days_ago(30))  # kept: KEY still fires
    _posted(store, "resolved-parent", [RESOLVED], _days_ago(30))  # kept: RESOLVED is stored
    _posted(store, "old", [GONE], _days_ago(8))  # removed
    _posted(store, "recent", [GONE], _days_ago(6))  # kept: younger than a week
    _posted(store, "awaited", [GONE], _days_ago(9))  # kept: a waiting update refers to it
    store.save_poll({}, [], [NewMessage("update", "slack:desk", {"update": "awaited"}),
                             NewMessage("reply", "slack:desk",
                                        {"notices": [], "thread": "old-thread"})], _days_ago(40))
    _posted(store, "old-thread", [GONE], _days_ago(50))  # kept: a waiting reply needs it

    for id_, ends in (("ended-long-ago", 31), ("ended-lately", 29), ("in-force", -1)):
        store.add_silence(Silence(id_, "margin", None, None, _days_ago(60), _days_ago(ends),
                                  "why", _days_ago(60)))

    store.save_poll({}, [], [NewMessage("refused-long-ago", "webhook", {"notices": []}),
                             NewMessage("pending-long-ago", "webhook", {"notices": []})],
                    _days_ago(31))
    store.save_poll({}, [], [NewMessage("refused-lately", "webhook", {"notices": []})],
                    _days_ago(29))
    for row in store.outbox():
        if row.id.startswith("refused"):
            store.refused(row, "invalid_auth")

    store.record_actions([_decision(_days_ago(366)), _decision(_days_ago(364))])

    assert store.prune(NOW) == 4
    assert store.slack_message("old") is None
    for kept in ("firing-parent", "resolved-parent", "recent", "awaited", "old-thread"):
        assert store.slack_message(kept) is not None, kept
    assert {s.id for s in store.silences()} == {"ended-lately", "in-force"}
    assert [r.id for r in store.outbox("failed")] == ["refused-lately"]
    assert {r.id for r in store.outbox()} == {"update", "reply", "pending-long-ago"}
    assert store.actions() == [_decision(_days_ago(364))]
    assert set(store.load_alerts()) == {KEY, RESOLVED}
    assert store.prune(NOW) == 0
    store.close()


def test_prune_releases_a_slack_message_once_its_alerts_are_gone(store_url: str) -> None:
    """A week-old message of a firing alert stays until the alert is dropped, then goes."""
    store = open_store(store_url)
    store.save_poll({KEY: _alert()}, [], [], NOW)
    _posted(store, "parent", [KEY], _days_ago(10))
    assert store.prune(NOW) == 0
    store.save_poll({}, [KEY], [], NOW)
    assert store.prune(NOW) == 1 and store.slack_message("parent") is None
    store.close()


def test_prune_deletes_thousands_of_rows_in_one_call(store_url: str) -> None:
    """Batches past any engine's limit on query parameters are pruned in one call."""
    store = open_store(store_url)
    old = _days_ago(8).isoformat()
    rows = [(f"m{n}", "slack:desk", "C1", f"{n}.0", old, '[["r", "a", ""]]')
            for n in range(2500)]
    store._write([("INSERT INTO slack_messages (id, destination, channel, ts, sent_at, keys) "
                   "VALUES (?, ?, ?, ?, ?, ?)", row) for row in rows])
    assert store.prune(NOW) == 2500
    assert store._query("SELECT count(*) FROM slack_messages")[0][0] == 0
    store.close()
