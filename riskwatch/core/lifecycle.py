"""The alert lifecycle, pure: inactive -> pending -> firing -> resolved.

:func:`step` takes an alert's previous state, what this poll observed for it and the
time, and returns the new state and the notice to send, if any. Nothing here reads a
clock or touches I/O, so every rule of SPEC §5 is a table test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from riskwatch.core.durations import format_duration
from riskwatch.core.rules import SEVERITIES, Rule, Severity

RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
KEEP_RESOLVED = timedelta(days=1)  # resolved alerts stay listed this long


class AlertKey(NamedTuple):
    """An alert is one rule on one account, and one symbol for asset and position rules."""

    rule: str
    account: str
    symbol: str = ""


class State(StrEnum):
    """Where an alert stands in its lifecycle (inactive alerts are not stored)."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class NoticeKind(StrEnum):
    """Why a notice is sent."""

    FIRING = "firing"
    ESCALATED = "escalated"
    DEESCALATED = "de-escalated"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    ACTION_CHECK = "action-check"  # set_leverage said OK, but the data still shows the old
    # told in the alert's thread: a silence covering it was made, ends soon, has ended
    SILENCED = "silenced"
    SILENCE_ENDING = "silence-ending"
    SILENCE_ENDED = "silence-ended"


SILENCE_KINDS = frozenset({NoticeKind.SILENCED, NoticeKind.SILENCE_ENDING,
                           NoticeKind.SILENCE_ENDED})


@dataclass(frozen=True, slots=True)
class Policy:
    """What the lifecycle needs of a rule (user rule or built-in alert)."""

    name: str
    metric: str
    scope: str
    levels: tuple[tuple[Severity, Decimal], ...]  # lowest severity first
    when: str = "above"
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    hysteresis: Decimal = Decimal(0)
    repeat: timedelta = timedelta(hours=1)
    send_resolved: bool = True
    channel: str | None = None
    description: str = ""
    runbook: str | None = None

    @classmethod
    def of(cls, rule: Rule) -> Policy:
        """The lifecycle view of a user rule."""
        metric = rule.metric
        if rule.change is not None:  # the alert is about the change, and says so
            metric = f"{rule.metric} change over {format_duration(rule.change)}"
        return cls(
            name=rule.name, metric=metric, scope=rule.scope,
            levels=tuple(rule.levels.ordered()), when=rule.when, for_=rule.for_,
            keep_firing_for=rule.keep_firing_for, hysteresis=rule.hysteresis,
            repeat=rule.repeat, send_resolved=rule.send_resolved, channel=rule.channel,
            description=rule.description, runbook=rule.runbook,
        )

    def breached(self, value: Decimal, held: Severity | None) -> tuple[Severity, Decimal] | None:
        """The highest level ``value`` breaches, and that level's threshold.

        A level at or below the ``held`` severity stays breached until the value is
        ``hysteresis`` past it on the safe side, so an alert does not flap on the line.
        """
        held_rank = RANK[held] if held is not None else -1
        for severity, level in reversed(self.levels):
            margin = self.hysteresis if RANK[severity] <= held_rank else None
            if self._beyond(value, level, margin):
                return severity, level
        return None

    def _beyond(self, value: Decimal, level: Decimal, margin: Decimal | None) -> bool:
        if self.when == "above":
            return value >= level or (margin is not None and margin > 0 and value > level - margin)
        return value <= level or (margin is not None and margin > 0 and value < level + margin)


@dataclass(frozen=True, slots=True)
class Alert:
    """The stored state of one alert."""

    key: AlertKey
    state: State
    severity: Severity
    exchange: str
    metric: str
    value: Decimal | None
    threshold: Decimal | None
    since: datetime  # when the current state began
    firing_since: datetime | None = None
    cleared_at: datetime | None = None  # first safe value seen while firing (keep_firing_for)
    last_notified_at: datetime | None = None
    description: str = ""
    runbook: str | None = None
    detail: str = ""  # what a built-in alert is about (an error message), or why it resolved
    thread: str | None = None  # outbox id of the message that announced the firing
    when: str = "above"
    muted: bool = False  # a notice of this alert was held back by a silence
    action: str = ""  # the leverage decision of this firing, once made (one per firing)
    # after set_leverage answered OK: when the data the call was decided on was taken; the
    # first newer snapshot checks the position's leverage, then this is cleared
    verify_after: datetime | None = None
    scope: str = ""  # the rule's scope (account, asset, position; source for built-ins)
    # acknowledged from Slack during this firing: who (``slack:<@U…|name>``) and when;
    # reminders stop until an escalation clears it
    acked_by: str = ""
    acked_at: datetime | None = None
    escalated_at: datetime | None = None  # the last escalation of this firing

    @property
    def active(self) -> bool:
        """Pending or firing."""
        return self.state is not State.RESOLVED


@dataclass(frozen=True, slots=True)
class Observation:
    """What one poll saw for one alert key: a value (None = unknown), or that the row is gone."""

    key: AlertKey
    exchange: str
    value: Decimal | None
    gone: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SilenceNote:
    """The silence a silence notice tells of: who made it, until when, why, who ended it."""

    id: str
    created_by: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    ended_by: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """A change worth telling people about."""

    kind: NoticeKind
    alert: Alert
    previous_severity: Severity | None = None
    channel: str | None = None
    silence: SilenceNote | None = None  # for the silence kinds


