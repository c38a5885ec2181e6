"""Alerts as Slack Block Kit messages, with the mrkdwn text as their notification fallback.

A message is a header, then per alert a section (its state, severity and rule on the first
line, the rule's description, and fields for account and exchange, symbol, value, level
and how long it has fired), a context line (what went wrong, the leverage action's
outcome, the runbook) and, when asked for, the buttons an operator clicks. Compact
messages (the alerts of a big poll past the first detailed ones) are sections of one
line per alert.

Every message stays within Slack's limits whatever the strings in it: 50 blocks, 150
characters of header, 3,000 of section text, 2,000 of a field, 10 fields a section, and
:data:`MAX_BLOCKS_CHARS` of blocks in all (Slack refuses ``msg_blocks_too_long`` past
about 13,200 characters, counted its own way; the JSON we measure counts more than any
text in it). API strings are the inert code spans of :func:`render.slack_code`, cut
shorter where a field would otherwise pass its limit; should a message still not fit
(an in-place update that shows more than the post did), it shows one line per alert,
and past that counts the alerts it leaves out, so a message is never refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from riskwatch.core.interactions import ACK, SILENCE_1H, SILENCE_4H, UNSILENCE
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify import render

Block = dict[str, Any]

MAX_BLOCKS = 50  # blocks in one message
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3_000
MAX_FIELD_TEXT = 2_000  # a section field, and (by our choice) a context element
MAX_FIELDS = 10
MAX_BLOCKS_CHARS = 12_000  # the blocks' JSON; Slack refuses past about 13,200
BLOCKS_PER_ALERT = 3  # section, context, actions
LINE_BUDGET = 2_000  # one alert's line in a compact message
NAME_BUDGET = 500  # one API string in a compact line, escaped (three fit in LINE_BUDGET)
RULE_LIMIT = 100  # characters shown of a rule name
DESCRIPTION_LIMIT = 1_000  # characters shown of a rule's description
RUNBOOK_LIMIT = 1_000  # a longer runbook link is not shown as a link
LINK_LIMIT = 300  # characters of a status page link; a longer one is left out
LINK_ROOM = 200  # what the planner counts for it (a longer one may turn a message compact)
Link = Callable[[str], str]  # an account's name -> the address of its status page


def status_link(public_url: str) -> Link:
    """Links to the accounts' pages under ``RISKWATCH_PUBLIC_URL``."""
    return lambda account: f"{public_url}/accounts/{quote(account, safe='')}"

GROWTH = 40  # characters a message may grow between planning and sending (durations)
BUTTON_KINDS = frozenset({NoticeKind.FIRING, NoticeKind.REMINDER})
ACTION_IDS = (ACK, SILENCE_1H, SILENCE_4H, UNSILENCE)


@dataclass(frozen=True)
class SlackMessage:
    """What a Slack sink sends: ``blocks`` to read, ``text`` for notifications and search."""

    text: str
    blocks: list[Block]


def message(notices: Sequence[Notice], now: datetime, *, compact: bool = False,
            folded: int = 0, buttons: bool = False, link: Link | None = None) -> SlackMessage:
    """Alerts that changed in one poll as one Slack message (one line each when compact).

    ``buttons``: firing alerts carry *Acknowledge* and *Silence* buttons (only for the
    Web API with operators configured; a webhook cannot receive clicks). ``folded``: the
    message sums up that many messages that waited too long for Slack. ``link``: the
    address of an account's status page (``RISKWATCH_PUBLIC_URL``), shown on each alert.
    """
    text = render.slack_message(notices, now, compact=compact, folded=folded)
    if folded:
        note = f"Folded from {folded} messages that waited for Slack."
        blocks = _compact(f"riskwatch: where {len(notices)} alerts stand now", notices, note)
    elif compact:
        blocks = _compact(f"riskwatch: {len(notices)} more alerts changed", notices)
    else:
        blocks = _detailed(notices, now, buttons, link)
    return SlackMessage(text, blocks)


def current_state(alerts: Sequence[Alert], now: datetime, *,
                  buttons: bool = False, link: Link | None = None) -> SlackMessage:
    """The firing message as it is rewritten in place: where each of its alerts stands now."""
    notices = [Notice(NoticeKind.RESOLVED if alert.state is State.RESOLVED else NoticeKind.FIRING,
                      alert) for alert in alerts]
    return SlackMessage(render.current_state_message(alerts, now),
                        _detailed(notices, now, buttons, link))


def planned_size(notice: Notice, *, compact: bool, linked: bool = False) -> int:
    """About how many characters ``notice`` takes in a message, as text or as blocks,
    whichever is more (for the planner, which keeps a message within
    :data:`render.MESSAGE_BUDGET`; the blocks' own budget is larger by the header's room).

    Buttons are counted for every alert that may carry them: whether a destination
    shows buttons is known only when the message is sent.
    """
    text = render.rendered_size(notice, compact=compact)
    if compact:
        return max(text, size([_line_only(notice)]))
    room = LINK_ROOM if linked and notice.alert.key.account else 0
    return max(text, size(alert_blocks(notice, notice.alert.since, buttons=True))
               + GROWTH + room)


