"""The service loop: lead, poll, watch the store and outbox, on an APScheduler interval.

One poll at a time (``max_instances=1``), missed runs coalesced into one after a stall,
a clean stop on SIGTERM/SIGINT, rules reloaded on SIGHUP. With a shared store only the
leader polls, acts and delivers; a standby tries to take the lead at every tick.
:meth:`Daemon.tick_once` and :meth:`Daemon.poll_once` are the run-once entry points
that tests call directly. The parts it wires: :class:`~riskwatch.service.poll.Poll`,
:class:`~riskwatch.service.rule_source.RuleSource`,
:class:`~riskwatch.service.leadership.Leadership` and
:class:`~riskwatch.service.health.ServiceHealth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from riskwatch.config.logs import Redactor
from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts
from riskwatch.core.evaluate import CompiledRule
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.errors import NotLeading, StoreError
from riskwatch.notify.outbox import Deliverer
from riskwatch.notify.plan import Router
from riskwatch.service.health import ServiceHealth, Watch
from riskwatch.service.heartbeat import Heartbeat
from riskwatch.service.http import Health, WebServer
from riskwatch.service.leadership import Leadership
from riskwatch.service.leverage_actor import Actor
from riskwatch.service.poll import Clock, Monotonic, Poll, PollReport, describe
from riskwatch.service.rule_source import RuleSource
from riskwatch.service.status import StatusPages
from riskwatch.service.telemetry import Telemetry
from riskwatch.source.client import TreadClient
from riskwatch.store import Store, open_store
from riskwatch.store.base import Retention

if TYPE_CHECKING:
    from riskwatch.service.interactions import SlackInteractions

log = structlog.get_logger("riskwatch.daemon")
PRUNE_EVERY = timedelta(hours=1)

__all__ = ["Daemon", "PollReport", "utcnow"]


def utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class Daemon:
    """The running service: its parts, and the loop that drives them."""

    def __init__(
        self, settings: Settings, rules: Sequence[CompiledRule], store: Store,
        client: TreadClient, router: Router, clock: Clock = utcnow,
        telemetry: Telemetry | None = None, monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.router = router
        self.clock = clock
        self.telemetry = telemetry = telemetry or Telemetry()
        self.deliverer = Deliverer(store, router, clock, Redactor(settings.secrets()).mask,
                                   telemetry, settings.slack_operators
                                   if settings.slack_buttons else (), settings.public_url)
        self.rule_source = RuleSource(settings.rules, rules, telemetry)
        self.leadership = Leadership(store, self.deliverer, telemetry)
        self.poll = Poll(settings, self.rule_source, store, client, router,
                         Actor(settings, store, client, telemetry), telemetry, clock,
                         monotonic, self.deliverer.wake.set)
        self.watch = Watch(last_tick=monotonic())
        self.health = ServiceHealth(settings, self.poll, self.rule_source, self.leadership,
                                    self.deliverer, self.watch, clock, monotonic)
        self.monotonic = monotonic
        self.stop_event = asyncio.Event()
        self.web: WebServer | None = None
        self.heartbeat = (Heartbeat(settings.heartbeat_url.get_secret_value(),
                                    settings.deadline.total_seconds(), telemetry)
                          if settings.heartbeat_url is not None else None)
        self._store_failed_since: datetime | None = None
        self._beat_for: datetime | None = None  # a good poll whose messages are not yet out
        self._beat_ready = False
        self._pruned_at: datetime | None = None
        # buttons and /riskwatch over Socket Mode, on every replica (a click only writes
        # the store; the leader's deliverer shows it)
        self.interactions: SlackInteractions | None = None
        if settings.slack_app_token is not None:
            from riskwatch.service.interactions import SlackInteractions  # Bolt: only if used

            self.interactions = SlackInteractions(settings, store, clock,
                                                  self.deliverer.wake.set,
                                                  lambda: self.rule_source.rules)

    # ------------------------------------------------------------------ the parts' state

    @property
    def alerts(self) -> dict[AlertKey, Alert]:
        """The alerts as the last poll left them."""
        return self.poll.alerts

    @property
    def leader(self) -> bool:
        """Whether this process leads."""
        return self.leadership.leading

    @property
    def polls(self) -> int:
        """Polls run by this process."""
        return self.poll.count

    def request_reload(self) -> None:
        """Reload the rules before the next poll (SIGHUP)."""
        self.rule_source.request_reload()

    def alive(self) -> tuple[bool, str]:
        """/healthz: the loop ticked within the last three poll intervals."""
        return self.health.alive()

    def not_ready(self) -> list[str]:
        """/readyz: why this process is not ready to be trusted (empty when it is)."""
        return self.health.not_ready()

    def warnings(self) -> list[str]:
        """/readyz: what is wrong with the data but not with this process."""
        return self.health.warnings()

    def role(self) -> str:
        """``leader`` or ``standby``."""
        return self.leadership.role()

    # ------------------------------------------------------------------ one tick

    def take_lead(self) -> bool:
        """Lead if the store lets us; a new leader starts from the stored alert states."""
        if self.leadership.claim():
            self.poll.take_over()
        return self.leadership.leading

    async def poll_once(self) -> PollReport:
        """Run one poll (after taking the lead, if this process does not lead yet)."""
        if not self.leader and not self.take_lead():
            return PollReport(False, 0, 0, "standing by")
        report = await self.poll.run()
        if report.ok:
            self._beat_for = self.poll.last_success
        return report

    async def tick_once(self) -> None:
        """One tick of the loop: lead if possible, poll, and watch the store and outbox."""
        try:
            self.take_lead()
            if self.leader:
                await self.poll_once()
                self._prune()
                self._watch_outbox()
                await self._store_works()
                self._beat()
        except NotLeading as error:  # fenced: this poll saved, sent and did nothing
            log.warning("lost the lead during a poll; standing by", error=str(error))
            self.leadership.step_down()
        except StoreError as error:  # nothing is lost: the poll runs again next tick
            await self._store_fails(str(error))
        except Exception as error:  # the loop must survive any one bad poll, and say so
            self.poll.failed(f"unexpected error: {describe(error)}", traceback=True)
            self.telemetry.polls.labels("error").inc()

    def _prune(self) -> None:
        """Once an hour, drop what the store no longer needs (Store.prune documents what)."""
        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        removed = self.store.prune(now, Retention(history_raw=self.settings.history_raw,
                                                   history=self.settings.history_keep))
        self.poll.history.trim(now)
        if removed:
            log.info("state store pruned", rows=removed)

    def _watch_outbox(self) -> None:
        """Waiting and refused messages, and the age of the oldest, for /metrics and /readyz."""
        summary = self.store.outbox_summary()
        oldest = summary.oldest_pending
        waited = (self.clock() - oldest).total_seconds() if oldest else 0.0
        self.watch.oldest_waiting = max(0.0, waited)
        self.telemetry.oldest_waiting.set(self.watch.oldest_waiting)
        self.telemetry.outbox.labels("pending").set(summary.pending)
        self.telemetry.outbox.labels("failed").set(summary.failed)
        if summary.pending:  # also what a click on another replica left for the leader
            self.deliverer.wake.set()
        if self._beat_for is not None and (oldest is None or oldest > self._beat_for):
            self._beat_ready = True

    def _beat(self) -> None:
        """Call the heartbeat once a good poll's messages have all been handed to Slack."""
        if not self._beat_ready:
            return
        self._beat_ready = False
        self._beat_for = None
        if self.heartbeat is not None:
            firing = sum(1 for alert in self.alerts.values() if alert.state is State.FIRING)
            self.heartbeat.beat({"status": "ok", "polls": self.polls, "firing": firing,
                                 "waiting_messages": 0})

    async def _store_fails(self, error: str) -> None:
        """Stand back until the store works; tell the desk at once, past the store."""
        log.error("state store failed; retrying next tick (nothing is lost)", error=error)
        self.leadership.step_down()  # the next lead reloads the stored state
        if self.watch.store_error is None:
            now = self.clock()
            self._store_failed_since = now
            await self.deliverer.send_now([builtin_alerts.store_failed_notice(error, now, now)])
        self.watch.store_error = error

    async def _store_works(self) -> None:
        if self.watch.store_error is None:
            return
        log.info("state store works again", was=self.watch.store_error)
        now = self.clock()
        since = self._store_failed_since or now
        notice = builtin_alerts.store_failed_notice(self.watch.store_error, since, now,
                                                    resolved=True)
        self.watch.store_error = self._store_failed_since = None
        await self.deliverer.send_now([notice])

    # ------------------------------------------------------------------ the loop

    async def run(self, cycles: int | None = None) -> None:
        """Poll on schedule until stopped by a signal or after ``cycles`` polls."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.settings.http != "off":
            token = self.settings.http_token
            state = self.settings.state
            pages = StatusPages(lambda: open_store(state), lambda: self.rule_source.rules,
                                self.clock)
            self.web = WebServer(self.settings.http,
                                 Health(self.alive, self.not_ready, self.role, self.warnings),
                                 self.telemetry, pages=pages,
                                 token=token.get_secret_value() if token else None)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._tick, "interval", args=[cycles],
            seconds=self.settings.poll_interval.total_seconds(),
            next_run_time=self.clock(), max_instances=1, coalesce=True,
            misfire_grace_time=None, id="poll",
        )
        delivery = asyncio.create_task(self.deliverer.run(self.stop_event))
        if self.interactions is not None:
            await self.interactions.start()
        scheduler.start()
        gc.freeze()  # what start-up made lives for good: keep it out of every collection
        log.info("riskwatch running", rules=len(self.rule_source.rules),
                 source=self.settings.source,
                 interval=self.settings.poll_interval.total_seconds(),
                 http=self.web.url if self.web else "off")
        try:
            await self.stop_event.wait()
        finally:
            scheduler.shutdown(wait=False)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            await self._finish(delivery)

    async def _finish(self, delivery: asyncio.Task[None]) -> None:
        """Let the deliverer send what is due for a moment; what is left waits in the store."""
        if self.interactions is not None:
            await self.interactions.stop()
        try:
            await asyncio.wait_for(delivery, timeout=5)
        except TimeoutError:
            log.warning("stopping with messages still being sent; they wait in the store")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.deliverer.deliver_due(), timeout=3)
        if self.web is not None:
            self.web.close()
        if self.heartbeat is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heartbeat.wait(), timeout=3)
        self.store.release_lead()
        log.info("riskwatch stopped", polls=self.polls)

    async def _tick(self, cycles: int | None) -> None:
        self.watch.last_tick = self.monotonic()
        if self.stop_event.is_set():
            return
        try:
            await self.tick_once()
        except asyncio.CancelledError:  # a stop cut the poll short: not an error to log
            log.debug("poll cut short by the stop")
            return
        if cycles is not None and self.polls >= cycles:
            self.stop_event.set()
