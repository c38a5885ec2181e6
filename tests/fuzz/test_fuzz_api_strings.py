"""Fuzzed API strings (account names, exchanges, symbols, error text, action outcomes):
whatever they hold, each alert keeps the lines and the markup of an ordinary alert, and
everything the API wrote sits inert inside code spans (Slack) or on its own line (terminal)."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify.render import (
    MAX_MARKS,
    NAME_LIMIT,
    TEXT_LIMIT,
    inert,
    slack_code,
    slack_line,
    slack_message,
    terminal_message,
)
from tests.fuzz.conftest import PAYLOAD_EXAMPLES
from tests.helpers import DEEP, at

EXAMPLES = PAYLOAD_EXAMPLES // 3 if DEEP else 60  # generating these strings is the cost
CODE_SPAN = re.compile(r"`[^`\n]*`|\(blank\)")
FRAGMENTS = ["\n", "\r\n", "\u2028", "\u2029", "\x85", "\x1b[2J", "\x9b31m", "\u202e",
             "\u2066", "\u200b", "\ufeff", "*", "_", "~", "`", "```", ">", "<", "&", "<!here>",
             "<!channel>", "@channel", "<http://x|y>", "http://evil.example", "evil.example",
             ":rotating_light:", "*RESOLVED (was CRITICAL)*", "\ud800", "\U000e0041", "\x00",
             "\u0301\u0302\u0303\u0304\u0305"]
any_char = st.characters(exclude_categories=())
hostile = st.lists(st.one_of(st.text(any_char, max_size=12), st.sampled_from(FRAGMENTS)),
                   max_size=8).map("".join)
long_hostile = st.one_of(hostile, st.builds(lambda s, n: (s or "x") * n, hostile,
                                            st.integers(1, 3000)))


def _longest_run_of_marks(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if unicodedata.category(char) in {"Mn", "Me"} else 0
        longest = max(longest, run)
    return longest


def _alert(account: str, exchange: str, symbol: str, detail: str, action: str,
           kind: NoticeKind = NoticeKind.FIRING) -> Notice:
    alert = Alert(key=AlertKey("margin", account, symbol),
                  state=State.RESOLVED if kind is NoticeKind.RESOLVED else State.FIRING,
                  severity="critical", exchange=exchange, metric="maint_margin_ratio",
                  value=Decimal("0.86"), threshold=Decimal("0.8"), since=at(0),
                  firing_since=at(0), detail=detail, action=action)
    return Notice(kind, alert)


def _skeleton(text: str) -> str:
    """The message with every code span reduced to an empty one: what riskwatch wrote."""
    return CODE_SPAN.sub("``", text)


def _benign(notice: Notice) -> Notice:
    alert = notice.alert
    return _alert("a" if alert.key.account else "", "b" if alert.exchange else "",
                  "c" if alert.key.symbol else "", "d" if alert.detail else "",
                  "e" if alert.action else "", notice.kind)


notices = st.builds(_alert, long_hostile, hostile, long_hostile, long_hostile, hostile,
                    st.sampled_from([NoticeKind.FIRING, NoticeKind.RESOLVED]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(notices, min_size=1, max_size=4))
def test_slack_messages_keep_their_shape_whatever_the_api_strings(batch: list[Notice]) -> None:
    """Each API string is one inert code span: same lines and markup as a plain alert, no
    control, bidi or zero-width character, no ``<``, nothing Slack links by itself."""
    for compact in (False, True):
        message = slack_message(batch, at(60), compact=compact)
        expected = slack_message([_benign(n) for n in batch], at(60), compact=compact)
        assert _skeleton(message) == _skeleton(expected)
        for span in CODE_SPAN.findall(message):
            assert "<" not in span and ">" not in span and "://" not in span
            assert len(span) <= 5 * TEXT_LIMIT + 2
        assert "<" not in message.replace("<https://wiki", "")
        assert all(char.isprintable() for line in message.split("\n") for char in line)
        outside = _skeleton(message)  # headlines are riskwatch's, never the API's
        assert outside.count("FIRING · ") + outside.count("RESOLVED (") == len(batch)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(notices, min_size=1, max_size=4))
def test_terminal_lines_stay_lines_whatever_the_api_strings(batch: list[Notice]) -> None:
    """Every alert prints the lines of a plain alert, each line printable (no escape)."""
    text = terminal_message(batch, at(60))
    expected = terminal_message([_benign(n) for n in batch], at(60))
    assert len(text.split("\n")) == len(expected.split("\n"))
    assert all(char.isprintable() for line in text.split("\n") for char in line)
    text.encode("utf-8")  # no unpaired surrogate left to crash a print


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(long_hostile)
def test_one_string_is_one_capped_line(text: str) -> None:
    """inert() is one printable line of at most its limit with no more than three stacked
    marks; slack_code() a code span of it."""
    for limit in (NAME_LIMIT, TEXT_LIMIT):
        shown = inert(text, limit)
        assert len(shown) <= limit and shown.isprintable()
        assert shown == text or shown.endswith("…") or not text.isprintable() or any(
            unicodedata.category(char) in {"Mn", "Me"} for char in text)
        assert _longest_run_of_marks(shown) <= MAX_MARKS
    code = slack_code(text)
    assert code == "(blank)" or (code.startswith("`") and code.endswith("`")
                                 and code.count("`") == 2)
    one_line = slack_line(_alert(text, text, text, "", ""))
    assert "\n" not in one_line and one_line.count("`") % 2 == 0