def size(blocks: Sequence[Block]) -> int:
    """The characters of ``blocks`` as JSON: what :data:`MAX_BLOCKS_CHARS` bounds."""
    return len(json.dumps(blocks, ensure_ascii=False, separators=(",", ":")))


def alert_blocks(notice: Notice, now: datetime, *, buttons: bool,
                 link: Link | None = None) -> list[Block]:
    """One alert: its section, its context line when it has one, and its buttons."""
    alert = notice.alert
    blocks: list[Block] = [_section(notice, now)]
    notes = _context(notice, link)
    if notes:
        blocks.append({"type": "context", "elements": notes})
    if buttons and notice.kind in BUTTON_KINDS and alert.state is State.FIRING:
        blocks.append(actions(alert))
    return blocks


def shows_buttons(threads: bool, operators: Sequence[str]) -> bool:
    """Whether a destination's firing messages carry buttons: only through the Web API
    (``threads``; a webhook's messages cannot be clicked back to riskwatch) and only with
    operators configured (without them no click could take effect)."""
    return threads and any(operator.strip() for operator in operators)


def actions(alert: Alert) -> Block:
    """*Acknowledge*, *Silence 1h*, *Silence 4h* (and *Unsilence* while muted) for ``alert``."""
    value = button_value(alert)
    elements = [_button("Acknowledge", ACK, value, style="primary"),
                _button("Silence 1h", SILENCE_1H, value),
                _button("Silence 4h", SILENCE_4H, value)]
    if alert.muted:
        elements.append(_button("Unsilence", UNSILENCE, value))
    return {"type": "actions", "elements": elements}


def alert_id(key: AlertKey) -> str:
    """A short id of an alert key, the same on every replica and after every restart.

    Account names and symbols can be any length; a button's value may hold 2,000
    characters. The id is 24 hex digits of a SHA-256 of the key; whoever handles a
    click finds the alert whose key has this id.
    """
    raw = "\x1f".join((key.rule, key.account, key.symbol)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:24]


def button_value(alert: Alert) -> str:
    """``v1.<alert id>.<firing since, epoch seconds>``: which alert, and which firing of it
    (a click on the buttons of an earlier firing can be told apart)."""
    since = int(alert.firing_since.timestamp()) if alert.firing_since else 0
    return f"v1.{alert_id(alert.key)}.{since}"


def parse_button_value(value: str) -> tuple[str, int] | None:
    """The alert id and firing time of a button's value; None for anything else."""
    parts = value.split(".")
    if len(parts) != 3 or parts[0] != "v1" or len(parts[1]) != 24 or not parts[2].isdigit():
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1], int(parts[2])


def masked(blocks: Sequence[Block], mask: Callable[[str], str]) -> list[Block]:
    """``blocks`` with ``mask`` applied to every string in them (no secret leaves)."""
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value)
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value
    return [walk(block) for block in blocks]


def _detailed(notices: Sequence[Notice], now: datetime, buttons: bool,
              link: Link | None = None) -> list[Block]:
    """A header and each alert's blocks; one line per alert should that not fit."""
    title = (f"{render.headline(notices[0])} · {notices[0].alert.key.rule}" if len(notices) == 1
             else f"riskwatch: {len(notices)} alerts changed")
    blocks = [_header(title)]
    for notice in notices:
        blocks.extend(alert_blocks(notice, now, buttons=buttons, link=link))
    if len(blocks) <= MAX_BLOCKS and size(blocks) <= MAX_BLOCKS_CHARS:
        return blocks
    return _compact(f"riskwatch: {len(notices)} alerts changed", notices)


def _compact(title: str, notices: Sequence[Notice], note: str = "") -> list[Block]:
    """A header and sections of one line per alert, within every limit; should the lines
    still not fit (the planner keeps far below), the last block counts those left out."""
    blocks = [_header(title)]
    if note:
        blocks.append({"type": "context", "elements": [_mrkdwn(note)]})
    reserve = size([_tail(len(notices))]) + 1  # room to say how many were left out
    lines: list[str] = []  # the section being filled
    for index, notice in enumerate(notices):
        line = _line(notice)
        if lines and len("\n".join(lines)) + 1 + len(line) > MAX_SECTION_TEXT:
            blocks.append(_lines_section(lines))
            lines = []
        trial = [*blocks, _lines_section([*lines, line])]
        if len(trial) + 1 > MAX_BLOCKS or size(trial) + reserve > MAX_BLOCKS_CHARS:
            if lines:
                blocks.append(_lines_section(lines))
            blocks.append(_tail(len(notices) - index))
            return blocks
        lines.append(line)
    if lines:
        blocks.append(_lines_section(lines))
    return blocks


def _tail(left: int) -> Block:
    return {"type": "context",
            "elements": [_mrkdwn(f"_… and {left} more; see `riskwatch alerts`_")]}


def _lines_section(lines: Sequence[str]) -> Block:
    return {"type": "section", "text": _mrkdwn("\n".join(lines))}


def _line_only(notice: Notice) -> Block:
    return _lines_section([_line(notice)])


