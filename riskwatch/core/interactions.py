"""What a click on an alert's Slack buttons does, pure: :func:`decide` takes the click,
the alert it names, who may act and the silences and acknowledgements in the store,
and returns the :class:`Outcome`: what to store, and what to tell the one who clicked.

Acknowledgements are stored per firing of an alert; :func:`in_force` says which one
holds now (an escalation clears it), and :func:`acknowledged` folds them into a poll's
decisions, holding back the reminders of acknowledged alerts. Nothing here reads a
clock or touches I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from riskwatch.core.evaluate import Decisions
from riskwatch.core.lifecycle import Alert, AlertKey, NoticeKind, State
from riskwatch.core.rules import Severity
from riskwatch.core.silences import Silence, exact

ACK = "riskwatch_ack"
SILENCE_1H = "riskwatch_silence_1h"
SILENCE_4H = "riskwatch_silence_4h"
UNSILENCE = "riskwatch_unsilence"
SILENCE_FOR = {SILENCE_1H: timedelta(hours=1), SILENCE_4H: timedelta(hours=4)}
ACTIONS = frozenset({ACK, UNSILENCE, *SILENCE_FOR})
_NAME = re.compile(r"[^A-Za-z0-9._-]")
_AUTHOR = re.compile(r"slack:<@([UW][A-Z0-9]+)(?:\|[A-Za-z0-9._-]*)?>")


@dataclass(frozen=True)
class Click:
    """One click on one button, as Slack sent it."""

    user: str  # the Slack user ID (U…, W…)
    username: str
    action: str  # the button's action_id
    alert_id: str  # from the button's value (see notify.blocks.button_value)
    firing_since: int  # epoch seconds of the firing the button was shown for
    channel: str
    message_ts: str
    action_ts: str

    @property
    def key(self) -> str:
        """What makes this click itself unique: a redelivery of it has the same key."""
        return "\x1f".join((self.channel, self.message_ts, self.action_ts, self.user,
                            self.action))

    @property
    def author(self) -> str:
        """``slack:<@U…|name>``: who clicked, as stored (``created_by``, ``acked_by``).

        In Slack it reads as a mention of the user; in ``riskwatch silence list`` the
        ID and the name are both there to read.
        """
        return f"slack:<@{self.user}|{_NAME.sub('', self.username)[:40]}>"


def mention(author: str) -> str | None:
    """The Slack mention (``<@U…>``) of an author written by :attr:`Click.author`;
    None for anyone else (a CLI user, shown as inert text)."""
    found = _AUTHOR.fullmatch(author)
    return f"<@{found.group(1)}>" if found else None


@dataclass(frozen=True)
class Acknowledgement:
    """An operator acknowledged one firing of an alert, at a severity."""

    key: AlertKey
    firing_since: datetime
    by: str
    at: datetime
    severity: Severity


class Verdict(StrEnum):
    """What became of a click (stored as the interaction's outcome)."""

    REFUSED = "refused"  # not an operator
    UNKNOWN = "unknown"  # no such alert (any more), or a button riskwatch did not make
    STALE = "stale"  # an acknowledgement of an earlier firing, or of a resolved alert
    ACKNOWLEDGED = "acknowledged"
    ALREADY = "already-acknowledged"
    SILENCED = "silenced"
    UNSILENCED = "unsilenced"
    NOT_SILENCED = "not-silenced"


@dataclass(frozen=True)
class Outcome:
    """What to store for a click, and what to tell the one who clicked (empty: nothing)."""

    verdict: Verdict
    reply: str = ""
    ack: Acknowledgement | None = None
    silence: Silence | None = None
    ended: tuple[str, ...] = ()  # ids of silences the click ends

    @property
    def changes(self) -> bool:
        """Whether the click changes what the alert's message shows."""
        return self.ack is not None or self.silence is not None or bool(self.ended)


def decide(click: Click, alert: Alert | None, operators: Iterable[str],
           silences: Sequence[Silence], acks: Sequence[Acknowledgement],
           now: datetime) -> Outcome:
    """What ``click`` on the buttons of ``alert`` does at ``now``.

    Only ``operators`` (user IDs, user groups already resolved) may act; anyone else is
    told so and nothing changes. *Acknowledge* holds for the firing it was clicked on;
    *Silence* makes a silence of exactly this alert (rule, account, symbol), authored by
    the clicker; *Unsilence* ends the silences the buttons made for it (a wider silence,
    such as one for every rule, is ended with the CLI, not from one alert's message).
    """
    if click.user not in set(operators):
        return Outcome(Verdict.REFUSED, "You are not allowed to acknowledge or silence "
                                        "riskwatch alerts (ask for RISKWATCH_SLACK_OPERATORS).")
    if alert is None or click.action not in ACTIONS:
        return Outcome(Verdict.UNKNOWN, "riskwatch no longer knows this alert.")
    if click.action == ACK:
        return _acknowledge(click, alert, acks, now)
    if click.action == UNSILENCE:
        return _unsilence(alert, silences, now)
    length = SILENCE_FOR[click.action]
    silence = Silence(
        id=silence_id(click), rule=exact(alert.key.rule), account=exact(alert.key.account),
        symbol=exact(alert.key.symbol), starts_at=now, ends_at=now + length,
        reason=f"silenced from Slack for {_hours(length)}", created_at=now,
        created_by=click.author)
    return Outcome(Verdict.SILENCED, silence=silence)


def silence_id(click: Click) -> str:
    """The id of the silence a click makes: the same for every delivery of the click."""
    return "slack-" + hashlib.sha256(click.key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def in_force(alert: Alert, acks: Iterable[Acknowledgement]) -> Acknowledgement | None:
    """The acknowledgement that holds for ``alert`` now: of its current firing, given
    since its last escalation (the first such one: a second click changes nothing)."""
    if alert.state is not State.FIRING or alert.firing_since is None:
        return None
    holding = [ack for ack in acks
               if ack.key == alert.key and ack.firing_since == alert.firing_since
               and (alert.escalated_at is None or ack.at >= alert.escalated_at)]
    return min(holding, key=lambda ack: ack.at) if holding else None


def shown(alert: Alert, acks: Iterable[Acknowledgement]) -> Alert:
    """``alert`` carrying the acknowledgement in force (or none)."""
    ack = in_force(alert, acks)
    by, at = (ack.by, ack.at) if ack is not None else ("", None)
    if (alert.acked_by, alert.acked_at) == (by, at):
        return alert
    return replace(alert, acked_by=by, acked_at=at)


def acknowledged(decisions: Decisions, alerts: Mapping[AlertKey, Alert],
                 acks: Sequence[Acknowledgement]) -> Decisions:
    """``decisions`` with each alert carrying its acknowledgement in force, and the
    reminders of acknowledged alerts held back (other notices go out as usual)."""
    by_key: dict[AlertKey, list[Acknowledgement]] = {}
    for ack in acks:
        by_key.setdefault(ack.key, []).append(ack)
    result = decisions.copy()
    keys = set(by_key) | {key for key, alert in alerts.items() if alert.acked_by}
    keys |= {key for key, alert in result.changed.items() if alert.acked_by}
    for key in keys:
        current = result.changed.get(key) or alerts.get(key)
        if current is None or key in result.dropped:
            continue
        updated = shown(current, by_key.get(key, ()))
        if updated is not current:
            result.changed[key] = updated
    result.notices = [
        replace(notice, alert=result.changed.get(notice.alert.key, notice.alert))
        for notice in result.notices
        if not (notice.kind is NoticeKind.REMINDER
                and result.changed.get(notice.alert.key, notice.alert).acked_by)]
    return result


def _acknowledge(click: Click, alert: Alert, acks: Sequence[Acknowledgement],
                 now: datetime) -> Outcome:
    firing = alert.firing_since
    if (alert.state is not State.FIRING or firing is None
            or int(firing.timestamp()) != click.firing_since):
        return Outcome(Verdict.STALE, "This alert is no longer firing as shown here; "
                                      "its newest message has the buttons that count.")
    holding = in_force(alert, acks)
    if holding is not None:
        by = mention(holding.by) or holding.by
        return Outcome(Verdict.ALREADY, f"Already acknowledged by {by}.")
    return Outcome(Verdict.ACKNOWLEDGED, ack=Acknowledgement(
        alert.key, firing, click.author, now, alert.severity))


def _unsilence(alert: Alert, silences: Sequence[Silence], now: datetime) -> Outcome:
    own = (exact(alert.key.rule), exact(alert.key.account), exact(alert.key.symbol))
    muting = [silence for silence in silences if silence.matches(alert.key, now)]
    ended = tuple(silence.id for silence in muting
                  if (silence.rule, silence.account, silence.symbol) == own)
    if ended:
        return Outcome(Verdict.UNSILENCED, ended=ended)
    if muting:
        return Outcome(Verdict.NOT_SILENCED, "A wider silence mutes this alert (" + ", ".join(
            silence.id for silence in muting) + "); end it with `riskwatch silence remove`.")
    return Outcome(Verdict.NOT_SILENCED, "This alert is not silenced.")


def _hours(length: timedelta) -> str:
    return f"{int(length.total_seconds() // 3600)}h"
