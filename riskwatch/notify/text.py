"""How alerts read in Slack and in the terminal.

Every string that comes from the API (account names, symbols, exchanges, error text) goes
through :func:`slack_escape`, so no account name can mention ``@channel`` or plant a link.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from riskwatch.alerts import Alert, Notice, NoticeKind, State
from riskwatch.durations import format_duration
from riskwatch.metrics import LEVERAGE_METRICS, MONEY_METRICS, RATIO_METRICS

# Slack's limit is 40,000 characters a message; these keep every message far below it.
MAX_ALERTS_PER_MESSAGE = 20  # detailed alerts per message
MAX_DETAILED_PER_POLL = 100  # past this many alerts in one poll, the rest are one line each
MAX_LINES_PER_MESSAGE = 100  # one-line alerts per message
MAX_TEXT = 12_000
_ZWSP = "\u200b"
_BREAKERS = re.compile(r"([@.:/!#])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:",
         "info": ":large_blue_circle:"}


def slack_escape(text: str) -> str:
    """Make an untrusted string inert in Slack mrkdwn.

    ``& < >`` are escaped as Slack asks, which defuses ``<!channel>`` and ``<url|text>``;
    a zero-width space after ``@ . : / ! #`` stops Slack from turning plain ``@here``,
    ``#channel`` or ``example.com`` into a mention or a link.
    """
    text = _CONTROL.sub("", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BREAKERS.sub(lambda m: m.group(1) + _ZWSP, text)


def plain(text: str) -> str:
    """Strip control characters (terminal escapes) from an untrusted string."""
    return _CONTROL.sub("", text).replace("\x1b", "")


def format_value(metric: str, value: Decimal | None) -> str:
    """A metric value for people: ratios as percentages, money with units, leverage as 5x."""
    if value is None:
        return "unknown"
    if not value.is_finite():
        return "∞"
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


def _comparison(alert: Alert) -> str:
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
    return f"FIRING · {severity}"


def _where(alert: Alert, escape: bool) -> str:
    clean = slack_escape if escape else plain
    parts = []
    if alert.key.account:
        exchange = f" ({clean(alert.exchange)})" if alert.exchange else ""
        parts.append(f"account {clean(alert.key.account)}{exchange}")
    if alert.key.symbol:
        parts.append(f"symbol {clean(alert.key.symbol)}")
    return ", ".join(parts)


def _duration_line(alert: Alert, now: datetime) -> str:
    start = alert.firing_since
    if start is None:
        return ""
    if alert.state is State.RESOLVED:
        return f"fired for {format_duration(alert.since - start)}"
    return f"firing for {format_duration(now - start)}"


def _facts(notice: Notice, now: datetime, escape: bool) -> list[str]:
    alert = notice.alert
    facts = [_where(alert, escape)]
    if alert.value is not None and alert.metric not in {"auth", "account_error", "rules",
                                                               "account_missing", "store"}:
        comparison = _comparison(alert)
        value = f"{alert.metric} {format_value(alert.metric, alert.value)}"
        facts.append(value if notice.kind is NoticeKind.RESOLVED or not comparison
                     else f"{value} ({comparison})")
    facts.append(_duration_line(alert, now))
    return [fact for fact in facts if fact]


def slack_alert(notice: Notice, now: datetime) -> str:
    """One alert as a few lines of Slack mrkdwn."""
    alert = notice.alert
    icon = ":large_green_circle:" if notice.kind is NoticeKind.RESOLVED else EMOJI[alert.severity]
    lines = [f"{icon} *{headline(notice)}* — `{alert.key.rule}`"]
    if alert.description:
        lines.append(_operator_text(alert.description))
    lines.append(" · ".join(_facts(notice, now, escape=True)))
    if alert.detail:
        lines.append(f"> {slack_escape(alert.detail)[:600]}")
    if alert.action:
        lines.append(f"*Action:* {slack_escape(alert.action)[:400]}")
    if alert.runbook:
        lines.append(f"<{_operator_text(alert.runbook)}|Runbook>")
    return "\n".join(lines)


def _operator_text(text: str) -> str:
    """Text from the rule files (trusted, but must not break Slack's markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notices: Sequence[Notice], now: datetime, *, compact: bool = False) -> str:
    """Alerts that changed in one poll, as one Slack message (one line each when compact)."""
    if compact:
        lines = [slack_line(notice) for notice in notices]
        return _clip(f"*riskwatch: {len(notices)} more alerts changed*\n" + "\n".join(lines))
    blocks = [slack_alert(notice, now) for notice in notices]
    header = f"*riskwatch: {len(notices)} alerts changed*\n\n" if len(notices) > 1 else ""
    return _clip(header + "\n\n".join(blocks))


def slack_line(notice: Notice) -> str:
    """One alert on one line, for polls that change very many alerts."""
    alert = notice.alert
    value = format_value(alert.metric, alert.value) if alert.value is not None else ""
    where = _where(alert, escape=True)
    return f"• *{headline(notice)}* `{alert.key.rule}` {where} {value}".rstrip()[:300]


def _clip(text: str) -> str:
    """Never exceed the size a message may have (a last guard; the planner keeps far below)."""
    if len(text) <= MAX_TEXT:
        return text
    kept = text[:MAX_TEXT - 60].rsplit("\n", 1)[0]
    return kept + "\n_… message shortened; see `riskwatch alerts`_"


def terminal_message(notices: Sequence[Notice], now: datetime) -> str:
    """Alerts as plain lines for the terminal."""
    lines = []
    for notice in notices:
        alert = notice.alert
        lines.append(f"[{now:%H:%M:%S}] {headline(notice)}  {alert.key.rule}")
        lines.append("    " + " · ".join(_facts(notice, now, escape=False)))
        if alert.detail:
            lines.append(f"    {plain(alert.detail)[:300]}")
        if alert.action:
            lines.append(f"    action: {plain(alert.action)[:300]}")
    return "\n".join(lines)


def current_state_message(alerts: Sequence[Alert], now: datetime) -> str:
    """The firing message, rewritten in place to show where each of its alerts stands now."""
    updated = [
        Notice(NoticeKind.RESOLVED if alert.state is State.RESOLVED else NoticeKind.FIRING, alert)
        for alert in alerts
    ]
    return slack_message(updated, now)
