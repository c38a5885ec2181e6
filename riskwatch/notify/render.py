"""How alerts read in Slack and in the terminal.

Every string that comes from the API (account names, symbols, exchanges, error text) is
shown as one inert line (:func:`inert`): characters that are not printable (line breaks,
terminal escapes, C1 controls, bidi overrides, zero-width characters) are shown as
``\\n``, ``\\x1b``, ``\\u202e`` …, and it is cut at :data:`NAME_LIMIT` (or
:data:`TEXT_LIMIT` for error text and action outcomes) with an ellipsis. In Slack it is
also an inline code span (:func:`slack_code`), so ``*``, ``_``, ``~`` and emoji codes
in it are text, ``& < >`` are escaped as Slack asks (no ``<!channel>``, no
``<url|text>``), and what Slack would turn into a link by itself is broken visibly
(``evil[.]example``, ``http[:]//``). Everything else stays as it is, so a symbol such as
``ETH:PERP-USDT`` reaches Slack verbatim, for search and copy.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from riskwatch.core.durations import format_duration
from riskwatch.core.interactions import mention
from riskwatch.core.lifecycle import Alert, Notice, NoticeKind, SilenceNote, State
from riskwatch.core.measures import LEVERAGE_METRICS, MONEY_METRICS, RATIO_METRICS

# Slack's limit is 40,000 characters a message; these keep every message far below it.
# detailed alerts per message: in Block Kit each takes up to three blocks (section, context,
# buttons), and 16 of them with a header stay within Slack's 50 blocks a message
MAX_ALERTS_PER_MESSAGE = 16
MAX_DETAILED_PER_POLL = 100  # past this many alerts in one poll, the rest are one line each
MAX_LINES_PER_MESSAGE = 100  # one-line alerts per message
MAX_TEXT = 12_000  # characters a message may have; the planner splits messages to stay below
MESSAGE_BUDGET = MAX_TEXT - 500  # room for the header and for durations that grow
NAME_LIMIT = 200  # characters shown of an account name, exchange or symbol
TEXT_LIMIT = 600  # characters shown of an error text or an action's outcome
ELLIPSIS = "…"
MAX_MARKS = 3  # combining marks shown on one letter; more are shown as escapes
_MARKS = frozenset({"Mn", "Me"})
_AUTOLINK_SCHEME = re.compile(r"://")
# a dot between a letter or digit and a letter, as in a host name (rule files excepted)
_AUTOLINK_DOT = re.compile(r"(?<=[0-9A-Za-z])\.(?=[A-Za-z])(?!ya?ml\b)")
# built-in alerts whose value is a count or a flag, not a figure worth showing against a level
NO_VALUE_METRICS = frozenset({"auth", "account_error", "rules", "account_missing", "store"})
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
         "info": ":large_blue_circle:"}


def inert(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as one line with nothing hidden in it, at most ``limit`` characters.

    A character that is not printable (line breaks, tabs, escapes, C0/C1 controls, bidi
    and zero-width format characters, unpaired surrogates, unassigned code points) is
    shown as its Python escape (``\\n``, ``\\x1b``, ``\\u202e``), and so is a
    combining mark past :data:`MAX_MARKS` on one letter (stacked marks would spill over
    the lines above and below); past ``limit`` the text is cut and ends with an ellipsis.
    """
    pieces: list[str] = []
    size = 0
    marks = 0
    for index, char in enumerate(text):
        marks = marks + 1 if unicodedata.category(char) in _MARKS else 0
        shown = char.isprintable() and marks <= MAX_MARKS
        piece = char if shown else _escape(char)
        if size + len(piece) > limit - (1 if index < len(text) - 1 else 0):
            pieces.append(ELLIPSIS)
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _escape(char: str) -> str:
    """A character as Python writes it escaped: ``\\n``, ``\\x1b``, ``\\u0301``."""
    if not char.isprintable():
        return repr(char)[1:-1]
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def slack_code(text: str, limit: int = NAME_LIMIT) -> str:
    """An untrusted string as an inline code span of Slack mrkdwn that does nothing.

    One inert line (:func:`inert`); a backtick becomes U+02CB so the span cannot end
    early; ``& < >`` are escaped as Slack asks, which defuses ``<!channel>`` and
    ``<url|text>``; ``://`` and host-name dots are shown as ``[:]//`` and ``[.]`` so
    Slack links nothing by itself.
    """
    shown = inert(text, limit).replace("`", "\u02cb")
    if not shown.strip():
        return "(blank)"
    shown = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    shown = _AUTOLINK_DOT.sub("[.]", _AUTOLINK_SCHEME.sub("[:]//", shown))
    return f"`{shown}`"


def plain(text: str, limit: int = NAME_LIMIT) -> str:
    """An untrusted string as one inert line for the terminal (see :func:`inert`)."""
    return inert(text, limit)