def _line(notice: Notice) -> str:
    """One alert on one line of at most :data:`LINE_BUDGET` characters."""
    alert = notice.alert
    value = (render.format_value(alert.metric, alert.value) if alert.value is not None
             and alert.metric not in render.NO_VALUE_METRICS else "")
    where = _where(alert, NAME_BUDGET)
    return f"• *{render.headline(notice)}* {_rule(alert.key.rule)} {where} {value}".rstrip()


def _header(title: str) -> Block:
    return {"type": "header",
            "text": {"type": "plain_text", "text": render.plain(title, MAX_HEADER_TEXT),
                     "emoji": False}}


def _section(notice: Notice, now: datetime) -> Block:
    alert = notice.alert
    icon = (":large_green_circle:" if notice.kind is NoticeKind.RESOLVED
            else render.EMOJI.get(alert.severity, ""))
    text = f"{icon} *{render.headline(notice)}* — {_rule(alert.key.rule)}"
    if alert.description:
        text += "\n" + _shrunk(lambda n: render.operator_text(_cut(alert.description, n)),
                               MAX_SECTION_TEXT - len(text) - 1, DESCRIPTION_LIMIT)
    section: Block = {"type": "section", "text": _mrkdwn(text)}
    fields = [_mrkdwn(field) for field in _fields(notice, now)]
    if fields:
        section["fields"] = fields[:MAX_FIELDS]
    return section


def _fields(notice: Notice, now: datetime) -> list[str]:
    """Account and exchange, symbol, value, level and duration, each within its limit."""
    alert = notice.alert
    budget = (MAX_FIELD_TEXT - 40) // 2
    fields = []
    if alert.key.account:
        fields.append(f"*Account*\n{_where(alert, budget, symbol=False)}")
    if alert.key.symbol:
        fields.append(f"*Symbol*\n{_code(alert.key.symbol, budget)}")
    if alert.value is not None and alert.metric not in render.NO_VALUE_METRICS:
        fields.append(f"*{alert.metric}*\n{render.format_value(alert.metric, alert.value)}")
        level = render.comparison(alert)
        if level and notice.kind is not NoticeKind.RESOLVED:
            fields.append(f"*Level*\n{level}")
    duration = render.duration_line(alert, now)  # "firing for 3m", "fired for 1h"
    if duration:
        label, _, length = duration.partition(" for ")
        fields.append(f"*{label.capitalize()} for*\n{length}")
    return fields


def _where(alert: Alert, budget: int, *, symbol: bool = True) -> str:
    """``\\`account\\` at \\`exchange\\```, and the symbol, each name within ``budget``."""
    parts = []
    if alert.key.account:
        exchange = f" at {_code(alert.exchange, budget)}" if alert.exchange else ""
        parts.append(f"{_code(alert.key.account, budget)}{exchange}")
    if symbol and alert.key.symbol:
        parts.append(_code(alert.key.symbol, budget))
    return " · ".join(parts)


def _context(notice: Notice, link: Link | None = None) -> list[Block]:
    """What went wrong, the action's outcome, the runbook, the account's status page, the
    silence a notice tells of and who acknowledged the alert, as context elements."""
    alert = notice.alert
    notes = []
    if alert.detail:
        notes.append(_code(alert.detail, MAX_FIELD_TEXT, render.TEXT_LIMIT))
    if alert.action:
        notes.append("*Action:* " + _code(alert.action, MAX_FIELD_TEXT - 20, render.TEXT_LIMIT))
    if alert.runbook:
        notes.append(_runbook(alert.runbook))
    page = link(alert.key.account) if link is not None and alert.key.account else ""
    if page and len(page) <= LINK_LIMIT:  # a longer one would crowd out the alert
        notes.append(f"<{render.operator_text(page)}|Status page>")
    if notice.silence is not None:
        notes.append(render.silence_line(notice.kind, notice.silence))
    if render.ack_line(alert):
        notes.append(render.ack_line(alert))
    return [_mrkdwn(note) for note in notes]


def _runbook(url: str) -> str:
    """A link to the runbook; one too long to be a link is shown as text."""
    if len(url) <= RUNBOOK_LIMIT and "|" not in url:
        return f"<{render.operator_text(url)}|Runbook>"
    return "Runbook: " + _code(url, MAX_FIELD_TEXT - 20)


def _rule(rule: str) -> str:
    return _code(rule, RULE_LIMIT * 2, RULE_LIMIT)


def _code(text: str, budget: int, limit: int = render.NAME_LIMIT) -> str:
    """An API string as an inert code span (:func:`render.slack_code`) of at most
    ``budget`` characters: escaping can make a string five times longer."""
    return _shrunk(lambda n: render.slack_code(text, n), budget, limit)


def _shrunk(make: Callable[[int], str], budget: int, limit: int) -> str:
    """``make(limit)``, with ``limit`` lowered until the result fits in ``budget``."""
    shown = make(limit)
    while len(shown) > budget and limit > 1:
        limit = max(1, min(limit - 1, limit * budget // len(shown)))
        shown = make(limit)
    return shown


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + render.ELLIPSIS


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> Block:
    button: Block = {"type": "button", "text": {"type": "plain_text", "text": label},
                     "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button
