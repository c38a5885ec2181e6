"""One value of every kind the state store keeps, with the awkward cases money and time allow.

``tests/fixtures/store/v6.db`` holds exactly these values, written by the store codec as
it was before msgspec (hand-written dicts and ``json.dumps``, schema version 6) through
:func:`write_all`; the tests read that file with the current code to prove that stores
written by earlier releases still load.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, SilenceNote, State
from riskwatch.core.silences import Silence
from riskwatch.store import NewMessage, Store
from riskwatch.store.codec import notice_to_dict

T0 = datetime(2026, 1, 22, 10, 0, 0, tzinfo=UTC)
FIXED_NOW = T0 + timedelta(minutes=5)  # the time the rows were written
LATER = datetime(2099, 1, 1, tzinfo=UTC)  # silences that are still in force when tests run

# an alert with every optional field set, and numbers that a float would change
FULL = Alert(
    key=AlertKey("pos-margin", "desk-1", "ETH:PERP-USDT"), state=State.FIRING,
    severity="critical", exchange="Bybit", metric="maint_margin_ratio",
    value=Decimal("1E-7"), threshold=Decimal("-0.1400000000000000000000"),
    since=T0 + timedelta(microseconds=123456), firing_since=T0, cleared_at=T0,
    last_notified_at=T0 + timedelta(seconds=30), description="Margin is eaten",
    runbook="https://wiki.example/margin?a=1&b=<2>", detail="ünïcode \"quoted\" \n line",
    thread="0123abcd", when="below", muted=True, action="acted: lowered to 3",
    verify_after=datetime(2026, 1, 22, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    scope="position",
)
# an alert with every optional field left out, unknown numbers
BARE = Alert(
    key=AlertKey("source-down", "", ""), state=State.PENDING, severity="warning",
    exchange="", metric="data_age", value=None, threshold=None, since=T0,
)
RESOLVED = Alert(
    key=AlertKey("acct-eff-lev", "desk-2"), state=State.RESOLVED, severity="info",
    exchange="Binance", metric="effective_leverage", value=Decimal("10.000"),
    threshold=Decimal(10), since=T0, firing_since=None, last_notified_at=T0,
    scope="account", detail="no longer reported (closed)",
)
ALERTS = (FULL, BARE, RESOLVED)

NOTICES = (
    Notice(NoticeKind.FIRING, FULL),
    Notice(NoticeKind.ESCALATED, FULL, previous_severity="warning", channel="#risk"),
    Notice(NoticeKind.DEESCALATED, RESOLVED, previous_severity="critical"),
    Notice(NoticeKind.REMINDER, BARE),
    Notice(NoticeKind.RESOLVED, RESOLVED, previous_severity="info"),
    Notice(NoticeKind.ACTION_CHECK, FULL, channel="#ops"),
)
# the notices that tell of a silence in an alert's thread (newer than the previous codec)
SILENCE_NOTICE = SilenceNote("slack-0123456789", "slack:<@U0OPS|ops>", FULL.since, LATER,
                             "silenced from Slack for 1h", ended_by="someone")
SILENCE_NOTICES = tuple(Notice(kind, FULL, silence=SILENCE_NOTICE)
                        for kind in (NoticeKind.SILENCED, NoticeKind.SILENCE_ENDING,
                                     NoticeKind.SILENCE_ENDED))

SILENCES = (
    Silence("abc12345", "pos-*", "desk-1", None, T0, LATER, "rebalancing", T0, "ana"),
    Silence("def67890", "*", None, "BTC*", T0, T0 + timedelta(hours=1), "", T0, ""),
)

DECISIONS = (
    Decision(T0, "pos-margin", "desk-1", "Bybit", "ETH:PERP-USDT", Decimal("12.5"),
             Decimal(3), "enforce", "acted", "{\"ok\": true}", audit_id="a1"),
    Decision(T0 + timedelta(seconds=1), "pos-margin", "desk-1", "Bybit", "BTC:PERP-USDT",
             None, Decimal("0.5E+1"), "dry-run", "skipped", "unknown current leverage"),
)


def write_all(store: Store) -> None:
    """Write every value above into ``store`` through its public methods, the notices in an
    outbox message shaped as the delivery plan makes them."""
    notices = [notice_to_dict(notice) for notice in NOTICES]
    store.save_poll({alert.key: alert for alert in ALERTS}, [],
                    [NewMessage("m1", "slack:#risk",
                                {"notices": notices, "thread": None, "compact": False}),
                     NewMessage("m2", "slack:#risk", {"update": "m1"})], FIXED_NOW)
    for silence in SILENCES:
        store.add_silence(silence)
    store.record_actions(DECISIONS)
