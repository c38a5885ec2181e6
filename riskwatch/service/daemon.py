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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from riskwatch.config.logs import Redactor
from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts, silences
from riskwatch.core.evaluate import CompiledRule, Decisions, decide
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.core.snapshot import only_accounts
from riskwatch.errors import NotLeading, StoreError, TreadAuthError, TreadError
from riskwatch.memory import paused_gc, release_memory
from riskwatch.notify.outbox import Deliverer, Router, plan_messages
from riskwatch.rulefiles.loader import rule_files
from riskwatch.service.heartbeat import Heartbeat
from riskwatch.service.http import Health, WebServer
from riskwatch.service.leverage_actor import Actor
from riskwatch.service.telemetry import Telemetry
from riskwatch.service.wiring import load_compiled_rules
from riskwatch.source.client import TreadClient
from riskwatch.source.freshness import Admitted, Timeline
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.daemon")
Clock = Callable[[], datetime]
STALL_INTERVALS = 3  # /healthz fails when the loop has not ticked for this many intervals
# /readyz fails when a message has waited this long for Slack (at least; see not_ready)
DELIVERY_STUCK_AFTER = timedelta(minutes=5)
PRUNE_EVERY = timedelta(hours=1)


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
        self._problems_logged: set[tuple[str, str]] = set()
        self.telemetry.rules_in_force(c.rule.name for c in self.rules)
        self.timeline = Timeline()
        self.last_success: datetime | None = None  # the clock time of the last good poll
        self.store_error: str | None = None
        self.missing: list[str] = []  # expected accounts the last answer left out
        self._poll_started: float | None = None  # monotonic time the fetch in flight began
        self._older_logged = False
        self._store_failed_since: datetime | None = None
        self.oldest_waiting = 0.0  # seconds the oldest message has waited for Slack
        self.delivery_stuck_after = max(DELIVERY_STUCK_AFTER, settings.stale_limit)
        self._beat_for: datetime | None = None  # a good poll whose messages are not yet out
        self._beat_ready = False
        self._pruned_at: datetime | None = None
        self.heartbeat = (Heartbeat(settings.heartbeat_url.get_secret_value(),
                                    settings.deadline.total_seconds(), self.telemetry)
                          if settings.heartbeat_url is not None else None)

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
            rules = load_compiled_rules([self.settings.rules])
        except Exception as error:  # whatever the failure, the old rules stay in force
            self.rules_error = (str(error) or type(error).__name__)[:2000]
            log.error("rules reload failed; the previous rules stay in force",
                      error=self.rules_error)
            return
        self.rules = rules
        self.rules_error = None
        self.telemetry.rules_in_force(c.rule.name for c in self.rules)
        log.info("rules reloaded", rules=len(self.rules))

    # ------------------------------------------------------------------ one poll

    def take_lead(self) -> bool:
        """Lead if the store lets us; a new leader starts from the stored alert states."""
        leading = self.store.lead()
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
        """Run one poll: fetch, evaluate, act, store, and wake the deliverer.

        Whatever goes wrong on the way, the poll ends as a counted failure that feeds
        ``source-down``: an unexpected error never ends it silently.
        """
        if not self.leader and not self.take_lead():
            return PollReport(False, 0, 0, "standing by")
        started = self._poll_started = time.monotonic()
        now = self.clock()
        self._reload_rules()
        try:
            outcome = await self._fetch(now)
        finally:
            self._poll_started = None
        # staleness is judged when the answer (or the deadline) came, not when it was asked
        # for: a hung call then costs one deadline, not two
        now = max(now, self.clock())
        outcome, decisions = self._decide(outcome, now)
        self._log_poll(outcome, decisions)
        muting = self.store.silences()
        self.store.check_lead()  # deposed while the answer came in: act on nothing
        try:
            await self.actor.act(self.rules, decisions, self.alerts, outcome.snapshot,
                                 muting, now)
        except (StoreError, NotLeading):
            raise
        except Exception:  # alerts must go out even when acting on them breaks
            log.exception("leverage actions failed; the alerts are still sent")
        notices = silences.apply(decisions.notices, self.alerts, decisions.changed, muting, now)
        messages = plan_messages(notices, decisions.changed, self.router)
        self.store.save_poll(decisions.changed, decisions.dropped, messages, now)
        for key in decisions.dropped:
            self.alerts.pop(key, None)
        self.alerts.update(decisions.changed)
        self.polls += 1
        if messages:
            self.deliverer.wake.set()
        self._settle(outcome, now)
        self._measure(outcome, decisions, time.monotonic() - started)
        accounts = len(outcome.snapshot.accounts) if outcome.snapshot else 0
        report = PollReport(outcome.snapshot is not None, accounts, len(decisions.notices),
                            outcome.error)
        log.debug("poll done", ok=report.ok, accounts=accounts, notices=report.notices,
                  messages=len(messages), seconds=round(time.monotonic() - started, 3))
        del outcome
        release_memory()
        return report

    def _decide(self, outcome: builtin_alerts.PollOutcome,
                now: datetime) -> tuple[builtin_alerts.PollOutcome, Decisions]:
        """The core's decisions; if the core itself fails, those of a failed poll."""
        try:
            return outcome, self._decisions(outcome, now)
        except Exception as error:
            failed = self._failed(f"unexpected error while evaluating: {_describe(error)}",
                                  traceback=True)
            return failed, self._decisions(failed, now)

    def _decisions(self, outcome: builtin_alerts.PollOutcome, now: datetime) -> Decisions:
        observations = builtin_alerts.observe(outcome, now, self.settings.stale_limit)
        observations.append(builtin_alerts.rules_invalid(self.rules_error))
        with paused_gc():
            return decide(self.rules, outcome.snapshot, self.alerts, now, observations)

    async def _fetch(self, now: datetime) -> builtin_alerts.PollOutcome:
        watched = self.settings.watched
        try:
            snapshot = await self.client.snapshot(
                self.settings.source, now, sorted(watched) if watched else None)
            snapshot = only_accounts(snapshot, watched)
            answered = builtin_alerts.answered_accounts(snapshot)
            admitted = self.timeline.admit(snapshot, max(self.clock(), now))
        except TreadAuthError as error:
            return self._failed(str(error), auth=True)
        except TreadError as error:
            return self._failed(str(error))
        except Exception as error:  # a bug or an input nobody foresaw: a failed poll
            return self._failed(f"unexpected error while reading the answer: "
                                f"{_describe(error)}", traceback=True)
        self._note_time(admitted)
        newest = _newest_data(admitted)
        last_good = newest if newest is not None else self._last_good()
        alerting, missing_before = self._accounts_alerting()
        return builtin_alerts.PollOutcome(
            admitted.snapshot, last_good_data=max(last_good, self.last_good_data or last_good),
            answered=answered, expected=builtin_alerts.expected_accounts(watched, alerting),
            missing_before=missing_before)

    def _accounts_alerting(self) -> tuple[set[str], frozenset[str]]:
        """Accounts with active alerts (they must be in a fresh answer), and those whose
        ``account-missing`` is active; one pass over the alerts."""
        alerting: set[str] = set()
        missing: set[str] = set()
        for key, alert in self.alerts.items():
            if not alert.active or not key.account or key.rule == "account-error":
                continue
            alerting.add(key.account)
            if key.rule == "account-missing":
                missing.add(key.account)
        return alerting, frozenset(missing)

    def _failed(self, error: str, *, auth: bool = False,
                traceback: bool = False) -> builtin_alerts.PollOutcome:
        """A failed poll: logged once (with the traceback of an unexpected error)."""
        if traceback:
            log.exception("poll failed", error=error)
        elif error == self.last_poll_error:  # the same failure again: the alert tells it
            log.debug("poll failed again", error=error)
        elif auth:
            log.error("poll failed", error=error)
        else:
            log.warning("poll failed", error=error)
        self.last_poll_error = error
        return builtin_alerts.PollOutcome(None, error, auth_failed=auth,
                                   last_good_data=self._last_good())

    def _note_time(self, admitted: Admitted) -> None:
        if admitted.older:
            self.telemetry.old_answers.inc(len(admitted.older))
            (log.info if not self._older_logged else log.debug)(
                "answer older than one already seen; kept the newer data",
                accounts=list(admitted.older)[:20], count=len(admitted.older))
        self._older_logged = bool(admitted.older)  # told once per run of old answers
        if admitted.future:
            log.warning("data stamped in the future; counted as now", 
                        accounts=list(admitted.future)[:20], count=len(admitted.future))

    def _settle(self, outcome: builtin_alerts.PollOutcome, now: datetime) -> None:
        """The poll is stored: only now does it count as a success for ``source-down``."""
        if outcome.snapshot is None:
            return
        self.last_good_data = outcome.last_good_data
        self.last_poll_error = None
        self.missing = builtin_alerts.missing_accounts(outcome)
        self.last_success = now
        self._beat_for = now

    def _last_good(self) -> datetime:
        return self.last_good_data or self.started_at

    def _measure(self, outcome: builtin_alerts.PollOutcome, decisions: Decisions,
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

    def _log_poll(self, outcome: builtin_alerts.PollOutcome, decisions: Decisions) -> None:
        snapshot = outcome.snapshot
        if snapshot is not None:
            for problem in snapshot.problems:  # once each: the alert tells the rest
                if (problem.account, problem.message) in self._problems_logged:
                    continue
                self._problems_logged.add((problem.account, problem.message))
                log.warning("account problem", account=problem.account, symbol=problem.symbol,
                            exchange=problem.exchange, problem=problem.message,
                            raw=_short_repr(problem.raw))
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

    def warnings(self) -> list[str]:
        """What is wrong with the data but not with this process (on /readyz, status 200)."""
        if not self.leader or not self.missing:
            return []
        shown = ", ".join(self.missing[:10]) + (" …" if len(self.missing) > 10 else "")
        return [f"{len(self.missing)} account(s) missing from the API's answer: {shown}"]

    def role(self) -> str:
        """``leader`` or ``standby``, for /readyz."""
        return "leader" if self.leader else "standby"

    def not_ready(self) -> list[str]:
        """Why this process is not ready to be trusted (empty when it is).

        A standby whose store works is ready: it can take over, and a rolling update
        must be able to finish with one leader and several standbys.
        """
        reasons = []
        if self.store_error:
            reasons.append(f"state store failed: {self.store_error}")
        elif self.leader:
            reasons.extend(self._leader_problems())
        if self.rules_error:
            reasons.append(f"rules invalid (previous rules in force): {self.rules_error}")
        if not self.rules:
            reasons.append("no rules loaded")
        return reasons

    def _leader_problems(self) -> list[str]:
        reasons = []
        if self.last_poll_error:
            reasons.append(f"last poll failed: {self.last_poll_error}")
        since = self.last_success or self.started_at
        silent = (self.clock() - since).total_seconds()
        if silent > self.settings.stale_limit.total_seconds():
            reasons.append(f"no successful poll for {silent:.0f}s")
        if self._poll_started is not None:
            running = time.monotonic() - self._poll_started
            if running > self.settings.poll_interval.total_seconds():
                reasons.append(f"the current poll has run for {running:.0f}s "
                               "(the API is slow or hung)")
        if self.last_good_data is not None:
            age = (self.clock() - self.last_good_data).total_seconds()
            if age > self.settings.stale_limit.total_seconds():
                reasons.append(f"the newest data is {age:.0f}s old")
        if self.deliverer.permanent_error:
            reasons.append(f"Slack refuses delivery: {self.deliverer.permanent_error}")
        if self.oldest_waiting > self.delivery_stuck_after.total_seconds():
            reasons.append(f"Slack delivery stuck: the oldest message has waited "
                           f"{self.oldest_waiting:.0f}s")
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
            self.web = WebServer(self.settings.http,
                                 Health(self.alive, self.not_ready, self.role, self.warnings),
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
        if self.heartbeat is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heartbeat.wait(), timeout=3)
        self.store.release_lead()
        log.info("riskwatch stopped", polls=self.polls)

    async def _tick(self, cycles: int | None) -> None:
        self.last_tick = time.monotonic()
        if self.stop_event.is_set():
            return
        try:
            await self.tick_once()
        except asyncio.CancelledError:  # a stop cut the poll short: not an error to log
            log.debug("poll cut short by the stop")
            return
        if cycles is not None and self.polls >= cycles:
            self.stop_event.set()

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
            self.leader = self.deliverer.active = False
            self.telemetry.leader.set(0)
        except StoreError as error:  # nothing is lost: the poll runs again next tick
            await self._store_fails(str(error))
        except Exception as error:  # the loop must survive any one bad poll, and say so
            self._failed(f"unexpected error: {_describe(error)}", traceback=True)
            self.telemetry.polls.labels("error").inc()

    def _prune(self) -> None:
        """Once an hour, drop what the store no longer needs (Store.prune documents what)."""
        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        removed = self.store.prune(now)
        if removed:
            log.info("state store pruned", rows=removed)

    def _watch_outbox(self) -> None:
        """Waiting and refused messages, and the age of the oldest, for /metrics and /readyz."""
        summary = self.store.outbox_summary()
        now = self.clock()
        oldest = summary.oldest_pending
        self.oldest_waiting = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        self.telemetry.oldest_waiting.set(self.oldest_waiting)
        self.telemetry.outbox.labels("pending").set(summary.pending)
        self.telemetry.outbox.labels("failed").set(summary.failed)
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
        self.leader = self.deliverer.active = False  # the next lead reloads the stored state
        self.telemetry.leader.set(0)
        if self.store_error is None:
            now = self.clock()
            self._store_failed_since = now
            await self.deliverer.send_now([builtin_alerts.store_failed_notice(error, now, now)])
        self.store_error = error

    async def _store_works(self) -> None:
        if self.store_error is None:
            return
        log.info("state store works again", was=self.store_error)
        now = self.clock()
        since = self._store_failed_since or now
        notice = builtin_alerts.store_failed_notice(self.store_error, since, now, resolved=True)
        self.store_error = self._store_failed_since = None
        await self.deliverer.send_now([notice])


def rules_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the rule files: a change means reload."""
    try:
        files = rule_files([path]) if path.exists() else []
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()


def _newest_data(admitted: Admitted) -> datetime | None:
    """The newest data time of the accounts let through; the answer's own time when it
    named no account at all; None when every account it named was older than seen."""
    snapshot = admitted.snapshot
    times = [account.taken_at for account in snapshot.accounts if account.taken_at is not None]
    if times:
        return max(times)
    return None if admitted.older else snapshot.received_at


def _short_repr(value: object) -> str:
    try:
        return repr(value)[:300]
    except RecursionError:
        return "(nested too deeply to show)"


def _describe(error: BaseException) -> str:
    """``TypeName: message`` in one line of at most 300 characters."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
