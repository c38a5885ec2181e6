"""Stores written by the previous release still read, and stores close however they are left."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from riskwatch.core.lifecycle import Alert
from riskwatch.store import Store, open_store
from riskwatch.store.codec import notice_from_dict
from tests.helpers import FIXTURES
from tests.integration import previous_codec
from tests.stored_values import ALERTS, DECISIONS, NOTICES, SILENCES, write_all

OLD_STORE = FIXTURES / "store" / "v6.db"  # written by tests.stored_values.write_all, pre-msgspec


def _old_rows() -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the fixture store, as the previous release wrote them."""
    with closing(sqlite3.connect(f"file:{OLD_STORE}?mode=ro&immutable=1", uri=True)) as db:
        return {
            "alerts": db.execute("SELECT rule, account, symbol, state, data FROM alerts "
                                 "ORDER BY rule").fetchall(),
            "outbox": db.execute("SELECT id, destination, created_at, payload FROM outbox "
                                 "ORDER BY seq").fetchall(),
        }


def _numbers(alerts: Any) -> list[tuple[str, str]]:
    """Each alert's numbers as their exact text, in key order."""
    return sorted((repr(alert.key), f"{alert.value} {alert.threshold}") for alert in alerts)


def _assert_holds_every_value(store: Store) -> None:
    """``store`` holds exactly the values of tests.stored_values, numbers digit for digit."""
    loaded = store.load_alerts()
    assert loaded == {alert.key: alert for alert in ALERTS}
    assert _numbers(loaded.values()) == _numbers(ALERTS)
    [message, update] = store.outbox()
    assert tuple(notice_from_dict(n) for n in message.payload["notices"]) == NOTICES
    assert update.payload == {"update": "m1"}
    assert sorted(store.silences(), key=lambda s: s.id) == list(SILENCES)
    assert store.actions() == list(DECISIONS)


def test_a_sqlite_store_written_by_the_previous_release_reads_equal(tmp_path: Path) -> None:
    """The version-6 SQLite file the hand-written codec wrote loads every value unchanged."""
    copy = tmp_path / "old.db"
    shutil.copy(OLD_STORE, copy)
    with open_store(f"sqlite:///{copy}") as store:
        _assert_holds_every_value(store)


def test_postgresql_rows_written_by_the_previous_release_read_equal(pg_url: str) -> None:
    """The same rows, as the previous release wrote them into PostgreSQL, load unchanged."""
    old = _old_rows()
    with open_store(pg_url) as store:
        store._write(
            [("INSERT INTO alerts (rule, account, symbol, state, data) VALUES (?, ?, ?, ?, ?)",
              row) for row in old["alerts"]]
            + [("INSERT INTO outbox (id, destination, created_at, payload) VALUES (?, ?, ?, ?)",
                row) for row in old["outbox"]])
        for silence in SILENCES:
            store.add_silence(silence)
        store.record_actions(DECISIONS)
        _assert_holds_every_value(store)


def test_the_previous_release_reads_what_this_one_writes(store_url: str) -> None:
    """Rows written now load, through the previous release's codec, into the same values
    (replicas of both releases share one store while an upgrade rolls)."""
    with open_store(store_url) as store:
        write_all(store)
        _assert_holds_every_value(store)
        rows = [data for (data,) in store._query("SELECT data FROM alerts")]
        [message, _] = store.outbox()
    old_reader: list[Alert] = [previous_codec.alert_from_dict(json.loads(row)) for row in rows]
    assert {alert.key: alert for alert in old_reader} == {alert.key: alert for alert in ALERTS}
    assert _numbers(old_reader) == _numbers(ALERTS)
    payload = json.loads(json.dumps(message.payload))
    assert tuple(previous_codec.notice_from_dict(n) for n in payload["notices"]) == NOTICES


def test_rows_keep_the_previous_key_names_and_values(store_url: str) -> None:
    """A row written now has the old row's keys and values (then the fields added since,
    at their defaults); only UTC may read Z for +00:00."""
    old = {row[:3]: json.loads(row[4]) for row in _old_rows()["alerts"]}
    with open_store(store_url) as store:
        write_all(store)
        new = {row[:3]: json.loads(row[3]) for row in store._query(
            "SELECT rule, account, symbol, data FROM alerts")}
    assert new.keys() == old.keys()
    added = {"acked_by": "", "acked_at": None, "escalated_at": None}
    for key, data in new.items():
        assert list(data) == [*old[key], *added]
        assert data == {**{name: _utc_as_z(value) for name, value in old[key].items()}, **added}


def _utc_as_z(value: Any) -> Any:
    """A stored value as msgspec writes it: a UTC time ends in Z rather than +00:00."""
    if isinstance(value, str) and value.endswith("+00:00"):
        return value.removesuffix("+00:00") + "Z"
    return value


class Boom(Exception):
    """An error raised inside a ``with`` block."""


def test_the_store_closes_when_its_block_ends(store_url: str) -> None:
    """Leaving ``with open_store(...)`` closes the store: its lead is free for another."""
    with open_store(store_url) as store:
        assert store.try_lead()
        with open_store(store_url) as other:
            assert not other.try_lead()
    _assert_closed(store)
    with open_store(store_url) as other:
        assert other.try_lead()


def test_the_store_closes_when_its_block_raises(store_url: str) -> None:
    """An exception inside the block closes the store and reaches the caller unchanged."""
    with pytest.raises(Boom), open_store(store_url) as store:
        assert store.try_lead()
        raise Boom
    _assert_closed(store)
    with open_store(store_url) as other:
        assert other.try_lead()


def _assert_closed(store: Store) -> None:
    """The store's database connection is closed."""
    connection = store._db  # type: ignore[attr-defined]
    if isinstance(connection, sqlite3.Connection):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")
    else:
        assert connection.closed
