"""Leverage decisions (SPEC §6), pure: what to do about alerts that reached their action level.

:func:`plan` decides, for the alerts that reached their rule's ``action.at`` level in
this firing, what to do: call the API, report a dry run, or skip (and why). It only
ever lowers leverage, acts at most once per firing, never while silenced, never past
the hourly cap, and never outside ``enforce``. :mod:`riskwatch.service.leverage_call` makes
the call.

A call is written to the audit log as ``calling`` before it is made, and the row is
then given its outcome, so a call is never made without its row, and a row still
``calling`` says the outcome was never recorded. :func:`leverage_after_call` reads, in
a snapshot newer than the one a successful call was decided on, what leverage the
position shows now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from riskwatch.core.lifecycle import RANK, Alert, State
from riskwatch.core.rules import Action
from riskwatch.core.silences import Silence, silenced
from riskwatch.core.snapshot import Snapshot

Mode = Literal["off", "dry-run", "enforce"]
Outcome = Literal["call", "calling", "acted", "dry-run", "skipped", "failed", "unknown"]
# decisions that use up the hourly cap: every call made or attempted, and dry runs
COUNTED = frozenset({"calling", "acted", "dry-run", "failed", "unknown"})
NOT_RECORDED = ("no outcome recorded (riskwatch stopped, or its store failed, during or "
                "right after the call)")


@dataclass(frozen=True)
class Decision:
    """One leverage decision, as the audit log records it."""

    at: datetime
    rule: str
    account: str
    exchange: str
    pair: str
    from_leverage: Decimal | None
    to_leverage: Decimal
    mode: Mode
    outcome: Outcome
    detail: str = ""
    account_id: str | None = None
    audit_id: str | None = None  # the audit row of a call, written before the call is made

    def summary(self) -> str:
        """One line for Slack and the log: what was done or why not."""
        lower = (f"{self.pair} on {self.account} from {_x(self.from_leverage)} "
                 f"to {_x(self.to_leverage)}")
        if self.outcome == "acted":
            return f"lowered {lower}"
        if self.outcome == "dry-run":
            return f"would lower {lower} (dry run: RISKWATCH_ACTIONS=dry-run)"
        if self.outcome == "failed":
            return f"failed to lower {lower}: {self.detail}"
        if self.outcome == "unknown":
            return (f"called set_leverage to lower {lower}; outcome unknown, not retried: "
                    f"{self.detail}")
        if self.outcome == "calling":
            return f"called set_leverage to lower {lower}; {NOT_RECORDED}"
        return f"no leverage action: {self.detail}"


def _x(value: Decimal | None) -> str:
    return "unknown" if value is None else f"{value.normalize():f}x"


def leverage_text(value: Decimal) -> str:
    """Leverage as the API takes it: ``"5"``, ``"2.5"``."""
    return f"{value.normalize():f}"


def due(alert: Alert, action: Action) -> bool:
    """Has this firing reached the action's level without a decision yet?"""
    return (alert.state is State.FIRING and not alert.action
            and RANK[alert.severity] >= RANK[action.at])


def plan(
    alerts: Iterable[Alert], actions: Mapping[str, Action], snapshot: Snapshot | None,
    mode: Mode, silences: Sequence[Silence], used_this_hour: int, limit: int, now: datetime,
) -> list[Decision]:
    """Decide every due action. ``used_this_hour`` counts earlier calls and dry runs."""
    decisions: list[Decision] = []
    used = used_this_hour
    for alert in alerts:
        action = actions.get(alert.key.rule)
        if action is None or not due(alert, action):
            continue
        decision = _decide(alert, action, snapshot, mode, silences, used >= limit, now)
        if decision.outcome in {"call", "dry-run"}:
            used += 1
        decisions.append(decision)
    return decisions


def _decide(alert: Alert, action: Action, snapshot: Snapshot | None, mode: Mode,
            silences: Sequence[Silence], capped: bool, now: datetime) -> Decision:
    account = snapshot.account(alert.key.account) if snapshot else None
    row = None if account is None else next(
        (a for a in account.assets if a.symbol == alert.key.symbol
         and a.asset_type == "position"), None)
    current = None if row is None else row.leverage
    base = Decision(now, alert.key.rule, alert.key.account, alert.exchange, alert.key.symbol,
                    current, action.set_leverage, mode, "skipped",
                    account_id=account.id if account else None)
    reason = _reason_to_skip(alert, mode, silences, capped, current, action.set_leverage, now)
    if reason:
        return replace(base, detail=reason)
    return replace(base, outcome="dry-run" if mode == "dry-run" else "call")


def _reason_to_skip(alert: Alert, mode: Mode, silences: Sequence[Silence], capped: bool,
                    current: Decimal | None, target: Decimal, now: datetime) -> str:
    if mode == "off":
        return "actions are off (RISKWATCH_ACTIONS=off)"
    if silenced(alert.key, silences, now):
        return "the alert is silenced"
    if current is None:
        return "the current leverage is unknown"
    if target >= current:
        return f"target {_x(target)} is not below the current {_x(current)}"
    if capped:
        return "the hourly limit of actions is reached (RISKWATCH_MAX_ACTIONS_PER_HOUR)"
    return ""


def leverage_after_call(alert: Alert, snapshot: Snapshot | None, now: datetime) -> Decimal | None:
    """The leverage the alert's position shows in data newer than its successful call's.

    None while there is nothing to check: no call awaits a check, the account's data is
    not newer than the data the call was decided on, or the leverage is not reported.
    """
    if alert.verify_after is None or snapshot is None:
        return None
    account = snapshot.account(alert.key.account)
    if account is None or (account.taken_at or now) <= alert.verify_after:
        return None
    row = next((a for a in account.assets if a.symbol == alert.key.symbol
                and a.asset_type == "position"), None)
    return None if row is None else row.leverage


def still_high(action: str, leverage: Decimal) -> str:
    """The action line of an alert whose successful call did not show in the next snapshot."""
    return f"{action}; set_leverage answered OK but leverage is still {_x(leverage)}"
