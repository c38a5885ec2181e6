"""How alerts read: values for people, and API strings that cannot ping or link in Slack."""

from __future__ import annotations

from decimal import Decimal

import pytest

from riskwatch.alerts import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify.text import (
    format_value,
    headline,
    slack_escape,
    slack_message,
    terminal_message,
)
from tests.helpers import at


@pytest.mark.parametrize(("metric", "value", "shown"), [
    ("maint_margin_ratio", "0.8512", "85.1%"),
    ("notional_pct_total", "1", "100.0%"),
    ("notional", "1234567.891", "1,234,567.89 USD"),
    ("leverage", "12.50", "12.5x"),
    ("effective_leverage", "3", "3x"),
    ("data_age", "125", "2m 5s"),
    ("maint_margin_ratio", "Infinity", "∞"),
])
def test_values_are_shown_with_units(metric: str, value: str, shown: str) -> None:
    """Ratios as percentages, money with two decimals and units, leverage as Nx."""
    assert format_value(metric, Decimal(value)) == shown


@pytest.mark.parametrize("hostile", [
    "<!channel>", "<!here|here>", "@channel", "@here", "<@U123>", "<https://evil.example|x>",
    "https://evil.example", "evil.example/login", "#general",
])
def test_api_strings_cannot_mention_or_link(hostile: str) -> None:
    """Escaped text has no Slack control sequence, mention or bare link left in it."""
    escaped = slack_escape(hostile)
    assert "<" not in escaped and ">" not in escaped
    for word in ("@channel", "@here", "https://", "evil.example", "#general"):
        assert word not in escaped


def _alert(account: str, kind_state: State = State.FIRING) -> Alert:
    return Alert(key=AlertKey("margin", account, "ETH:PERP-USDT"), state=kind_state,
                 severity="critical", exchange="Bybit", metric="maint_margin_ratio",
                 value=Decimal("0.86"), threshold=Decimal("0.8"), since=at(0),
                 firing_since=at(0), description="Margin is thin",
                 runbook="https://wiki.example/margin")


def test_slack_message_names_state_severity_rule_account_value_and_runbook() -> None:
    """Every element SPEC §5 asks for is in the message."""
    message = slack_message([Notice(NoticeKind.FIRING, _alert("desk-1"))], at(125))
    for part in ("FIRING · CRITICAL", "`margin`", "Margin is thin", "desk-1", "Bybit",
                 "ETH:\u200bPERP-USDT", "86.0%", "critical at ≥ 80.0%", "firing for 2m 5s",
                 "<https://wiki.example/margin|Runbook>"):
        assert part in message, part


def test_hostile_account_name_is_escaped_in_the_message() -> None:
    """An account called <!channel> shows as text."""
    message = slack_message([Notice(NoticeKind.FIRING, _alert("<!channel> @here"))], at(1))
    assert "<!channel>" not in message and "@here" not in message
    assert "&lt;!\u200bchannel&gt;" in message


def test_grouped_message_counts_alerts_and_headlines_name_changes() -> None:
    """Several alerts in one message get a count; headlines say escalated or resolved."""
    notices = [Notice(NoticeKind.ESCALATED, _alert("a"), "warning"),
               Notice(NoticeKind.RESOLVED, _alert("b", State.RESOLVED))]
    message = slack_message(notices, at(10))
    assert message.startswith("*riskwatch: 2 alerts changed*")
    assert headline(notices[0]) == "FIRING · CRITICAL (escalated from WARNING)"
    assert headline(notices[1]) == "RESOLVED (was CRITICAL)"


def test_terminal_message_strips_escape_sequences() -> None:
    """A name carrying terminal escape codes cannot rewrite the operator's screen."""
    text = terminal_message([Notice(NoticeKind.FIRING, _alert("evil\x1b[2Jname"))], at(1))
    assert "\x1b" not in text and "evil[2Jname" in text
