"""One poll, as a pipeline of values:

    fetch → decide → plan actions → execute → finish → plan messages → save → history

Each step returns new values and changes none it was given; :meth:`Poll.run` shows the
order in one place. The source and the store are the only I/O besides the actor's
calls; everything between the fetched snapshot and the stored decisions is the core's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts
from riskwatch.core.evaluate import CompiledRule, Decisions, decide
from riskwatch.core.finish import finish, with_silence_notices, with_threads
from riskwatch.core.history import points_of
from riskwatch.core.lifecycle import Alert, AlertKey
from riskwatch.core.silences import Silence
from riskwatch.core.snapshot import Snapshot, only_accounts
from riskwatch.errors import NotLeading, StoreError, TreadAuthError, TreadError
from riskwatch.memory import paused_gc, release_memory
from riskwatch.notify.plan import Router, plan_messages
from riskwatch.service.history_book import HistoryBook
from riskwatch.service.leverage_actor import NOTHING_TO_DO, ActionReport, Actor
from riskwatch.service.rule_source import RuleSource
from riskwatch.service.telemetry import Telemetry
from riskwatch.source.client import TreadClient
from riskwatch.source.freshness import Admitted, Timeline
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.daemon")
Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


@dataclass
class PollReport:
    """What one poll did, for logs and tests."""

    ok: bool
    accounts: int
    notices: int
    error: str | None = None


class Poll:
    """Runs polls and keeps what one poll hands the next: the alerts, and how the data went."""

    def __init__(self, settings: Settings, rules: RuleSource, store: Store, client: TreadClient,
                 router: Router, actor: Actor, telemetry: Telemetry, clock: Clock,
                 monotonic: Monotonic, sent: Callable[[], None]) -> None:
        self.settings = settings
        self.rules = rules
        self.store = store
        self.client = client
        self.router = router
        self.actor = actor
        self.telemetry = telemetry
        self.clock = clock
        self.monotonic = monotonic
        self.sent = sent  # wakes the deliverer when a poll stored messages
        self.alerts: dict[AlertKey, Alert] = {}
        self.history = HistoryBook(settings.poll_interval)
        self.started_at = clock()  # source-down counts from here until data comes
        self.timeline = Timeline()
        self.last_good_data: datetime | None = None
        self.last_error: str | None = "no poll yet"
        self.last_success: datetime | None = None  # the clock time of the last good poll
        self.missing: list[str] = []  # expected accounts the last answer left out
        self.count = 0
        self.fetch_started: float | None = None  # monotonic time the fetch in flight began
        self._skips_logged: set[tuple[str, str]] = set()
        self._problems_logged: set[tuple[str, str]] = set()
        self._older_logged = False

    def take_over(self) -> None:
        """This process now leads: start from the stored alert states."""
        self.alerts = self.store.load_alerts()
        self.started_at = self.clock()  # source-down counts from the start of our lead
        self.history.load(self.store, self.rules.rules, self.started_at)
        log.info("leading: this process polls, notifies and acts", alerts=len(self.alerts))

    async def run(self) -> PollReport:
        """Run one poll: fetch, decide, act, finish, store, and wake the deliverer.

        Whatever goes wrong on the way, the poll ends as a counted failure that feeds
        ``source-down``: an unexpected error never ends it silently.
        """
        started = self.fetch_started = self.monotonic()
        now = self.clock()
        rules = self.rules.refresh()
        try:
            outcome = await self._fetch(now)
        finally:
            self.fetch_started = None
        # staleness is judged when the answer (or the deadline) came, not when it was asked
        # for: a hung call then costs one deadline, not two
        now = max(now, self.clock())
        self.history.follow(self.store, rules, now)
        outcome, decisions = self._decide(rules, outcome, now)
        self._log_poll(outcome, decisions)
        muting = self.store.silences()
        acks = self.store.acknowledgements()  # clicked in Slack, on any replica
        self.store.check_lead()  # deposed while the answer came in: act on nothing
        acted = await self._act(rules, decisions, outcome.snapshot, muting, now)
        later = [acted.limit] if acted.limit is not None else []
        finished = finish(decisions, self.alerts, acted.updates, later, muting, now, acks)
        finished, told = with_silence_notices(finished, self.alerts, muting,
                                              self.store.silences_told(), now)
        planned = plan_messages(finished.notices, self.router)
        finished = with_threads(finished, planned.threads)
        self.store.save_poll(finished.changed, finished.dropped, planned.messages, now, told)
        self._keep(finished)
        self._record_history(outcome.snapshot, now)
        if planned.messages:
            self.sent()
        self._settle(outcome, now)
        self._measure(outcome, finished, self.monotonic() - started)
        accounts = len(outcome.snapshot.accounts) if outcome.snapshot else 0
        report = PollReport(outcome.snapshot is not None, accounts, len(decisions.notices),
                            outcome.error)
        log.debug("poll done", ok=report.ok, accounts=accounts, notices=report.notices,
                  messages=len(planned.messages),
                  seconds=round(self.monotonic() - started, 3))
        del outcome
        release_memory()
        return report

    def failed(self, error: str, *, auth: bool = False,
               traceback: bool = False) -> builtin_alerts.PollOutcome:
        """A failed poll: logged once (with the traceback of an unexpected error)."""
        if traceback:
            log.exception("poll failed", error=error)
        elif error == self.last_error:  # the same failure again: the alert tells it
            log.debug("poll failed again", error=error)
        elif auth:
            log.error("poll failed", error=error)
        else:
            log.warning("poll failed", error=error)
        self.last_error = error
        return builtin_alerts.PollOutcome(None, error, auth_failed=auth,
                                          last_good_data=self._last_good())

    # ------------------------------------------------------------------ the steps

    async def _fetch(self, now: datetime) -> builtin_alerts.PollOutcome:
        watched = self.settings.watched
        try:
            snapshot = await self.client.snapshot(
                self.settings.source, now, sorted(watched) if watched else None)
            snapshot = only_accounts(snapshot, watched)
            answered = builtin_alerts.answered_accounts(snapshot)
            admitted = self.timeline.admit(snapshot, max(self.clock(), now))
        except TreadAuthError as error:
            return self.failed(str(error), auth=True)
        except TreadError as error:
            return self.failed(str(error))
        except Exception as error:  # a bug or an input nobody foresaw: a failed poll
            return self.failed(f"unexpected error while reading the answer: "
                               f"{describe(error)}", traceback=True)
        self._note_time(admitted)
        newest = _newest_data(admitted)
        last_good = newest if newest is not None else self._last_good()
        alerting, missing_before = self._accounts_alerting()
        return builtin_alerts.PollOutcome(
            admitted.snapshot, last_good_data=max(last_good, self.last_good_data or last_good),
            answered=answered, expected=builtin_alerts.expected_accounts(watched, alerting),
            missing_before=missing_before)

    def _decide(self, rules: Sequence[CompiledRule], outcome: builtin_alerts.PollOutcome,
                now: datetime) -> tuple[builtin_alerts.PollOutcome, Decisions]:
        """The core's decisions; if the core itself fails, those of a failed poll."""
        try:
            return outcome, self._decisions(rules, outcome, now)
        except Exception as error:
            failed = self.failed(f"unexpected error while evaluating: {describe(error)}",
                                 traceback=True)
            return failed, self._decisions(rules, failed, now)

    def _decisions(self, rules: Sequence[CompiledRule], outcome: builtin_alerts.PollOutcome,
                   now: datetime) -> Decisions:
        observations = builtin_alerts.observe(outcome, now, self.settings.stale_limit)
        observations.append(builtin_alerts.rules_invalid(self.rules.error))
        with paused_gc():
            return decide(rules, outcome.snapshot, self.alerts, now, observations,
                          history=self.history.view())

    async def _act(self, rules: Sequence[CompiledRule], decisions: Decisions,
                   snapshot: Snapshot | None, muting: Sequence[Silence],
                   now: datetime) -> ActionReport:
        """The leverage actor's report; if acting breaks, the alerts still go out."""
        try:
            return await self.actor.act(rules, decisions, self.alerts, snapshot, muting, now)
        except (StoreError, NotLeading):
            raise
        except Exception:  # alerts must go out even when acting on them breaks
            log.exception("leverage actions failed; the alerts are still sent")
            return NOTHING_TO_DO

    def _keep(self, finished: Decisions) -> None:
        """The stored decisions become the alerts the next poll starts from."""
        for key in finished.dropped:
            self.alerts.pop(key, None)
        self.alerts.update(finished.changed)
        self.count += 1

    def _record_history(self, snapshot: Snapshot | None, now: datetime) -> None:
        """A good poll's point per account, in the store and in memory (after deciding, so
        the history a poll reads holds only earlier polls). History serves the status page
        and the history rules; failing to store it must not stop the alerts."""
        if snapshot is None:
            return
        try:
            points = points_of(snapshot, now)
            self.store.record_history(points, now)
        except NotLeading:
            raise
        except Exception as error:  # the alerts are stored already: history must not undo that
            log.warning("could not record this poll's history; alerts are unaffected",
                        error=describe(error))
            return
        self.history.add(points)

    def _settle(self, outcome: builtin_alerts.PollOutcome, now: datetime) -> None:
        """The poll is stored: only now does it count as a success for ``source-down``."""
        if outcome.snapshot is None:
            return
        self.last_good_data = outcome.last_good_data
        self.last_error = None
        self.missing = builtin_alerts.missing_accounts(outcome)
        self.last_success = now

    # ------------------------------------------------------------------ helpers

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

    def _last_good(self) -> datetime:
        return self.last_good_data or self.started_at

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

    def _measure(self, outcome: builtin_alerts.PollOutcome, decisions: Decisions,
                 seconds: float) -> None:
        metrics = self.telemetry
        result = "ok" if outcome.snapshot else ("auth_error" if outcome.auth_failed else "error")
        metrics.polls.labels(result).inc()
        metrics.poll_duration.observe(seconds)
        if outcome.snapshot is not None:
            metrics.last_success.set(self.clock().timestamp())
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


def describe(error: BaseException) -> str:
    """``TypeName: message`` in one line of at most 300 characters."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__
