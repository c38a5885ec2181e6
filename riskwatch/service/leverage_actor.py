"""The shell around leverage actions: plan, call the API, audit, and report each outcome.

The actor returns values (:class:`ActionPlan`, :class:`ActionReport`); how an outcome is
told to the desk is decided by the core (:func:`riskwatch.core.finish.finish`).

A call cannot run away. Before it is made, its audit row (``calling``) and the alert it
decides are stored in one transaction; if that write fails, nothing is called. Whatever
the call then does (an answer, an error, an exception of any kind), the alert stays
decided for this firing and the attempt counts toward the hourly cap. Before planning,
an alert that looks undecided is looked up in the store, where a decision made by an
earlier poll that stopped half-way, or by another replica, is found.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from riskwatch.config.logs import Redactor
from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts, leverage
from riskwatch.core.evaluate import CompiledRule, Decisions
from riskwatch.core.finish import AlertUpdate, Tell
from riskwatch.core.lifecycle import Alert, AlertKey, Observation, Policy, State
from riskwatch.core.rules import Action
from riskwatch.core.silences import Silence
from riskwatch.core.snapshot import Snapshot
from riskwatch.errors import StoreError
from riskwatch.service import leverage_call
from riskwatch.service.telemetry import Telemetry
from riskwatch.source.client import TreadClient
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.actions")


@dataclass(frozen=True)
class ActionPlan:
    """What a poll will do about leverage: the calls and skips decided, what was learned
    on the way (checks of earlier calls, decisions found in the store), and the alerts as
    they stand with that learned."""

    decisions: list[leverage.Decision]
    updates: list[AlertUpdate]
    current: dict[AlertKey, Alert]
    used: int  # actions counted toward the hourly cap before this poll's
    data_times: dict[str, datetime]  # when each account's data was taken


@dataclass(frozen=True)
class ActionReport:
    """What acting did: alert updates to fold into the poll, and the action limit's
    observation (None when actions are off)."""

    updates: list[AlertUpdate]
    limit: tuple[Policy, Observation] | None = None


NOTHING_TO_DO = ActionReport([])


class Actor:
    """Carries out the leverage decisions of a poll."""

    def __init__(self, settings: Settings, store: Store, client: TreadClient,
                 telemetry: Telemetry, backoff: float = leverage_call.BACKOFF) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.telemetry = telemetry
        self.backoff = backoff
        self.mask = Redactor(settings.secrets()).mask
        self._account_ids: dict[str, str] = {}

    async def act(self, rules: Sequence[CompiledRule], decisions: Decisions,
                  alerts: Mapping[AlertKey, Alert], snapshot: Snapshot | None,
                  muting: Sequence[Silence], now: datetime) -> ActionReport:
        """Plan the poll's leverage actions, then carry them out."""
        planned = self.plan(rules, decisions, alerts, snapshot, muting, now)
        if planned is None:
            return NOTHING_TO_DO
        return await self.execute(planned, alerts)

    def plan(self, rules: Sequence[CompiledRule], decisions: Decisions,
             alerts: Mapping[AlertKey, Alert], snapshot: Snapshot | None,
             muting: Sequence[Silence], now: datetime) -> ActionPlan | None:
        """Decide what to do (None when no rule acts): check earlier calls against the
        data, take up decisions the store holds, and plan within the hourly cap."""
        by_rule = {c.rule.name: c.rule.action for c in rules if c.rule.action is not None}
        if not by_rule:
            return None
        current = {**alerts, **decisions.changed}
        for key in decisions.dropped:
            current.pop(key, None)
        updates = _check_calls(current, by_rule, snapshot, now)
        _put(current, updates)
        recalled = self._recall(current, by_rule)
        _put(current, recalled)
        updates += recalled
        used = sum(1 for d in self.store.actions(since=now - timedelta(hours=1))
                   if d.outcome in leverage.COUNTED)
        planned = leverage.plan(current.values(), by_rule, snapshot, self.settings.actions,
                                muting, used, self.settings.max_actions_per_hour, now)
        times = {d.account: _data_time(snapshot, d.account, now) for d in planned}
        return ActionPlan(planned, updates, current, used, times)

    async def execute(self, planned: ActionPlan,
                      alerts: Mapping[AlertKey, Alert]) -> ActionReport:
        """Make the planned calls, each in the audit log before it is made; report each
        outcome as an update of its alert, and the action limit as it now stands."""
        prepared = [await self._prepare(decision) for decision in planned.decisions]
        current = dict(planned.current)
        # every decision is in the audit log before any call; if this fails, none is made
        self.store.record_actions(prepared, {
            key: _decided_before(alerts.get(key), current[key], d.summary())
            for d in prepared if d.outcome == "calling" for key in [_key(d)]})
        done = [await self._call(d) if d.outcome == "calling" else d for d in prepared]
        self._record_outcomes([d for d in done if d.audit_id is not None])
        updates = list(planned.updates)
        for decision in done:
            self._log(decision)
            self.telemetry.actions.labels(decision.mode, decision.outcome).inc()
            alert = _decided(current[_key(decision)], decision,
                             planned.data_times[decision.account])
            current[alert.key] = alert
            updates.append(AlertUpdate(alert, Tell.AS_REMINDER))
        if self.settings.actions == "off":
            return ActionReport(updates)
        used = planned.used + sum(1 for d in done if d.outcome in leverage.COUNTED)
        return ActionReport(updates, builtin_alerts.action_limit(
            used, self.settings.max_actions_per_hour))

    def _recall(self, current: Mapping[AlertKey, Alert],
                by_rule: Mapping[str, Action]) -> list[AlertUpdate]:
        """Decisions the store holds for alerts this process sees as undecided.

        The store has them when a poll stopped after its call (before it saved the alert),
        or when another replica decided: an active alert stored with a decision is decided
        for this firing, since a firing only ends by a resolution, which would be stored.
        """
        updates = []
        for key, alert in current.items():
            action = by_rule.get(key.rule)
            if action is None or not leverage.due(alert, action):
                continue
            stored = self.store.alert(key)
            if stored is not None and stored.active and stored.action:
                log.warning("leverage action already decided for this firing",
                            rule=key.rule, account=key.account, pair=key.symbol,
                            summary=stored.action)
                updates.append(AlertUpdate(replace(alert, action=stored.action,
                                                   verify_after=stored.verify_after)))
        return updates

    async def _prepare(self, decision: leverage.Decision) -> leverage.Decision:
        """A call with its account id and audit id (as ``calling``), or failed without one."""
        if decision.outcome != "call":
            return decision
        if decision.account_id is None:
            decision = replace(decision, account_id=await self._account_id(decision.account))
        if decision.account_id is None:
            return replace(decision, outcome="failed", detail="no account id for this account")
        return replace(decision, outcome="calling", detail=leverage.NOT_RECORDED,
                       audit_id=uuid.uuid4().hex)

    async def _call(self, decision: leverage.Decision) -> leverage.Decision:
        """Make one call; any exception is an outcome (unknown, not retried), never a raise."""
        try:
            return await leverage_call.execute(decision, self.client, self.backoff,
                                         secrets=self.settings.secrets())
        except Exception as error:  # the call may have been made: never again this firing
            detail = self.mask(f"{type(error).__name__}: {error}")[:300]
            return replace(decision, outcome="unknown", detail=detail)

    def _record_outcomes(self, calls: list[leverage.Decision]) -> None:
        """Write the calls' outcomes; if the store fails, their rows stay ``calling``."""
        try:
            self.store.record_outcomes(calls)
        except StoreError as error:
            log.error("could not record the outcome of leverage calls; their audit rows "
                      "stay 'calling'", error=str(error), calls=len(calls))

    def _log(self, decision: leverage.Decision) -> None:
        called = decision.audit_id is not None or decision.outcome == "failed"
        (log.warning if called else log.info)(
            "leverage action " + decision.outcome, rule=decision.rule,
            account=decision.account, pair=decision.pair, summary=decision.summary())

    async def _account_id(self, name: str) -> str | None:
        """The id of an account the live endpoint named, from GET /api/accounts/."""
        if name not in self._account_ids:
            try:
                self._account_ids = await self.client.account_ids()
            except Exception as error:  # any failure: this action fails, the poll goes on
                log.warning("could not list accounts for their ids",
                            error=self.mask(f"{type(error).__name__}: {error}")[:300])
        return self._account_ids.get(name)


