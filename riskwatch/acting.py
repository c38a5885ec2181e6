"""The shell around leverage actions: plan (pure), call the API, audit, and show the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from riskwatch import actions, builtin
from riskwatch.alerts import Alert, AlertKey, Notice, NoticeKind
from riskwatch.errors import TreadError
from riskwatch.evaluate import CompiledRule, Decisions, step_into
from riskwatch.settings import Settings
from riskwatch.silences import Silence
from riskwatch.snapshot import Snapshot
from riskwatch.store import Store
from riskwatch.telemetry import Telemetry
from riskwatch.tread import TreadClient

log = structlog.get_logger("riskwatch.actions")


class Actor:
    """Carries out the leverage decisions of a poll."""

    def __init__(self, settings: Settings, store: Store, client: TreadClient,
                 telemetry: Telemetry) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.telemetry = telemetry
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
        limit = self.settings.max_actions_per_hour
        used = sum(1 for d in self.store.actions(since=now - timedelta(hours=1))
                   if d.outcome in actions.COUNTED)
        planned = actions.plan(current.values(), by_rule, snapshot, self.settings.actions,
                               muting, used, limit, now)
        done = [await self._carry_out(decision) for decision in planned]
        if done:
            self.store.record_actions(done)
        for decision in done:
            self.telemetry.actions.labels(decision.mode, decision.outcome).inc()
            _note(decisions, current, decision)
        if self.settings.actions != "off":
            used += sum(1 for d in done if d.outcome in actions.COUNTED)
            policy, observation = builtin.action_limit(used, limit)
            step_into(decisions, policy, observation, alerts, now)

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


def _note(decisions: Decisions, current: dict[AlertKey, Alert],
          decision: actions.Decision) -> None:
    """Mark the alert as decided for this firing, and show the outcome in its message."""
    key = AlertKey(decision.rule, decision.account, decision.pair)
    alert = replace(current[key], action=decision.summary())
    decisions.changed[key] = alert
    for index, notice in enumerate(decisions.notices):
        if notice.alert.key == key:
            decisions.notices[index] = replace(notice, alert=alert)
            return
    decisions.notices.append(Notice(NoticeKind.REMINDER, alert))
