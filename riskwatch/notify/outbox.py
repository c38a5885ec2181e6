"""The outbox: notices become stored messages, and stored messages are delivered at least once.

A poll's notices are grouped into one message per destination (and per Slack thread), and
written to the state store in the same transaction as the alert changes. The
:class:`Deliverer` sends waiting messages in order, one destination at a time, at most one
post per second per channel, retrying network errors, 5xx and 429 with backoff (honouring
``Retry-After``); a message leaves the store only when its destination accepted it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from riskwatch.core import interactions
from riskwatch.core.lifecycle import RANK, Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.silences import silenced
from riskwatch.errors import NotLeading
from riskwatch.notify import blocks, render
from riskwatch.notify.plan import Router, fill
from riskwatch.notify.sinks import UPDATE_REFUSED, Delivery, Sink
from riskwatch.service.telemetry import Telemetry
from riskwatch.store import NewMessage, OutboxRow, Store
from riskwatch.store.codec import notice_from_dict, notice_to_dict

log = structlog.get_logger("riskwatch.notify")

MIN_POST_INTERVAL = timedelta(seconds=1)
# Past this many messages waiting for one destination (Slack takes one a second per
# channel), what waits is folded into the current state of every alert it covers, so
# that a new critical never queues behind a backlog.
FOLD_BACKLOG_AT = 20
FOLD_AFTER = timedelta(seconds=10)  # a burst of one big poll goes out as it is, at first
MAX_BACKOFF = timedelta(seconds=30)


def _urgency(notice: Notice) -> tuple[int, int]:
    """Firing before resolved, critical before warning before info."""
    resolved = notice.kind is NoticeKind.RESOLVED
    return (1 if resolved else 0, -RANK.get(notice.alert.severity, 0))


def backoff(attempts: int) -> timedelta:
    """1s, 2s, 4s ... capped at 30 s, so a recovered Slack hears from us soon."""
    return min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)


class Deliverer:
    """Sends what waits in the outbox; wakes when a poll adds messages."""

    def __init__(self, store: Store, router: Router,
                 clock: Callable[[], datetime], mask: Callable[[str], str] = str,
                 telemetry: Telemetry | None = None, operators: Sequence[str] = (),
                 public_url: str | None = None) -> None:
        self.store = store
        # alerts link to their account's status page when the desk can reach it
        self.link = blocks.status_link(public_url) if public_url else None
        # who may click: firing messages through the Web API carry buttons when set
        self.operators = tuple(operators)
        self.telemetry = telemetry or Telemetry()
        self.active = True  # a standby replica keeps its hands off the outbox
        self.mask = mask  # the last guard: no secret leaves in a message
        self.router = router
        self.clock = clock
        self.wake = asyncio.Event()
        self.last_post: dict[str, datetime] = {}
        self.permanent_error: str | None = None
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set."""
        while not stop.is_set():
            try:
                delay = await self.deliver_due()
            except Exception as error:  # the store or a bug: try again soon, never stop
                log.error("delivery round failed; trying again", error=str(error)[:300])
                delay = 1.0
            self.wake.clear()
            waiter = asyncio.ensure_future(self.wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=delay,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def deliver_due(self) -> float | None:
        """Send every message that is due; return seconds until the next one (None: none)."""
        if self.active:
            self._fold_backlogs(self.clock())  # once a round, not once per message sent
        while True:
            if not self.active:
                return None
            now = self.clock()
            waits: list[float] = []
            progressed = False
            for row in self._heads():
                ready_at = self._ready_at(row)
                if ready_at > now:
                    waits.append((ready_at - now).total_seconds())
                    continue
                try:
                    await self._deliver(row)
                except NotLeading:
                    self.active = False  # deposed: the new leader sends; the daemon notices
                    return None
                progressed = True
            if not progressed:
                return min(waits) if waits else None

    async def send_now(self, notices: Sequence[Notice]) -> bool:
        """Post ``notices`` to every default destination at once, bypassing the outbox.

        For what cannot wait in the state store because the store itself fails
        (``store-failed``). True when every destination accepted it.
        """
        now = self.clock()
        delivered = True
        for destination in self.router.default:
            sink = self.router.sink(destination)
            body, shown = self._render(sink, notices, now)
            try:
                result = await sink.post(self.mask(body), None, blocks=shown)
            except Exception as error:  # a sink must not stop the others
                result = Delivery(ok=False, error=type(error).__name__)
            if not result.ok:
                delivered = False
                log.error("direct delivery failed", destination=destination,
                          error=result.error)
        return delivered

    def oldest_waiting(self, now: datetime) -> float:
        """Seconds the oldest message still waiting for its destination has waited (0: none)."""
        heads = self._heads()
        if not heads:
            return 0.0
        return max(0.0, max((now - row.created_at).total_seconds() for row in heads))

    def _fold_backlogs(self, now: datetime) -> None:
        """Fold each destination's backlog, once it passes FOLD_BACKLOG_AT messages and its
        oldest has waited FOLD_AFTER, into the current state of every alert it covers:
        nothing is lost, and the newest state goes first."""
        for destination, waiting in self.store.backlogs().items():
            if waiting <= FOLD_BACKLOG_AT:
                continue
            rows = self.store.backlog(destination)
            if not rows or now - rows[0].created_at < FOLD_AFTER:
                continue
            notices = self._current_states(rows)
            messages = [
                NewMessage(uuid.uuid4().hex, destination,
                           {"notices": [notice_to_dict(n) for n in chunk], "thread": None,
                            "compact": True, "folded": len(rows)})
                for chunk in fill(notices, render.MAX_LINES_PER_MESSAGE, compact=True)
            ]
            self.store.fold(rows, messages, now)
            self.telemetry.folded.inc(len(rows))
            log.warning("Slack backlog folded into the current state of its alerts",
                        destination=destination, waiting=len(rows), alerts=len(notices),
                        messages=len(messages))

    def _current_states(self, rows: Sequence[OutboxRow]) -> list[Notice]:
        """One notice per alert the rows mention: where it stands now, most urgent first."""
        latest: dict[AlertKey, Notice] = {}
        for row in rows:
            for data in row.payload.get("notices", []):
                notice = notice_from_dict(data)
                latest[notice.alert.key] = notice
        current: list[Notice] = []
        for key, notice in latest.items():
            alert = self.store.alert(key) or notice.alert  # dropped since: as last told
            if alert.state is State.PENDING:
                continue  # it never fired, or fired and cleared into a new pending breach
            kind = NoticeKind.RESOLVED if alert.state is State.RESOLVED else NoticeKind.FIRING
            current.append(Notice(kind, alert))
        current.sort(key=_urgency)
        return current

    def _heads(self) -> list[OutboxRow]:
        """The oldest waiting message of each destination (later ones wait: order is kept)."""
        return self.store.outbox_heads()

    def _ready_at(self, row: OutboxRow) -> datetime:
        due = row.next_attempt_at or row.created_at
        if "update" in row.payload or self.router.sink(row.destination).markup != "slack":
            return due  # Slack's one-post-per-second limit is for posts to Slack only
        last = self.last_post.get(row.destination)
        return max(due, last + MIN_POST_INTERVAL) if last else due

    async def _deliver(self, row: OutboxRow) -> None:
        self.store.check_lead()  # a deposed leader must not send what the new one sends
        sink = self.router.sink(row.destination)
        if "update" in row.payload:
            result = await self._update(sink, str(row.payload["update"]))
        else:
            result = await self._post(sink, row)
            self.last_post[row.destination] = self.clock()
        self._settle(row, result)

    async def _post(self, sink: Sink, row: OutboxRow) -> Delivery:
        notices = [notice_from_dict(n) for n in row.payload["notices"]]
        body, shown = self._render(sink, notices, self.clock(),
                                   compact=bool(row.payload.get("compact")),
                                   folded=int(row.payload.get("folded") or 0))
        thread_ts = None
        parent = row.payload.get("thread")
        if parent:
            landed = self.store.slack_message(str(parent))
            thread_ts = landed.ts if landed else None
        return await sink.post(self.mask(body), thread_ts, blocks=shown)

    def _render(self, sink: Sink, notices: Sequence[Notice], now: datetime, *,
                compact: bool = False, folded: int = 0) -> tuple[str, list[blocks.Block] | None]:
        """The text and, for Slack, the masked Block Kit blocks of a message."""
        if sink.markup != "slack":
            return render.terminal_message(notices, now), None
        slack = blocks.message(notices, now, compact=compact, folded=folded,
                               buttons=blocks.shows_buttons(sink.threads, self.operators),
                               link=self.link)
        return slack.text, blocks.masked(slack.blocks, self.mask)

    async def _update(self, sink: Sink, parent: str) -> Delivery:
        landed = self.store.slack_message(parent)
        if landed is None:
            return Delivery(ok=True)  # the firing message never reached the Web API
        alerts = [alert for key in landed.keys if (alert := self.store.alert(key)) is not None]
        if not alerts:
            return Delivery(ok=True)
        now = self.clock()
        buttons = blocks.shows_buttons(sink.threads, self.operators)
        if buttons:  # clicks since the last poll show at once
            alerts = self._as_clicked(alerts, now)
        slack = blocks.current_state(alerts, now, buttons=buttons, link=self.link)
        body, shown = slack.text, blocks.masked(slack.blocks, self.mask)
        result = await sink.update(landed.channel, landed.ts, self.mask(body), blocks=shown)
        if not result.ok and result.error in UPDATE_REFUSED:
            # the firing message is gone or too old to edit: say the same in a new message
            log.info("slack refused the in-place update; posting the state anew",
                     error=result.error, message=parent)
            return await sink.post(self.mask(body), None, blocks=shown)
        return result

    def _as_clicked(self, alerts: Sequence[Alert], now: datetime) -> list[Alert]:
        """``alerts`` with the acknowledgement in force and whether a silence mutes them
        now (the *Unsilence* button), as the store holds them: a click is stored at once,
        the poll folds it into the alert later."""
        acks = self.store.acknowledgements()
        muting = [silence for silence in self.store.silences() if silence.active(now)]
        return [replace(interactions.shown(alert, acks),
                        muted=silenced(alert.key, muting, now)) for alert in alerts]

    def _settle(self, row: OutboxRow, result: Delivery) -> None:
        now = self.clock()
        if result.ok:
            self.store.delivered(row, result.channel, result.ts, now)
            self.sent += 1
            self.telemetry.notifications.labels("sent").inc()
            if self.permanent_error and self.permanent_error.startswith(f"{row.destination}:"):
                self.permanent_error = None  # that destination works again
            log.debug("delivered", destination=row.destination, message=row.id)
            return
        error = result.error or "unknown error"
        if result.retryable:
            wait = (timedelta(seconds=result.retry_after) if result.retry_after is not None
                    else backoff(row.attempts))
            self.store.retry_later(row, now + wait, error)
            self.telemetry.notifications.labels("retry").inc()
            log.warning("delivery failed, will retry", destination=row.destination,
                        error=error, retry_in=wait.total_seconds(), attempts=row.attempts + 1)
            return
        self.permanent_error = self.mask(f"{row.destination}: {error}")
        self.store.refused(row, error)
        self.telemetry.notifications.labels("failed").inc()
        log.error("delivery refused permanently; message kept as failed",
                  destination=row.destination, error=error, message=row.id)
