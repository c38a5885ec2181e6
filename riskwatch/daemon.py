"""The daemon: fetch, decide, persist, act, deliver, on an APScheduler interval.

One poll at a time (``max_instances=1``), missed runs coalesced into one after a stall,
a clean stop on SIGTERM/SIGINT, rules reloaded on SIGHUP. With a shared store only the
leader polls, acts and delivers; a standby tries to take the lead at every tick.
:meth:`Daemon.poll_once` is the run-once entry point that tests call directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from riskwatch import builtin, silences
from riskwatch.acting import Actor
from riskwatch.alerts import Alert, AlertKey
from riskwatch.errors import RiskwatchError, StoreError, TreadAuthError, TreadError
from riskwatch.evaluate import CompiledRule, Decisions, decide
from riskwatch.logs import Redactor
from riskwatch.notify.outbox import Deliverer, Router, plan_messages
from riskwatch.perf import paused_gc, release_memory
from riskwatch.rules import rule_files
from riskwatch.runtime import load_compiled_rules
from riskwatch.settings import Settings
from riskwatch.snapshot import Snapshot, only_accounts
from riskwatch.store import Store
from riskwatch.telemetry import Telemetry
from riskwatch.tread import TreadClient
from riskwatch.web import Health, WebServer

log = structlog.get_logger("riskwatch.daemon")
Clock = Callable[[], datetime]
STALL_INTERVALS = 3  # /healthz fails when the loop has not ticked for this many intervals


def utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclass
class PollReport:
    """What one poll did, for logs and tests."""

    ok: bool
    accounts: int
    notices: int
    error: str | None = None


class Daemon:
    """Wires the core to the world: client, store, actor, deliverer, endpoints."""

    def __init__(
        self, settings: Settings, rules: Sequence[CompiledRule], store: Store,
        client: TreadClient, router: Router, clock: Clock = utcnow,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.rules = list(rules)
        self.store = store
        self.client = client
        self.router = router
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        self.deliverer = Deliverer(store, router, clock, Redactor(settings.secrets()).mask,
                                   self.telemetry)
        self.actor = Actor(settings, store, client, self.telemetry)
        self.alerts: dict[AlertKey, Alert] = {}
        self.started_at = clock()
        self.last_good_data: datetime | None = None
        self.last_poll_error: str | None = "no poll yet"
        self.last_tick = time.monotonic()
        self.polls = 0
        self.leader = False
        self.stop_event = asyncio.Event()
        self.rules_error: str | None = None
        self.reload_requested = False
        self.web: WebServer | None = None
        self._rules_signature = rules_signature(settings.rules)
        self._skips_logged: set[tuple[str, str]] = set()
        self.telemetry.rules_loaded.set(len(self.rules))

    # ------------------------------------------------------------------ rules

    def request_reload(self) -> None:
        """Reload the rules before the next poll (SIGHUP)."""
        self.reload_requested = True

    def _reload_rules(self) -> None:
        """Reload when asked or when the files changed; keep the old rules if the new fail."""
        signature = rules_signature(self.settings.rules)
        if not self.reload_requested and signature == self._rules_signature:
            return
        self.reload_requested = False
        self._rules_signature = signature
        try:
            self.rules = load_compiled_rules([self.settings.rules])
        except RiskwatchError as error:
            self.rules_error = str(error)
            log.error("rules reload failed; the previous rules stay in force",
                      error=self.rules_error)
            return
        self.rules_error = None
        self.telemetry.rules_loaded.set(len(self.rules))
        log.info("rules reloaded", rules=len(self.rules))

    # ------------------------------------------------------------------ one poll

    def take_lead(self) -> bool:
        """Lead if the store lets us; a new leader starts from the stored alert states."""
        leading = self.store.try_lead()
        if leading and not self.leader:
            self.alerts = self.store.load_alerts()
            self.started_at = self.clock()  # source-down counts from the start of our lead
            log.info("leading: this process polls, notifies and acts",
                     alerts=len(self.alerts))
        elif self.leader and not leading:
            log.warning("lost the lead; standing by")
        self.leader = leading
        self.deliverer.active = leading
        self.telemetry.leader.set(1 if leading else 0)
        return leading

    async def poll_once(self) -> PollReport:
        """Run one poll: fetch, evaluate, act, store, and wake the deliverer."""
        if not self.leader and not self.take_lead():
            return PollReport(False, 0, 0, "standing by")
        started = time.monotonic()
        now = self.clock()
        self._reload_rules()
        outcome = await self._fetch(now)
        observations = builtin.observe(outcome, now, self.settings.stale_limit)
        observations.append(builtin.rules_invalid(self.rules_error))
        with paused_gc():
            decisions = decide(self.rules, outcome.snapshot, self.alerts, now, observations)
        self._log_poll(outcome, decisions)
        muting = self.store.silences()
        await self.actor.act(self.rules, decisions, self.alerts, outcome.snapshot, muting, now)
        notices = silences.apply(decisions.notices, self.alerts, decisions.changed, muting, now)
        messages = plan_messages(notices, decisions.changed, self.router)
        self.store.save_poll(decisions.changed, decisions.dropped, messages, now)
        for key in decisions.dropped:
            self.alerts.pop(key, None)
        self.alerts.update(decisions.changed)
        self.polls += 1
        if messages:
            self.deliverer.wake.set()
        self._measure(outcome, decisions, time.monotonic() - started)
        accounts = len(outcome.snapshot.accounts) if outcome.snapshot else 0
        report = PollReport(outcome.snapshot is not None, accounts, len(decisions.notices),
                            outcome.error)
        del outcome
        release_memory()
        return report

    async def _fetch(self, now: datetime) -> builtin.PollOutcome:
        watched = self.settings.watched
        try:
            snapshot = await self.client.snapshot(
                self.settings.source, now, sorted(watched) if watched else None)
        except TreadAuthError as error:
            log.error("poll failed", error=str(error))
            self.last_poll_error = str(error)
            return builtin.PollOutcome(None, str(error), auth_failed=True,
                                       last_good_data=self._last_good())
        except TreadError as error:
            log.warning("poll failed", error=str(error))
            self.last_poll_error = str(error)
            return builtin.PollOutcome(None, str(error), last_good_data=self._last_good())
        snapshot = only_accounts(snapshot, watched)
        self.last_good_data = _newest_data(snapshot, now)
        self.last_poll_error = None
        return builtin.PollOutcome(snapshot, last_good_data=self.last_good_data)

    def _last_good(self) -> datetime:
        return self.last_good_data or self.started_at

    def _measure(self, outcome: builtin.PollOutcome, decisions: Decisions,
                 seconds: float) -> None:
        metrics = self.telemetry
        result = "ok" if outcome.snapshot else ("auth_error" if outcome.auth_failed else "error")
        metrics.polls.labels(result).inc()
        metrics.poll_duration.observe(seconds)
        if outcome.snapshot is not None:
            metrics.last_success.set(time.time())
        metrics.count_alerts(self.alerts.values())
        for skip in decisions.skipped:
            metrics.skips.labels(skip.rule).inc()

    def _log_poll(self, outcome: builtin.PollOutcome, decisions: Decisions) -> None:
        snapshot = outcome.snapshot
        if snapshot is not None:
            for problem in snapshot.problems:
                log.warning("account problem", account=problem.account, symbol=problem.symbol,
                            exchange=problem.exchange, problem=problem.message,
                            raw=repr(problem.raw)[:300])
        for skip in decisions.skipped:
            if (skip.rule, skip.account) not in self._skips_logged:
                self._skips_logged.add((skip.rule, skip.account))
                log.info("rule skipped a row with unknown inputs", rule=skip.rule,
                         account=skip.account, symbol=skip.symbol or None)
        for notice in decisions.notices:
            alert = notice.alert
            log.info("alert " + notice.kind.value, rule=alert.key.rule,
                     account=alert.key.account or None, symbol=alert.key.symbol or None,
                     severity=alert.severity, value=str(alert.value))

    # ------------------------------------------------------------------ health

    def alive(self) -> tuple[bool, str]:
        """The loop ticked within the last three poll intervals."""
        silent = time.monotonic() - self.last_tick
        limit = STALL_INTERVALS * self.settings.poll_interval.total_seconds()
        if silent > limit:
            return False, f"the poll loop has not run for {silent:.0f}s"
        return True, ""

    def not_ready(self) -> list[str]:
        """Why this process is not ready to be trusted (empty when it is)."""
        reasons = []
        if not self.leader:
            reasons.append("standby: another replica leads")
        elif self.last_poll_error:
            reasons.append(f"last poll failed: {self.last_poll_error}")
        if self.rules_error:
            reasons.append(f"rules invalid (previous rules in force): {self.rules_error}")
        if not self.rules:
            reasons.append("no rules loaded")
        if self.deliverer.permanent_error:
            reasons.append(f"Slack refuses delivery: {self.deliverer.permanent_error}")
        return reasons

    # ------------------------------------------------------------------ the loop

    async def run(self, cycles: int | None = None) -> None:
        """Poll on schedule until stopped by a signal or after ``cycles`` polls."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.settings.http != "off":
            self.web = WebServer(self.settings.http, Health(self.alive, self.not_ready),
                                 self.telemetry)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._tick, "interval", args=[cycles],
            seconds=self.settings.poll_interval.total_seconds(),
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
            misfire_grace_time=None, id="poll",
        )
        delivery = asyncio.create_task(self.deliverer.run(self.stop_event))
        scheduler.start()
        gc.freeze()  # what start-up made lives for good: keep it out of every collection
        log.info("riskwatch running", rules=len(self.rules), source=self.settings.source,
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
        try:
            await asyncio.wait_for(delivery, timeout=5)
        except TimeoutError:
            log.warning("stopping with messages still being sent; they wait in the store")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.deliverer.deliver_due(), timeout=3)
        if self.web is not None:
            self.web.close()
        self.store.release_lead()
        log.info("riskwatch stopped", polls=self.polls)

    async def _tick(self, cycles: int | None) -> None:
        self.last_tick = time.monotonic()
        if self.stop_event.is_set():
            return
        try:
            self.take_lead()
            if self.leader:
                await self.poll_once()
        except StoreError as error:  # the store is down: stand by until it is back
            log.error("state store failed; standing by", error=str(error))
            self.leader = self.deliverer.active = False
        except Exception:  # the loop must survive any one bad poll
            log.exception("poll crashed")
        if cycles is not None and self.polls >= cycles:
            self.stop_event.set()


def rules_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the rule files: a change means reload."""
    try:
        files = rule_files([path]) if path.exists() else []
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()


def _newest_data(snapshot: Snapshot, now: datetime) -> datetime:
    times = [account.taken_at for account in snapshot.accounts if account.taken_at is not None]
    return max(times) if times else now