def format_value(metric: str, value: Decimal | None) -> str:
    """A metric value for people: ratios as percentages, money with units, leverage as 5x."""
    if value is None:
        return "unknown"
    if not value.is_finite():
        return "∞"
    base, change, _ = metric.partition(" change over ")
    if change:  # a change rule's value: signed, in the metric's own unit
        shown = format_value(base, value)
        return shown if value < 0 else "+" + shown
    if metric in RATIO_METRICS:
        return f"{(value * 100).quantize(Decimal('0.1')):,}%"
    if metric in MONEY_METRICS:
        return f"{value.quantize(Decimal('0.01')):,} USD"
    if metric in LEVERAGE_METRICS:
        return f"{value.quantize(Decimal('0.01')).normalize():f}x"
    if metric == "data_age":
        return format_duration_seconds(value)
    return f"{value.normalize():f}"


def format_duration_seconds(seconds: Decimal) -> str:
    """Seconds as ``45s`` / ``3m 20s``."""
    return format_duration(timedelta(seconds=float(seconds)))


def comparison(alert: Alert) -> str:
    """The level the alert crossed: ``critical at ≥ 90.0%`` (empty without a level)."""
    if alert.threshold is None:
        return ""
    sign = "≥" if alert.when == "above" else "≤"
    return f"{alert.severity} at {sign} {format_value(alert.metric, alert.threshold)}"


def headline(notice: Notice) -> str:
    """``FIRING · CRITICAL``, ``RESOLVED (was WARNING)``, with what changed."""
    alert = notice.alert
    severity = alert.severity.upper()
    if notice.kind is NoticeKind.RESOLVED:
        return f"RESOLVED (was {severity})"
    if notice.kind in (NoticeKind.ESCALATED, NoticeKind.DEESCALATED):
        previous = (notice.previous_severity or "").upper()
        return f"FIRING · {severity} ({notice.kind.value} from {previous})"
    if notice.kind is NoticeKind.REMINDER:
        return f"FIRING · {severity} (still firing)"
    if notice.kind is NoticeKind.ACTION_CHECK:
        return f"FIRING · {severity} (leverage not lowered)"
    if notice.kind is NoticeKind.SILENCED:
        return f"SILENCED · {severity}"
    if notice.kind is NoticeKind.SILENCE_ENDING:
        return f"SILENCE ENDS SOON · {severity}"
    if notice.kind is NoticeKind.SILENCE_ENDED:
        return f"SILENCE ENDED · {severity} (still firing)"
    return f"FIRING · {severity}"


def who(author: str) -> str:
    """Who made a silence or acknowledged: a Slack mention for a Slack user, inert text
    for anyone else (a name given to the CLI is never a mention or a link)."""
    return mention(author) or slack_code(author or "someone", 80)


def slack_time(moment: datetime, shown: str = "{date_short_pretty} {time}") -> str:
    """A time each reader sees in their own time zone; UTC where Slack cannot say."""
    fallback = f"{moment:%Y-%m-%d %H:%M} UTC" if "date" in shown else f"{moment:%H:%M} UTC"
    return f"<!date^{int(moment.timestamp())}^{shown}|{fallback}>"


def ack_line(alert: Alert) -> str:
    """``Acknowledged by @user at 14:02`` (empty when not acknowledged)."""
    if not alert.acked_by or alert.acked_at is None:
        return ""
    return (f":white_check_mark: Acknowledged by {who(alert.acked_by)} at "
            f"{slack_time(alert.acked_at, '{time}')}")


def silence_line(kind: NoticeKind, note: SilenceNote) -> str:
    """What a silence notice says of its silence: by whom, until when, why; or that it
    ends soon; or that it ended (and who ended it early)."""
    until = slack_time(note.ends_at)
    if kind is NoticeKind.SILENCED:
        return (f":mute: Silenced by {who(note.created_by)} until {until}: "
                f"{slack_code(note.reason, TEXT_LIMIT)} (silence {slack_code(note.id, 60)})")
    if kind is NoticeKind.SILENCE_ENDING:
        return (f":hourglass_flowing_sand: The silence by {who(note.created_by)} ends at "
                f"{until}; the alert will be told again.")
    ended = f" by {who(note.ended_by)}" if note.ended_by else ""
    return (f":bell: The silence by {who(note.created_by)} ended{ended}; "
            "notifications and actions are back on.")


def _where(alert: Alert, escape: bool) -> str:
    clean = slack_code if escape else plain
    parts = []
    if alert.key.account:
        exchange = f" at {clean(alert.exchange)}" if alert.exchange else ""
        parts.append(f"account {clean(alert.key.account)}{exchange}")
    if alert.key.symbol:
        parts.append(f"symbol {clean(alert.key.symbol)}")
    return ", ".join(parts)


def duration_line(alert: Alert, now: datetime) -> str:
    """``firing for 3m 20s`` or ``fired for 1h`` (empty when it never fired)."""
    start = alert.firing_since
    if start is None:
        return ""
    if alert.state is State.RESOLVED:
        return f"fired for {format_duration(alert.since - start)}"
    return f"firing for {format_duration(now - start)}"


