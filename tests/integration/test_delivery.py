"""The outbox against a loopback fake Slack: retries, Retry-After, permanent errors, restarts.

The deliverer runs round by round on a fake clock (``deliver_due`` says how long until the
next message is due, and the clock jumps there): the waits are Slack's and the backoff's,
not the test's."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.demo.loopback import Reply
from riskwatch.notify.outbox import Deliverer
from riskwatch.notify.plan import Router, plan_messages
from riskwatch.notify.sinks import SlackWebhookSink, SlackWebSink
from riskwatch.service.daemon import utcnow
from riskwatch.store import SqliteStore
from tests.helpers import closed_port
from tests.integration.fakes import FakeSlack
from tests.integration.scenario import Clock


def _notice(account: str) -> Notice:
    alert = Alert(key=AlertKey("margin", account, "ETH:PERP-USDT"), state=State.FIRING,
                  severity="warning", exchange="Bybit", metric="maint_margin_ratio", value=None,
                  threshold=None, since=utcnow(), firing_since=utcnow())
    return Notice(NoticeKind.FIRING, alert)


def _webhook_router(slack: FakeSlack) -> Router:
    return Router({"webhook": SlackWebhookSink(slack.webhook_url)}, ["webhook"])


def _enqueue(store: SqliteStore, router: Router, *accounts: str) -> None:
    for account in accounts:
        store.save_poll({}, [], plan_messages([_notice(account)], router).messages, utcnow())


def _deliver_for(deliverer: Deliverer, clock: Clock, seconds: float) -> None:
    """Delivery rounds for ``seconds`` of the fake clock, which jumps to each next due time."""
    async def rounds() -> None:
        end = clock.now + timedelta(seconds=seconds)
        while clock.now < end:
            due_in = await deliverer.deliver_due()
            left = (end - clock.now).total_seconds()
            clock.advance(left if due_in is None else min(max(due_in, 0.001), left))

    asyncio.run(rounds())


def test_429_with_retry_after_is_honoured_and_sent_once(slack: FakeSlack, tmp_path: Path) -> None:
    """Slack answers 429 Retry-After: 2; the message arrives once, at least 2 s later."""
    store = SqliteStore(tmp_path / "state.db")
    router = _webhook_router(slack)
    slack.failures.append(Reply(429, b"rate_limited", {"Retry-After": "2"}))
    _enqueue(store, router, "desk-1")
    clock = Clock(slack=slack)
    started = clock.timestamp()
    _deliver_for(Deliverer(store, router, clock), clock, 3.5)
    [post] = slack.posts()
    assert post.at - started >= 2.0
    assert len(slack.attempts) == 2 and store.outbox() == []


def test_messages_wait_through_an_outage_and_arrive_in_order_once(
    slack: FakeSlack, tmp_path: Path,
) -> None:
    """5xx answers keep messages in the store; after recovery all arrive, in order, once."""
    store = SqliteStore(tmp_path / "state.db")
    router = _webhook_router(slack)
    slack.failures.extend([Reply(503, b"unavailable"), Reply(500, b"oops")])
    _enqueue(store, router, "desk-1", "desk-2", "desk-3")
    clock = Clock(slack=slack)
    _deliver_for(Deliverer(store, router, clock), clock, 8)
    accounts = [p.body["text"].split("account `")[1][:6] for p in slack.posts()]
    assert accounts == ["desk-1", "desk-2", "desk-3"]
    gaps = [b.at - a.at for a, b in zip(slack.posts(), slack.posts()[1:], strict=False)]
    assert min(gaps) >= 0.95  # at most one message per second per channel


def test_permanent_error_is_kept_reported_and_not_retried(slack: FakeSlack, tmp_path: Path) -> None:
    """invalid_auth is permanent: no retry, the message stays in the store as failed."""
    store = SqliteStore(tmp_path / "state.db")
    router = Router({"slack:#risk": SlackWebSink("xoxb-bad", "#risk", slack.api_url)},
                    ["slack:#risk"])
    slack.failures.append(Reply.json({"ok": False, "error": "invalid_auth"}))
    _enqueue(store, router, "desk-1")
    clock = Clock(slack=slack)
    deliverer = Deliverer(store, router, clock)
    _deliver_for(deliverer, clock, 1.5)
    assert len(slack.attempts) == 1 and slack.posts() == []
    [failed] = store.outbox("failed")
    assert failed.last_error == "invalid_auth"
    assert deliverer.permanent_error == "slack:#risk: invalid_auth"


def test_waiting_messages_survive_a_restart(slack: FakeSlack, tmp_path: Path) -> None:
    """A message stored while Slack was down is sent by the next process that opens the store."""
    store = SqliteStore(tmp_path / "state.db")
    router = _webhook_router(slack)
    slack.failures.extend([Reply(500, b"down")] * 3)
    _enqueue(store, router, "desk-1")
    clock = Clock(slack=slack)
    _deliver_for(Deliverer(store, router, clock), clock, 0.5)
    store.close()
    assert slack.posts() == []
    slack.failures.clear()
    reopened = SqliteStore(tmp_path / "state.db")
    _deliver_for(Deliverer(reopened, router, clock), clock, 3)
    assert len(slack.posts()) == 1


def test_network_error_is_retried(tmp_path: Path) -> None:
    """An unreachable Slack is a retryable failure: the message waits with its error."""
    store = SqliteStore(tmp_path / "state.db")
    hook = f"http://127.0.0.1:{closed_port()}/hook"
    router = Router({"webhook": SlackWebhookSink(hook)}, ["webhook"])
    _enqueue(store, router, "desk-1")
    clock = Clock()
    _deliver_for(Deliverer(store, router, clock), clock, 0.5)
    [waiting] = store.outbox()
    assert waiting.attempts >= 1 and waiting.last_error is not None
    assert waiting.last_error.startswith("network:")
