"""The last pure step of a poll: the leverage actor's findings and the silences in force,
folded into the poll's decisions.

The actor reports what it learned about alerts (an action's outcome, a check of the
data after a call, a decision another replica made) as :class:`AlertUpdate` values; it
decides nothing about notices. Here, and only here, an update becomes part of the poll's
notice of that alert, or a notice of its own. The silences then hold back what they
mute, acknowledgements hold back reminders, and the silences made, ending or ended are
told in the threads of the alerts they cover. Every function returns new values and
leaves what it was given as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum

from riskwatch.core import silences as silencing
from riskwatch.core.evaluate import Decisions, stepped
from riskwatch.core.interactions import Acknowledgement, acknowledged
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, Observation, Policy
from riskwatch.core.silences import Silence, Stage


class Tell(Enum):
    """How the desk hears of an update when the poll has no notice of its alert yet."""

    QUIETLY = "quietly"  # stored, and shown in a notice of this poll if there is one
    AS_REMINDER = "reminder"  # an action's outcome: the alert's message shows it
    AS_CHECK = "action-check"  # the data contradicts a call that answered OK


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    """An alert as the leverage actor left it, and how to tell the desk."""

    alert: Alert
    tell: Tell = Tell.QUIETLY


_KINDS = {Tell.AS_REMINDER: NoticeKind.REMINDER, Tell.AS_CHECK: NoticeKind.ACTION_CHECK}


def finish(
    decisions: Decisions, alerts: Mapping[AlertKey, Alert], updates: Sequence[AlertUpdate],
    later: Sequence[tuple[Policy, Observation]], silences: Sequence[Silence], now: datetime,
    acks: Sequence[Acknowledgement] = (),
) -> Decisions:
    """The poll's final decisions: the reminders of alerts acknowledged (``acks``) held
    back, ``updates`` shown, ``later`` observations (such as the action limit) stepped,
    and the notices that ``silences`` mute held back."""
    shown = with_updates(acknowledged(decisions, alerts, acks), updates)
    for policy, observation in later:
        shown = stepped(shown, policy, observation, alerts, now)
    return muted(shown, alerts, silences, now)


def with_updates(decisions: Decisions, updates: Sequence[AlertUpdate]) -> Decisions:
    """``decisions`` with each update stored, and shown in the poll's notice of its alert
    (or in a notice of its own, when it is to be told and there is none)."""
    result = decisions.copy()
    for update in updates:
        alert = update.alert
        result.changed[alert.key] = alert
        index = next((i for i, notice in enumerate(result.notices)
                      if notice.alert.key == alert.key), None)
        if index is not None:
            result.notices[index] = replace(result.notices[index], alert=alert)
        elif update.tell is not Tell.QUIETLY:
            result.notices.append(Notice(_KINDS[update.tell], alert))
    return result


def muted(decisions: Decisions, alerts: Mapping[AlertKey, Alert],
          silences: Sequence[Silence], now: datetime) -> Decisions:
    """``decisions`` with the notices ``silences`` mute held back and their alerts marked."""
    changed, notices = silencing.apply(decisions.notices, alerts, decisions.changed,
                                       silences, now)
    return Decisions(changed, set(decisions.dropped), notices, list(decisions.skipped))


def with_threads(decisions: Decisions, threads: Mapping[AlertKey, str]) -> Decisions:
    """``decisions`` with each new firing message's id kept on its alert (its thread)."""
    result = decisions.copy()
    for key, thread in threads.items():
        if key in result.changed:
            result.changed[key] = replace(result.changed[key], thread=thread)
    return result


def with_silence_notices(
    decisions: Decisions, alerts: Mapping[AlertKey, Alert], silences: Sequence[Silence],
    told: Mapping[str, frozenset[Stage]], now: datetime,
) -> tuple[Decisions, list[tuple[str, Stage]]]:
    """``decisions`` with the silence notices due at ``now`` (after muting: they tell of
    the silence itself), and the (silence id, stage) pairs to store as told."""
    current = {key: alert for key, alert in {**alerts, **decisions.changed}.items()
               if key not in decisions.dropped}
    notices, marked = silencing.silence_notices(silences, told, current, now)
    result = decisions.copy()
    result.notices.extend(notices)
    return result, marked