def step(
    policy: Policy, previous: Alert | None, seen: Observation, now: datetime
) -> tuple[Alert | None, Notice | None]:
    """Advance one alert by one observation; return (new state or None if inactive, notice)."""
    current = previous if previous is not None and previous.active else None
    if seen.gone:
        return _clear(policy, current, now, detail="no longer reported (closed)")
    if seen.value is None:
        return previous, None  # missing data never changes an alert
    held = current.severity if current is not None else None
    hit = policy.breached(seen.value, held)
    if hit is None:
        return _safe(policy, current, previous, seen, now)
    severity, threshold = hit
    if current is None:
        pending = Alert(
            key=seen.key, state=State.PENDING, severity=severity, exchange=seen.exchange,
            metric=policy.metric, value=seen.value, threshold=threshold, since=now,
            description=policy.description, runbook=policy.runbook,
            detail=seen.detail, when=policy.when, scope=policy.scope,
        )
        return _maybe_fire(policy, pending, now)
    if _unchanged(policy, current, seen, severity, now):
        return current, None  # the common case at scale: nothing to write, nothing to say
    updated = replace(current, severity=severity, value=seen.value, threshold=threshold,
                      cleared_at=None, exchange=seen.exchange, detail=seen.detail,
                      description=policy.description, runbook=policy.runbook)
    if current.state is State.PENDING:
        return _maybe_fire(policy, updated, now)
    return _firing_update(policy, current, updated, now)


class Steady:
    """Tells, for one policy at one poll, whether stepping an alert would change nothing.

    That is the common case at scale: a firing alert that sees its own value again, at
    the severity that value breaches even without hysteresis (so with it too: hysteresis
    only widens the held level), with no reminder due. :func:`step` would return it
    untouched, so the evaluator need not build an observation at all.
    """

    def __init__(self, policy: Policy, now: datetime) -> None:
        self.policy = policy
        # a reminder is due once the last notice is at or before this instant
        self.remind_at_or_before = now - policy.repeat if policy.repeat > timedelta(0) else None
        self.highest_first = tuple(reversed(policy.levels))
        self.above = policy.when == "above"

    def holds(self, current: Alert, value: Decimal) -> bool:
        """Would ``step(policy, current, value)`` return ``current`` unchanged, with no notice?"""
        if (current.state is not State.FIRING or value != current.value
                or current.cleared_at is not None or current.detail):
            return False
        last = current.last_notified_at or current.since
        if self.remind_at_or_before is not None and last <= self.remind_at_or_before:
            return False
        for severity, level in self.highest_first:  # the level breached without hysteresis
            if value >= level if self.above else value <= level:
                return severity == current.severity
        return False


def _unchanged(policy: Policy, current: Alert, seen: Observation, severity: Severity,
               now: datetime) -> bool:
    """A firing alert seeing the same value at the same severity, with no reminder due."""
    return (current.state is State.FIRING and severity == current.severity
            and seen.value == current.value and current.cleared_at is None
            and seen.detail == current.detail and not _reminder_due(policy, current, now))


def _reminder_due(policy: Policy, current: Alert, now: datetime) -> bool:
    last = current.last_notified_at or current.since
    return policy.repeat > timedelta(0) and now - last >= policy.repeat


def _maybe_fire(policy: Policy, pending: Alert, now: datetime) -> tuple[Alert, Notice | None]:
    if now - pending.since < policy.for_:
        return pending, None
    firing = replace(pending, state=State.FIRING, since=now, firing_since=now,
                     last_notified_at=now)
    return firing, Notice(NoticeKind.FIRING, firing, channel=policy.channel)


def _firing_update(
    policy: Policy, current: Alert, updated: Alert, now: datetime
) -> tuple[Alert, Notice | None]:
    if updated.severity != current.severity:
        up = RANK[updated.severity] > RANK[current.severity]
        changed = replace(updated, last_notified_at=now)
        if up:  # an escalation clears an acknowledgement: it was given for less
            changed = replace(changed, acked_by="", acked_at=None, escalated_at=now)
        kind = NoticeKind.ESCALATED if up else NoticeKind.DEESCALATED
        return changed, Notice(kind, changed, current.severity, policy.channel)
    if _reminder_due(policy, current, now):
        reminded = replace(updated, last_notified_at=now)
        return reminded, Notice(NoticeKind.REMINDER, reminded, channel=policy.channel)
    return updated, None


def _safe(
    policy: Policy, current: Alert | None, previous: Alert | None, seen: Observation,
    now: datetime,
) -> tuple[Alert | None, Notice | None]:
    if current is None:
        return previous, None
    if current.state is State.PENDING:
        return None, None  # never fired: it simply goes back to inactive
    cleared_at = current.cleared_at or now
    if now - cleared_at < policy.keep_firing_for:
        return replace(current, value=seen.value, cleared_at=cleared_at), None
    return _clear(policy, replace(current, value=seen.value), now, detail="")


def _clear(
    policy: Policy, current: Alert | None, now: datetime, *, detail: str
) -> tuple[Alert | None, Notice | None]:
    """Resolve a firing alert (a pending one just goes away)."""
    if current is None or current.state is State.PENDING:
        return None, None
    resolved = replace(current, state=State.RESOLVED, since=now, last_notified_at=now,
                       detail=detail or current.detail)
    if not policy.send_resolved:
        return resolved, None
    return resolved, Notice(NoticeKind.RESOLVED, resolved, channel=policy.channel)


def resolve_removed(alert: Alert, now: datetime) -> tuple[Alert | None, Notice | None]:
    """Resolve an alert whose rule no longer exists."""
    policy = Policy(name=alert.key.rule, metric=alert.metric, scope="", levels=())
    return _clear(policy, alert, now, detail="its rule was removed")


def expired(alert: Alert, now: datetime) -> bool:
    """A resolved alert old enough to drop from the store."""
    return alert.state is State.RESOLVED and now - alert.since > KEEP_RESOLVED
