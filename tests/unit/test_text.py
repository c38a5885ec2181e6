"""How alerts read: values for people, and API strings that cannot ping or link in Slack."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify.render import (
    MAX_TEXT,
    NAME_LIMIT,
    format_value,
    headline,
    inert,
    slack_code,
    slack_line,
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
    "<!channel>", "<!here|here>", "<@U123>", "<https://evil.example|x>", "<#C123>",
    "https://evil.example", "http://evil.example", "evil.example/login", "a@evil.example",
    "slack://open", "www.evil.example",
])
def test_api_strings_cannot_mention_or_link(hostile: str) -> None:
    """Escaped text has no Slack control sequence and nothing Slack would link by itself."""
    escaped = slack_code(hostile)
    assert "<" not in escaped and ">" not in escaped
    for word in ("://", "evil.example", "www.evil"):
        assert word not in escaped


@pytest.mark.parametrize("plain_mention", ["@channel", "@here", "@everyone", "#general"])
def test_plain_mentions_stay_text_in_a_code_span(plain_mention: str) -> None:
    """``@channel`` typed as text is shown as it is, inside a code span (Slack only
    notifies for ``<!channel>``, and riskwatch never asks Slack to link names)."""
    assert slack_code(plain_mention) == f"`{plain_mention}`"


@pytest.mark.parametrize("symbol", ["ETH:PERP-USDT", "BTC-USDT", "1000PEPE/USDT:USDT",
                                    "desk_1*main~x", "USDT (perp)", "rules.yaml"])
def test_symbols_reach_slack_verbatim(symbol: str) -> None:
    """What people search and copy reaches Slack unchanged, with no invisible character."""
    assert slack_code(symbol) == f"`{symbol}`"
    message = slack_message([Notice(NoticeKind.FIRING, _alert("desk-1", symbol=symbol))], at(1))
    assert f"`{symbol}`" in message and "\u200b" not in message


def test_a_long_api_string_is_cut_with_an_ellipsis() -> None:
    """A 10,000-character name shows as its first characters and an ellipsis."""
    shown = inert("n" * 10_000)
    assert len(shown) == NAME_LIMIT and shown.endswith("…")
    assert inert("n" * NAME_LIMIT) == "n" * NAME_LIMIT  # at the limit: nothing cut
    assert len(slack_code("é" * 10_000)) == NAME_LIMIT + 2


@pytest.mark.parametrize("forged", [
    "desk-1\n:large_green_circle: *RESOLVED (was CRITICAL)* — `margin`",
    "desk-1\r\n*RESOLVED (was CRITICAL)*", "desk-1\u2028*RESOLVED*", "desk-1\x85*RESOLVED*",
    "desk-1\u2029RESOLVED", "desk-1\x0bRESOLVED", "desk-1\x0cRESOLVED",
])
def test_a_line_break_in_a_name_cannot_forge_a_line(forged: str) -> None:
    """A name with a line break stays on its alert's line, in Slack and in the terminal."""
    alert = _alert(forged)
    slack = slack_message([Notice(NoticeKind.FIRING, alert)], at(1))
    terminal = terminal_message([Notice(NoticeKind.FIRING, alert)], at(1))
    for text in (slack, terminal):
        assert not any("RESOLVED" in line for line in text.splitlines()
                       if "desk-1" not in line)
    assert len(slack.splitlines()) == len(slack_message(
        [Notice(NoticeKind.FIRING, _alert("desk-1"))], at(1)).splitlines())


@pytest.mark.parametrize(("hostile", "shown"), [
    ("a\u202eb", "a\\u202eb"), ("a\u2066b", "a\\u2066b"), ("a\x9bb", "a\\x9bb"),
    ("a\x1b[31mb", "a\\x1b[31mb"), ("a\u200bb", "a\\u200bb"), ("a\x00b", "a\\x00b"),
])
def test_control_and_bidi_characters_are_made_visible(hostile: str, shown: str) -> None:
    """Bidi overrides, C0/C1 controls and zero-width characters are shown as escapes."""
    assert inert(hostile) == shown


