"""Silences: mute notifications (and actions) for matching alerts until they expire.

Silenced alerts still change state and are listed; only their notices are held back.
When a silence ends while its alert still fires, the desk is told once (a reminder),
so a silence can never hide a firing alert for longer than it says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fnmatch import fnmatchcase

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State


@dataclass(frozen=True)
class Silence:
    """Mutes alerts of ``rule`` (a glob), optionally only one account and symbol (globs)."""

    id: str
    rule: str
    account: str | None
    symbol: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_at: datetime
    created_by: str = ""  # who added it (`riskwatch silence add --by`, default the OS user)

    def active(self, now: datetime) -> bool:
        """In force at ``now``."""
        return self.starts_at <= now < self.ends_at

    def matches(self, key: AlertKey, now: datetime) -> bool:
        """Does this silence mute the alert ``key`` at ``now``?"""
        return (self.active(now) and fnmatchcase(key.rule, self.rule)
                and (self.account is None or fnmatchcase(key.account, self.account))
                and (self.symbol is None or fnmatchcase(key.symbol, self.symbol)))


def silenced(key: AlertKey, silences: Iterable[Silence], now: datetime) -> bool:
    """Is ``key`` muted by any silence at ``now``?"""
    return any(silence.matches(key, now) for silence in silences)


def apply(
    notices: Sequence[Notice], alerts: Mapping[AlertKey, Alert],
    changed: Mapping[AlertKey, Alert], silences: Sequence[Silence], now: datetime,
) -> tuple[dict[AlertKey, Alert], list[Notice]]:
    """The poll's alert changes with the ``muted`` marks, and the notices to send.

    Muted notices are held back (their alerts marked ``muted``); a firing alert whose
    silence has ended since it was muted gets a reminder. Returns new values: ``notices``
    and ``changed`` are left as they were.
    """
    marked = dict(changed)
    send: list[Notice] = []
    noticed: set[AlertKey] = set()
    for notice in notices:
        key = notice.alert.key
        noticed.add(key)
        current = marked.get(key, notice.alert)
        if silenced(key, silences, now):
            marked[key] = replace(current, muted=True)
        else:
            if current.muted:
                marked[key] = replace(current, muted=False)
            send.append(notice)
    for key, alert in {**alerts, **changed}.items():
        if not alert.muted or key in noticed or silenced(key, silences, now):
            continue
        unmuted = replace(alert, muted=False, last_notified_at=now)
        marked[key] = unmuted
        if alert.state is State.FIRING:
            send.append(Notice(NoticeKind.REMINDER, unmuted))
    return marked, send
