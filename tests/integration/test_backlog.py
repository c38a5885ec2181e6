"""A Slack backlog never delays a new critical, and folding it loses no alert."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.demo.loopback import Reply
from riskwatch.notify.outbox import FOLD_BACKLOG_AT, Deliverer
from riskwatch.notify.plan import Router, plan_messages
from riskwatch.notify.sinks import SlackWebhookSink
from riskwatch.store import SqliteStore
from tests.integration.fakes import FakeSlack

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _alert(account: str, severity: str = "warning", state: State = State.FIRING) -> Alert:
    return Alert(key=AlertKey("margin", account, "ETH:PERP-USDT"), state=state,
                 severity=severity, exchange="Bybit",  # type: ignore[arg-type]
                 metric="maint_margin_ratio", value=None, threshold=None, since=T0,
                 firing_since=T0)


def test_a_churning_backlog_is_folded_and_a_new_critical_arrives_within_seconds(
    slack: FakeSlack, tmp_path: Path,
) -> None:
    """Positions opening and closing every poll while Slack refuses: 150 messages wait.
    Past 10 s they are folded into the current state of each alert (2 messages, not 150),
    every alert named with its last state; a new critical goes out seconds later."""
    store = SqliteStore(tmp_path / "state.db")
    router = Router({"webhook": SlackWebhookSink(slack.webhook_url)}, ["webhook"])
    now = [T0]
    deliverer = Deliverer(store, router, lambda: now[0])
    slack.failures = [Reply(503, b"unavailable")]
    accounts = [f"desk-{n}" for n in range(150)]
    for index, account in enumerate(accounts):  # one poll each: opened, then closed
        alert = _alert(account)
        kind = NoticeKind.FIRING
        if index % 2:
            alert, kind = replace(alert, state=State.RESOLVED), NoticeKind.RESOLVED
        planned = plan_messages([Notice(kind, alert)], router)
        store.save_poll({alert.key: alert}, [], planned.messages, now[0])

    async def go() -> int:
        now[0] += timedelta(seconds=15)  # Slack was down this long
        await deliverer.deliver_due()  # Slack refuses the first: the backlog is folded
        assert sum(store.backlogs().values()) <= 2
        assert store.outbox_summary().oldest_pending == T0  # the outage's age is kept
        critical = _alert("desk-new", "critical")
        planned = plan_messages([Notice(NoticeKind.FIRING, critical)], router)
        store.save_poll({critical.key: critical}, [], planned.messages, now[0])
        for second in range(30):
            await deliverer.deliver_due()
            if any("desk-new" in post.body["text"] for post in slack.posts()):
                return second
            now[0] += timedelta(seconds=1)
        return 30

    assert asyncio.run(go()) <= 3  # seconds after it was made, behind the folded backlog
    texts = [post.body["text"] for post in slack.posts()]
    assert len(texts) <= 3, len(texts)
    every = "\n".join(texts)
    for index, account in enumerate(accounts):
        line = next(line for line in every.splitlines() if f"`{account}`" in line)
        assert ("RESOLVED" in line) == bool(index % 2), line
    assert "desk-new" in texts[-1] and "CRITICAL" in texts[-1]
    assert "folded from 150 messages" in texts[0]
    assert len(accounts) > FOLD_BACKLOG_AT  # the scenario does pass the bound