def _facts(notice: Notice, now: datetime, escape: bool) -> list[str]:
    alert = notice.alert
    facts = [_where(alert, escape)]
    if alert.value is not None and alert.metric not in NO_VALUE_METRICS:
        level = comparison(alert)
        value = f"{alert.metric} {format_value(alert.metric, alert.value)}"
        facts.append(value if notice.kind is NoticeKind.RESOLVED or not level
                     else f"{value} ({level})")
    facts.append(duration_line(alert, now))
    return [fact for fact in facts if fact]


def slack_alert(notice: Notice, now: datetime) -> str:
    """One alert as a few lines of Slack mrkdwn."""
    alert = notice.alert
    icon = ":large_green_circle:" if notice.kind is NoticeKind.RESOLVED else EMOJI[alert.severity]
    lines = [f"{icon} *{headline(notice)}* — `{alert.key.rule}`"]
    if alert.description:
        lines.append(operator_text(alert.description))
    lines.append(" · ".join(_facts(notice, now, escape=True)))
    if alert.detail:
        lines.append(f"> {slack_code(alert.detail, TEXT_LIMIT)}")
    if alert.action:
        lines.append(f"*Action:* {slack_code(alert.action, TEXT_LIMIT)}")
    if alert.runbook:
        lines.append(f"<{operator_text(alert.runbook)}|Runbook>")
    if notice.silence is not None:
        lines.append(silence_line(notice.kind, notice.silence))
    if ack_line(alert):
        lines.append(ack_line(alert))
    return "\n".join(lines)


def operator_text(text: str) -> str:
    """Text from the rule files (trusted, but must not break Slack's markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notices: Sequence[Notice], now: datetime, *, compact: bool = False,
                  folded: int = 0) -> str:
    """Alerts that changed in one poll, as one Slack message (one line each when compact).

    A detailed message that would pass :data:`MAX_TEXT` (the planner sizes messages, but
    an in-place update may show more text than the post did) shows one line per alert
    instead, so every alert still appears. ``folded``: the message sums up that many
    messages that waited too long for Slack (see the outbox).
    """
    if folded:
        return _lines(f"*riskwatch: where {len(notices)} alerts stand now* (folded from "
                      f"{folded} messages that waited for Slack)", notices)
    if compact:
        return _lines(f"*riskwatch: {len(notices)} more alerts changed*", notices)
    blocks = [slack_alert(notice, now) for notice in notices]
    header = f"*riskwatch: {len(notices)} alerts changed*\n\n" if len(notices) > 1 else ""
    message = header + "\n\n".join(blocks)
    if len(message) <= MAX_TEXT:
        return message
    return _lines(f"*riskwatch: {len(notices)} alerts changed*", notices)


def _lines(header: str, notices: Sequence[Notice]) -> str:
    """``header`` and one line per alert, within :data:`MAX_TEXT`; should lines still not
    fit (the planner keeps far below), the last line counts the alerts left out."""
    lines = [header]
    size = len(header)
    for index, notice in enumerate(notices):
        line = slack_line(notice)
        if size + 1 + len(line) > MAX_TEXT - 80:
            lines.append(f"_… and {len(notices) - index} more; see `riskwatch alerts`_")
            break
        lines.append(line)
        size += 1 + len(line)
    return "\n".join(lines)


def slack_line(notice: Notice) -> str:
    """One alert on one line, for polls that change very many alerts."""
    alert = notice.alert
    value = format_value(alert.metric, alert.value) if alert.value is not None else ""
    where = _where(alert, escape=True)
    return f"• *{headline(notice)}* `{alert.key.rule}` {where} {value}".rstrip()


def rendered_size(notice: Notice, *, compact: bool) -> int:
    """About how many characters ``notice`` takes in a Slack message (for the planner)."""
    if compact:
        return len(slack_line(notice)) + 1
    return len(slack_alert(notice, notice.alert.since)) + 2 + 20  # the duration may grow


def terminal_message(notices: Sequence[Notice], now: datetime) -> str:
    """Alerts as plain lines for the terminal."""
    lines = []
    for notice in notices:
        alert = notice.alert
        lines.append(f"[{now:%H:%M:%S}] {headline(notice)}  {alert.key.rule}")
        lines.append("    " + " · ".join(_facts(notice, now, escape=False)))
        if alert.detail:
            lines.append(f"    {plain(alert.detail, TEXT_LIMIT)}")
        if alert.action:
            lines.append(f"    action: {plain(alert.action, TEXT_LIMIT)}")
    return "\n".join(lines)


def current_state_message(alerts: Sequence[Alert], now: datetime) -> str:
    """The firing message, rewritten in place to show where each of its alerts stands now."""
    updated = [
        Notice(NoticeKind.RESOLVED if alert.state is State.RESOLVED else NoticeKind.FIRING, alert)
        for alert in alerts
    ]
    return slack_message(updated, now)
