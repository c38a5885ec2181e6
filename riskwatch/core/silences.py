"""Silences: mute notifications (and actions) for matching alerts until they expire.

Silenced alerts still change state and are listed; only their notices are held back.
When a silence ends while its alert still fires, the desk is told once (a reminder),
so a silence can never hide a firing alert for longer than it says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase

from riskwatch.core.lifecycle import (
    RANK,
    Alert,
    AlertKey,
    Notice,
    NoticeKind,
    SilenceNote,
    State,
)

ENDING_NOTICE = timedelta(minutes=10)  # "ends soon" is told this long before the end
MAX_THREADS_TOLD = 20  # threads told of one stage of one silence (most severe alerts first)


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
    ended_by: str = ""  # who ended it early (Slack's *Unsilence*, `riskwatch silence remove`)

    def active(self, now: datetime) -> bool:
        """In force at ``now``."""
        return self.starts_at <= now < self.ends_at

    def matches(self, key: AlertKey, now: datetime) -> bool:
        """Does this silence mute the alert ``key`` at ``now``?"""
        return self.active(now) and self.covers(key)

    def covers(self, key: AlertKey) -> bool:
        """Does this silence name the alert ``key`` (whether or not it is in force)?"""
        return (fnmatchcase(key.rule, self.rule)
                and (self.account is None or fnmatchcase(key.account, self.account))
                and (self.symbol is None or fnmatchcase(key.symbol, self.symbol)))

    def note(self) -> SilenceNote:
        """What a silence notice says of this silence."""
        return SilenceNote(self.id, self.created_by, self.starts_at, self.ends_at,
                           self.reason, self.ended_by)


def exact(name: str) -> str:
    """A glob that matches ``name`` and nothing else (``*``, ``?`` and ``[`` escaped)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)


class Stage(StrEnum):
    """What the thread of a silenced alert is told, once per silence each."""

    CREATED = "created"
    ENDING = "ending"
    ENDED = "ended"


_KIND = {Stage.CREATED: NoticeKind.SILENCED, Stage.ENDING: NoticeKind.SILENCE_ENDING,
         Stage.ENDED: NoticeKind.SILENCE_ENDED}


def due_stages(silence: Silence, told: Iterable[Stage], now: datetime) -> list[Stage]:
    """The stages of ``silence`` to mark told at ``now``, given those told before.

    Made is told while the silence has not ended; ends soon in the last
    :data:`ENDING_NOTICE` of it, once made was told at an earlier poll (a silence first
    seen that close to its end says its end time when made is told); ended once it
    ended, and only if made was told: a silence that came and went between two polls,
    or was stored before these notices existed, is marked told without a word. Each
    stage is returned once; :func:`stage_notices` says which are worth a message.
    """
    before = set(told)
    due: list[Stage] = []
    ended = now >= silence.ends_at
    if Stage.CREATED not in before:
        due.append(Stage.CREATED)
    if Stage.ENDING not in before and (ended or now >= silence.ends_at - ENDING_NOTICE):
        due.append(Stage.ENDING)
    if Stage.ENDED not in before and ended:
        due.append(Stage.ENDED)
    return due


def stage_notices(silence: Silence, stages: Sequence[Stage], told: Iterable[Stage],
                  alerts: Mapping[AlertKey, Alert], now: datetime) -> list[Notice]:
    """The thread notices of ``stages`` (just due, see :func:`due_stages`) of ``silence``:
    one per firing alert it covers that has a thread, most severe first, at most
    :data:`MAX_THREADS_TOLD`."""
    before = set(told)
    made_before = Stage.CREATED in before
    ended = now >= silence.ends_at
    worth = {Stage.CREATED: not ended, Stage.ENDING: made_before and not ended,
             Stage.ENDED: made_before}
    spoken = [stage for stage in stages if worth[stage]]
    if not spoken:
        return []
    covered = sorted((alert for key, alert in alerts.items()
                      if alert.state is State.FIRING and alert.thread is not None
                      and silence.covers(key)),
                     key=lambda alert: (-RANK.get(alert.severity, 0), alert.key))
    note = silence.note()
    return [Notice(_KIND[stage], alert, silence=note)
            for stage in spoken for alert in covered[:MAX_THREADS_TOLD]]


def silence_notices(
    silences: Sequence[Silence], told: Mapping[str, frozenset[Stage]],
    alerts: Mapping[AlertKey, Alert], now: datetime,
) -> tuple[list[Notice], list[tuple[str, Stage]]]:
    """Every silence notice due at ``now``, and the (silence id, stage) pairs to store as
    told with them (so that each is told once, across restarts and replicas)."""
    notices: list[Notice] = []
    marked: list[tuple[str, Stage]] = []
    for silence in silences:
        before = told.get(silence.id, frozenset())
        if len(before) == len(Stage):
            continue
        stages = due_stages(silence, before, now)
        if stages:
            notices.extend(stage_notices(silence, stages, before, alerts, now))
            marked.extend((silence.id, stage) for stage in stages)
    return notices, marked


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
