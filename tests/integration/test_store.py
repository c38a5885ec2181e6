"""Both state stores, SQLite and real PostgreSQL, hold the same state the same way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from riskwatch.actions import Decision
from riskwatch.alerts import Alert, AlertKey, State
from riskwatch.errors import StoreError
from riskwatch.silences import Silence
from riskwatch.store import NewMessage, Store, open_store
from riskwatch.store.base import schema_steps
from riskwatch.store.postgres import PostgresStore
from tests.helpers import T0, at

KEY = AlertKey("margin", "desk-1", "ETH:PERP-USDT")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    else:
        yield request.getfixturevalue("pg_url")


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
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://rw:hunter2@127.0.0.1:9/test")
    assert "postgresql://rw:***@127.0.0.1:9/test" in str(caught.value)
    assert "hunter2" not in str(caught.value)