def test_markup_in_a_name_is_text() -> None:
    """``*``, ``_``, ``~`` and backticks in an API string cannot start bold or end the span."""
    assert slack_code("*bold* _it_ ~s~ `code`") == "`*bold* _it_ ~s~ ˋcodeˋ`"


def _alert(account: str, kind_state: State = State.FIRING, symbol: str = "ETH:PERP-USDT",
           **extra: Any) -> Alert:
    return Alert(key=AlertKey("margin", account, symbol), state=kind_state,
                 severity="critical", exchange="Bybit", metric="maint_margin_ratio",
                 value=Decimal("0.86"), threshold=Decimal("0.8"), since=at(0),
                 firing_since=at(0), description="Margin is thin",
                 runbook="https://wiki.example/margin", **extra)


def test_slack_message_names_state_severity_rule_account_value_and_runbook() -> None:
    """Every element SPEC §5 asks for is in the message."""
    message = slack_message([Notice(NoticeKind.FIRING, _alert("desk-1"))], at(125))
    for part in ("FIRING · CRITICAL", "`margin`", "Margin is thin", "`desk-1`", "`Bybit`",
                 "`ETH:PERP-USDT`", "86.0%", "critical at ≥ 80.0%", "firing for 2m 5s",
                 "<https://wiki.example/margin|Runbook>"):
        assert part in message, part


def test_hostile_account_name_is_escaped_in_the_message() -> None:
    """An account called <!channel> shows as text."""
    message = slack_message([Notice(NoticeKind.FIRING, _alert("<!channel> @here"))], at(1))
    assert "<!channel>" not in message
    assert "account `&lt;!channel&gt; @here`" in message


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
    assert "\x1b" not in text and "evil\\x1b[2Jname" in text


def test_detail_and_action_are_inert_code_spans() -> None:
    """An API error text and an action's outcome are one capped, inert line each."""
    alert = _alert("desk-1", detail="HTTP 500 (*boom*\n<!here>)" + "x" * 2000,
                   action="lowered `ETH` on desk-1")
    message = slack_message([Notice(NoticeKind.FIRING, alert)], at(1))
    detail = next(line for line in message.splitlines() if line.startswith("> "))
    assert detail.startswith("> `HTTP 500 (*boom*\\n&lt;!here&gt;)") and detail.endswith("…`")
    assert "*Action:* `lowered ˋETHˋ on desk-1`" in message


def test_compact_lines_keep_every_name_whole_and_inert() -> None:
    """A one-line alert is never cut in the middle of a code span."""
    line = slack_line(Notice(NoticeKind.FIRING, _alert("a" * 5000, symbol="s" * 5000)))
    assert "\n" not in line and line.count("`") % 2 == 0 and line.count("…") == 2


def test_a_message_too_long_in_full_shows_every_alert_on_one_line() -> None:
    """An update whose alerts gained long texts shows one line per alert, all of them."""
    notices = [Notice(NoticeKind.FIRING, _alert(f"desk-{index:02d}", detail="d" * 600,
                                                action="a" * 600)) for index in range(20)]
    message = slack_message(notices, at(60))
    assert len(message) <= MAX_TEXT and message.startswith("*riskwatch: 20 alerts changed*")
    assert all(f"`desk-{index:02d}`" in message for index in range(20))
    assert "more; see" not in message


def test_stacked_combining_marks_are_shown_as_escapes() -> None:
    """Past three marks on one letter, marks are escapes: no text spilling over lines."""
    assert inert("Z" + "\u0301" * 6 + " Việt") == "Z" + "\u0301" * 3 + "\\u0301" * 3 + " Việt"
    assert inert("a" + "\U000e0100" * 4) == "a" + "\U000e0100" * 3 + "\\U000e0100"


def test_a_change_rules_value_is_signed_in_its_metrics_unit() -> None:
    """A change rule's alert says what changed, over how long, with a sign: a margin ratio
    up 28 points in 15 minutes reads +28.0%, equity down 1,200 reads -1,200.00 USD."""
    assert format_value("maint_margin_ratio change over 15m", Decimal("0.28")) == "+28.0%"
    assert format_value("equity change over 1h", Decimal("-1200")) == "-1,200.00 USD"
    assert format_value("equity change over 1h", None) == "unknown"
