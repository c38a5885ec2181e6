"""The daemon: fetch, decide, persist, deliver, on an APScheduler interval.

One poll at a time (``max_instances=1``), missed runs coalesced into one after a stall,
a clean stop on SIGTERM/SIGINT. :meth:`Daemon.poll_once` is the run-once entry point
that tests call directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from riskwatch import actions, builtin, silences
from riskwatch.alerts import Alert, AlertKey, Notice, NoticeKind
from riskwatch.errors import RiskwatchError, TreadAuthError, TreadError
from riskwatch.evaluate import CompiledRule, Decisions, decide, step_into
from riskwatch.logs import Redactor
from riskwatch.notify.outbox import Deliverer, Router, plan_messages
from riskwatch.rules import rule_files
from riskwatch.runtime import load_compiled_rules
from riskwatch.settings import Settings
from riskwatch.silences import Silence
from riskwatch.snapshot import Snapshot, only_accounts
from riskwatch.store import SqliteStore
from riskwatch.tread import TreadClient

log = structlog.get_logger("riskwatch.daemon")
Clock = Callable[[], datetime]


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
    """Wires the core to the world: client, store, deliverer."""

    def __init__(
        self, settings: Settings, rules: Sequence[CompiledRule], store: SqliteStore,
        client: TreadClient, router: Router, clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.rules = list(rules)
        self.store = store
        self.client = client
        self.clock = clock
        self.deliverer = Deliverer(store, router, clock, Redactor(settings.secrets()).mask)
        self.router = router
        self.alerts: dict[AlertKey, Alert] = store.load_alerts()
        self.started_at = clock()
        self.last_good_data: datetime | None = None
        self.polls = 0
        self.stop_event = asyncio.Event()
        self._skips_logged: set[tuple[str, str]] = set()
        self.rules_error: str | None = None
        self._account_ids: dict[str, str] = {}
        self.reload_requested = False
        self._rules_signature = rules_signature(settings.rules)

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
        log.info("rules reloaded", rules=len(self.rules))

    async def poll_once(self) -> PollReport:
        """Run one poll: fetch, evaluate, store, and wake the deliverer."""
        now = self.clock()
        self._reload_rules()
        outcome = await self._fetch(now)
        observations = builtin.observe(outcome, now, self.settings.stale_limit)
        observations.append(builtin.rules_invalid(self.rules_error))
        decisions = decide(self.rules, outcome.snapshot, self.alerts, now, observations)
        self._log_poll(outcome, decisions)
        muting = self.store.silences()
        await self._act(decisions, outcome.snapshot, muting, now)
        notices = silences.apply(decisions.notices, self.alerts, decisions.changed, muting, now)
        messages = plan_messages(notices, decisions.changed, self.router)
        self.store.save_poll(decisions.changed, decisions.dropped, messages, now)
        for key in decisions.dropped:
            self.alerts.pop(key, None)
        self.alerts.update(decisions.changed)
        self.polls += 1
        if messages:
            self.deliverer.wake.set()
        accounts = len(outcome.snapshot.accounts) if outcome.snapshot else 0
        return PollReport(outcome.snapshot is not None, accounts, len(decisions.notices),
                          outcome.error)

    async def _act(self, decisions: Decisions, snapshot: Snapshot | None,
                   muting: list[Silence], now: datetime) -> None:
        """Decide and carry out leverage actions; note each outcome on its alert."""
        by_rule = {c.rule.name: c.rule.action for c in self.rules if c.rule.action is not None}
        limit = self.settings.max_actions_per_hour
        if not by_rule:
            return
        current = {**self.alerts, **decisions.changed}
        for key in decisions.dropped:
            current.pop(key, None)
        used = sum(1 for d in self.store.actions(since=now - timedelta(hours=1))
                   if d.outcome in actions.COUNTED)
        planned = actions.plan(current.values(), by_rule, snapshot, self.settings.actions,
                               muting, used, limit, now)
        done = [await self._carry_out(decision) for decision in planned]
        if done:
            self.store.record_actions(done)
        for decision in done:
            self._note_action(decisions, current, decision)
        if self.settings.actions != "off":
            used += sum(1 for d in done if d.outcome in actions.COUNTED)
            policy, observation = builtin.action_limit(used, limit)
            step_into(decisions, policy, observation, self.alerts, now)

    async def _carry_out(self, decision: actions.Decision) -> actions.Decision:
        if decision.outcome != "call":
            log.info("leverage action " + decision.outcome, rule=decision.rule,
                     account=decision.account, pair=decision.pair, summary=decision.summary())
            return decision
        if decision.account_id is None:
            decision = replace(decision, account_id=await self._account_id(decision.account))
        done = await actions.execute(decision, self.client)
        log.warning("leverage action " + done.outcome, rule=done.rule, account=done.account,
                    pair=done.pair, summary=done.summary())
        return done

    async def _account_id(self, name: str) -> str | None:
        """The id of an account the live endpoint named, from GET /api/accounts/."""
        if name not in self._account_ids:
            try:
                self._account_ids = await self.client.account_ids()
            except TreadError as error:
                log.warning("could not list accounts for their ids", error=str(error))
        return self._account_ids.get(name)

    def _note_action(self, decisions: Decisions, current: dict[AlertKey, Alert],
                     decision: actions.Decision) -> None:
        """Mark the alert as acted on in this firing, and show the outcome in its message."""
        key = AlertKey(decision.rule, decision.account, decision.pair)
        alert = replace(current[key], action=decision.summary())
        decisions.changed[key] = alert
        for index, notice in enumerate(decisions.notices):
            if notice.alert.key == key:
                decisions.notices[index] = replace(notice, alert=alert)
                return
        decisions.notices.append(Notice(NoticeKind.REMINDER, alert))

    async def _fetch(self, now: datetime) -> builtin.PollOutcome:
        watched = self.settings.watched
        try:
            snapshot = await self.client.snapshot(
                self.settings.source, now, sorted(watched) if watched else None)
        except TreadAuthError as error:
            log.error("poll failed", error=str(error))
            return builtin.PollOutcome(None, str(error), auth_failed=True,
                                       last_good_data=self._last_good())
        except TreadError as error:
            log.warning("poll failed", error=str(error))
            return builtin.PollOutcome(None, str(error), last_good_data=self._last_good())
        snapshot = only_accounts(snapshot, watched)
        self.last_good_data = _newest_data(snapshot, now)
        return builtin.PollOutcome(snapshot, last_good_data=self.last_good_data)

    def _last_good(self) -> datetime:
        return self.last_good_data or self.started_at

    def _log_poll(self, outcome: builtin.PollOutcome, decisions: Decisions) -> None:
        snapshot = outcome.snapshot
        if snapshot is not None:
            for problem in snapshot.problems:
                log.warning("account problem", account=problem.account, symbol=problem.symbol,
                            exchange=problem.exchange, problem=problem.message,
                            raw=_short(problem.raw))
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
        log.debug("poll done", ok=snapshot is not None, notices=len(decisions.notices))

    async def run(self, cycles: int | None = None) -> None:
        """Poll on schedule until stopped by a signal or after ``cycles`` polls."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._tick, "interval", args=[cycles],
            seconds=self.settings.poll_interval.total_seconds(),
            next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
            misfire_grace_time=None, id="poll",
        )
        delivery = asyncio.create_task(self.deliverer.run(self.stop_event))
        scheduler.start()
        log.info("riskwatch running", rules=len(self.rules), source=self.settings.source,
                 interval=self.settings.poll_interval.total_seconds())
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
        log.info("riskwatch stopped", polls=self.polls)

    async def _tick(self, cycles: int | None) -> None:
        if self.stop_event.is_set():
            return
        try:
            await self.poll_once()
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


def _short(raw: object) -> str:
    return repr(raw)[:300]
