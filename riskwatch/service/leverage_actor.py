"""The shell around leverage actions: plan (pure), call the API, audit, and show the outcome.

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
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from riskwatch.config.logs import Redactor
from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts, leverage
from riskwatch.core.evaluate import CompiledRule, Decisions, step_into
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.rules import Action
from riskwatch.core.silences import Silence
from riskwatch.core.snapshot import Snapshot
from riskwatch.errors import StoreError
from riskwatch.service import leverage_call
from riskwatch.service.telemetry import Telemetry
from riskwatch.source.client import TreadClient
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.actions")


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
                  alerts: dict[AlertKey, Alert], snapshot: Snapshot | None,
                  muting: list[Silence], now: datetime) -> None:
        """Decide and carry out due actions; note each outcome on its alert and notice."""
        by_rule = {c.rule.name: c.rule.action for c in rules if c.rule.action is not None}
        if not by_rule:
            return
        current = {**alerts, **decisions.changed}
        for key in decisions.dropped:
            current.pop(key, None)
        _check_calls(decisions, current, by_rule, snapshot, now)
        self._recall(decisions, current, by_rule)
        limit = self.settings.max_actions_per_hour
        used = sum(1 for d in self.store.actions(since=now - timedelta(hours=1))
                   if d.outcome in leverage.COUNTED)
        planned = leverage.plan(current.values(), by_rule, snapshot, self.settings.actions,
                               muting, used, limit, now)
        prepared = [await self._prepare(decision) for decision in planned]
        # every decision is in the audit log before any call; if this fails, none is made
        self.store.record_actions(prepared, {
            key: _decided_before(alerts.get(key), current[key], d.summary())
            for d in prepared if d.outcome == "calling" for key in [_key(d)]})
        done = [await self._call(d) if d.outcome == "calling" else d for d in prepared]
        self._record_outcomes([d for d in done if d.audit_id is not None])
        for decision in done:
            self._log(decision)
            self.telemetry.actions.labels(decision.mode, decision.outcome).inc()
            _note(decisions, current, decision, _data_time(snapshot, decision.account, now))
        if self.settings.actions != "off":
            used += sum(1 for d in done if d.outcome in leverage.COUNTED)
            policy, observation = builtin_alerts.action_limit(used, limit)
            step_into(decisions, policy, observation, alerts, now)

    def _recall(self, decisions: Decisions, current: dict[AlertKey, Alert],
                by_rule: Mapping[str, Action]) -> None:
        """Take up decisions the store holds for alerts this process sees as undecided.

        The store has them when a poll stopped after its call (before it saved the alert),
        or when another replica decided: an active alert stored with a decision is decided
        for this firing, since a firing only ends by a resolution, which would be stored.
        """
        for key, alert in list(current.items()):
            action = by_rule.get(key.rule)
            if action is None or not leverage.due(alert, action):
                continue
            stored = self.store.alert(key)
            if stored is not None and stored.active and stored.action:
                log.warning("leverage action already decided for this firing",
                            rule=key.rule, account=key.account, pair=key.symbol,
                            summary=stored.action)
                _show(decisions, current, replace(alert, action=stored.action,
                                                  verify_after=stored.verify_after),
                      remind=False)

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


def _check_calls(decisions: Decisions, current: dict[AlertKey, Alert],
                 by_rule: Mapping[str, Action], snapshot: Snapshot | None,
                 now: datetime) -> None:
    """After set_leverage answered OK, check the position in the next newer data, once."""
    for key, alert in list(current.items()):
        if alert.verify_after is None:
            continue
        action = by_rule.get(key.rule)
        if action is None or alert.state is not State.FIRING:  # resolved: nothing to say
            _show(decisions, current, replace(alert, verify_after=None), remind=False)
            continue
        seen = leverage.leverage_after_call(alert, snapshot, now)
        if seen is None:
            continue
        if seen <= action.set_leverage:
            log.info("leverage action confirmed by the data", rule=key.rule,
                     account=key.account, pair=key.symbol, leverage=str(seen))
            _show(decisions, current, replace(alert, verify_after=None), remind=False)
            continue
        log.warning("set_leverage answered OK but the leverage has not changed",
                    rule=key.rule, account=key.account, pair=key.symbol,
                    leverage=str(seen), target=str(action.set_leverage))
        _show(decisions, current, replace(alert, verify_after=None,
                                          action=leverage.still_high(alert.action, seen)),
              kind=NoticeKind.ACTION_CHECK)  # in the alert's thread, where threads exist


def _note(decisions: Decisions, current: dict[AlertKey, Alert],
          decision: leverage.Decision, data_time: datetime) -> None:
    """Mark the alert as decided for this firing, and show the outcome in its message."""
    alert = replace(current[_key(decision)], action=decision.summary(),
                    verify_after=data_time if decision.outcome == "acted" else None)
    _show(decisions, current, alert)


def _show(decisions: Decisions, current: dict[AlertKey, Alert], alert: Alert,
          remind: bool = True, kind: NoticeKind = NoticeKind.REMINDER) -> None:
    """Store ``alert`` and put it in this poll's notice of it (a ``kind`` notice if there is
    none and ``remind``)."""
    key = alert.key
    current[key] = decisions.changed[key] = alert
    for index, notice in enumerate(decisions.notices):
        if notice.alert.key == key:
            decisions.notices[index] = replace(notice, alert=alert)
            return
    if remind:
        decisions.notices.append(Notice(kind, alert))
