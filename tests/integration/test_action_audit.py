"""The audit log of leverage actions in both store engines: intent, outcome, upgrade."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import psycopg

from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.store import Store, open_store
from riskwatch.store.base import schema_steps
from riskwatch.store.codec import alert_from_dict, alert_to_dict
from tests.helpers import T0, at

KEY = AlertKey("lev-cap", "desk-1", "SOL:PERP-USDT")
CALL = Decision(at(60), "lev-cap", "desk-1", "Bybit", "SOL:PERP-USDT", Decimal(25), Decimal(5),
                "enforce", "calling", "no outcome recorded", account_id="uuid-1",
                audit_id="a1")
OLD_ROW = ("2026-01-22T10:00:00+00:00", "lev-cap", "desk-0", "Bybit", "ETH:PERP-USDT", "20",
           "5", "enforce", "acted", "Leverage changed successfully.")


def _alert() -> Alert:
    return Alert(key=KEY, state=State.PENDING, severity="critical", exchange="Bybit",
                 metric="leverage", value=Decimal(25), threshold=Decimal(20), since=T0,
                 action="called set_leverage ...")


def test_a_call_is_one_row_written_before_and_completed_after(store: Store) -> None:
    """The intent row and the alert it decides are stored together; the outcome then
    completes that same row, and only that row."""
    skipped = replace(CALL, pair="ETH:PERP-USDT", outcome="skipped", detail="silenced",
                      audit_id=None)
    store.record_actions([CALL, skipped], {KEY: _alert()})
    assert [d.outcome for d in store.actions()] == ["calling", "skipped"]
    assert store.alert(KEY) == _alert()
    store.record_outcomes([replace(CALL, outcome="unknown", detail="RecursionError: ...")])
    first, second = store.actions()
    assert (first.outcome, first.detail, first.audit_id) == ("unknown", "RecursionError: ...",
                                                             "a1")
    assert (second.outcome, second.detail, second.audit_id) == ("skipped", "silenced", None)


def test_sqlite_audit_log_of_the_previous_schema_is_upgraded_and_kept(tmp_path: Path) -> None:
    """A database at schema version 3, with an audit row, opens at the new version with
    the row intact (no audit id) and takes new calls."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        for number, step in enumerate(schema_steps("INTEGER PRIMARY KEY AUTOINCREMENT")[:3], 1):
            db.executescript(f"{step}; PRAGMA user_version={number};")
        db.execute("INSERT INTO actions (at, rule, account, exchange, pair, from_leverage, "
                   "to_leverage, mode, outcome, detail) VALUES (?,?,?,?,?,?,?,?,?,?)", OLD_ROW)
    _upgraded(open_store(f"sqlite:///{path}"))


def test_postgres_audit_log_of_the_previous_schema_is_upgraded_and_kept(pg_url: str) -> None:
    """The same upgrade on PostgreSQL."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("CREATE TABLE riskwatch_schema (version INTEGER)")
        for number, step in enumerate(schema_steps("BIGSERIAL PRIMARY KEY")[:3], 1):
            db.execute(step.encode())
            db.execute("INSERT INTO riskwatch_schema (version) VALUES (%s)", (number,))
        db.execute("INSERT INTO actions (at, rule, account, exchange, pair, from_leverage, "
                   "to_leverage, mode, outcome, detail) VALUES "
                   "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", OLD_ROW)
    _upgraded(open_store(pg_url))


def _upgraded(store: Store) -> None:
    try:
        [old] = store.actions()
        assert (old.account, old.outcome, old.audit_id) == ("desk-0", "acted", None)
        store.record_actions([CALL])
        store.record_outcomes([replace(CALL, outcome="acted", detail="ok")])
        assert [(d.outcome, d.audit_id) for d in store.actions()] == [("acted", None),
                                                                     ("acted", "a1")]
    finally:
        store.close()


def test_alerts_stored_before_verify_after_existed_still_load() -> None:
    """An alert written without ``verify_after`` loads with none; a set one round-trips."""
    alert = replace(_alert(), state=State.FIRING, firing_since=T0)
    old = alert_to_dict(alert)
    del old["verify_after"]
    assert alert_from_dict(json.loads(json.dumps(old))) == alert
    checked = replace(alert, verify_after=at(30))
    assert alert_from_dict(json.loads(json.dumps(alert_to_dict(checked)))) == checked