def _key(decision: leverage.Decision) -> AlertKey:
    return AlertKey(decision.rule, decision.account, decision.pair)


def _decided_before(previous: Alert | None, alert: Alert, summary: str) -> Alert:
    """What to store, before a call, so that the alert reads as decided whatever follows.

    The alert as it stood before this poll, with the decision: a poll that stops after
    the call leaves the firing still to be announced (by the next poll, or by a replica
    that takes over), now with its decision; a firing new in this poll is stored as
    pending, so that it is announced when it fires again.
    """
    if previous is not None and previous.active:
        return replace(previous, action=summary)
    return replace(alert, state=State.PENDING, firing_since=None, last_notified_at=None,
                   thread=None, action=summary)


def _data_time(snapshot: Snapshot | None, name: str, now: datetime) -> datetime:
    """When the data an action was decided on was taken."""
    account = snapshot.account(name) if snapshot else None
    return (account.taken_at if account else None) or now


def _check_calls(current: Mapping[AlertKey, Alert], by_rule: Mapping[str, Action],
                 snapshot: Snapshot | None, now: datetime) -> list[AlertUpdate]:
    """After set_leverage answered OK, check the position in the next newer data, once."""
    updates = []
    for key, alert in current.items():
        if alert.verify_after is None:
            continue
        action = by_rule.get(key.rule)
        if action is None or alert.state is not State.FIRING:  # resolved: nothing to say
            updates.append(AlertUpdate(replace(alert, verify_after=None)))
            continue
        seen = leverage.leverage_after_call(alert, snapshot, now)
        if seen is None:
            continue
        if seen <= action.set_leverage:
            log.info("leverage action confirmed by the data", rule=key.rule,
                     account=key.account, pair=key.symbol, leverage=str(seen))
            updates.append(AlertUpdate(replace(alert, verify_after=None)))
            continue
        log.warning("set_leverage answered OK but the leverage has not changed",
                    rule=key.rule, account=key.account, pair=key.symbol,
                    leverage=str(seen), target=str(action.set_leverage))
        # told in the alert's thread, where threads exist
        updates.append(AlertUpdate(replace(alert, verify_after=None,
                                           action=leverage.still_high(alert.action, seen)),
                                   Tell.AS_CHECK))
    return updates


def _decided(alert: Alert, decision: leverage.Decision, data_time: datetime) -> Alert:
    """The alert decided for this firing, its message showing the outcome."""
    return replace(alert, action=decision.summary(),
                   verify_after=data_time if decision.outcome == "acted" else None)


def _put(current: dict[AlertKey, Alert], updates: Sequence[AlertUpdate]) -> None:
    """Put the updates' alerts into the actor's own working view of the alerts."""
    current.update((update.alert.key, update.alert) for update in updates)
