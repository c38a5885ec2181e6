"""Block Kit messages: every shape passes slack_sdk's models and Slack's limits, and API
strings in them stay inert."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify import blocks, render
from riskwatch.notify.blocks import SlackMessage
from riskwatch.notify.plan import Router, plan_messages
from riskwatch.notify.sinks import SlackWebhookSink
from riskwatch.store.codec import notice_from_dict
from tests.blockkit import check_inert, check_limits
from tests.helpers import at

HOSTILE = "<!channel> *bold* `tick` http://evil.example &amp; \u202e\n@here"


def _alert(account: str = "desk-1", *, symbol: str = "ETH:PERP-USDT", **changes: Any) -> Alert:
    alert = Alert(key=AlertKey("margin-low", account, symbol), state=State.FIRING,
                  severity="critical", exchange="Binance", metric="maint_margin_ratio",
                  value=Decimal("0.91"), threshold=Decimal("0.9"), since=at(0),
                  firing_since=at(0), description="Maintenance margin is high",
                  runbook="https://wiki.example/margin")
    return replace(alert, **changes)


def _huge(index: int, length: int = 10_000) -> Notice:
    """An alert whose every API string is as long and as escape-heavy as it can be."""
    alert = _alert(f"{index:03d}" + "&<" * (length // 2), symbol="S." + "&" * length,
                   exchange="X>" * (length // 2), detail="&" * length, action=">" * length,
                   description="<d&>" * (length // 4), runbook="https://r.example/" + "a" * length)
    return Notice(NoticeKind.FIRING, alert)


def test_one_alert_has_a_header_a_section_with_fields_and_a_context_line() -> None:
    """A firing alert reads as its headline, its rule, the fields a desk needs and a
    context line with the runbook; the text fallback is the mrkdwn message."""
    notice = Notice(NoticeKind.FIRING, _alert(action="dry-run: would lower leverage 10x → 3x"))
    message = blocks.message([notice], at(125))
    check_limits(message)
    header, section, context = message.blocks
    assert header["text"]["text"] == "FIRING · CRITICAL · margin-low"
    assert section["text"]["text"].startswith(":red_circle: *FIRING · CRITICAL* — `margin-low`")
    assert "Maintenance margin is high" in section["text"]["text"]
    fields = [field["text"] for field in section["fields"]]
    assert fields == ["*Account*\n`desk-1` at `Binance`", "*Symbol*\n`ETH:PERP-USDT`",
                      "*maint_margin_ratio*\n91.0%", "*Level*\ncritical at ≥ 90.0%",
                      "*Firing for*\n2m 5s"]
    notes = [element["text"] for element in context["elements"]]
    assert notes == ["*Action:* `dry-run: would lower leverage 10x → 3x`",
                     "<https://wiki[.]example/margin|Runbook>".replace("[.]", ".")]
    assert message.text == render.slack_message([notice], at(125))


def test_resolved_alert_shows_how_long_it_fired_and_no_level() -> None:
    """A resolution is green, says how long it fired, and has no level to compare with."""
    alert = _alert(state=State.RESOLVED, since=at(600))
    message = blocks.message([Notice(NoticeKind.RESOLVED, alert)], at(601))
    check_limits(message)
    section = message.blocks[1]
    assert section["text"]["text"].startswith(":large_green_circle: *RESOLVED (was CRITICAL)*")
    fields = [field["text"] for field in section["fields"]]
    assert "*Fired for*\n10m" in fields and not any("Level" in f for f in fields)


def test_api_strings_are_inert_in_every_text_object() -> None:
    """Mentions, links, markup, bidi overrides and line breaks in names, symbols, error
    text and action outcomes reach Slack as text in code spans."""
    alert = _alert(HOSTILE, symbol=HOSTILE, exchange=HOSTILE, detail=HOSTILE, action=HOSTILE)
    message = blocks.message([Notice(NoticeKind.FIRING, alert)], at(1), buttons=True)
    check_limits(message)
    check_inert(message)
    account = message.blocks[1]["fields"][0]["text"]
    assert account.startswith("*Account*\n`&lt;!channel&gt; *bold* ˋtickˋ http[:]//evil[.]example")


@pytest.mark.parametrize("compact", [False, True])
def test_ten_thousand_character_names_stay_within_every_limit(compact: bool) -> None:
    """Names, symbols, details and runbooks of 10,000 escape-heavy characters are cut
    to fit their fields, and the message keeps every limit."""
    notices = [_huge(index) for index in range(3)]
    message = blocks.message(notices, at(1), compact=compact, buttons=True)
    check_limits(message)
    check_inert(message)
    shown = json.dumps(message.blocks)
    assert all(f"`{index:03d}&amp;&lt;" in shown for index in range(3))


def test_buttons_only_when_asked_and_only_for_firing_alerts() -> None:
    """Firing and reminder notices carry the four buttons' actions when asked; resolved
    alerts and messages without ``buttons`` carry none; Unsilence only while muted."""
    firing = Notice(NoticeKind.FIRING, _alert())
    muted = Notice(NoticeKind.REMINDER, _alert("desk-2", muted=True))
    resolved = Notice(NoticeKind.RESOLVED, _alert("desk-3", state=State.RESOLVED))
    without = blocks.message([firing, muted, resolved], at(1))
    assert not [b for b in without.blocks if b["type"] == "actions"]
    message = blocks.message([firing, muted, resolved], at(1), buttons=True)
    check_limits(message)
    rows = [b for b in message.blocks if b["type"] == "actions"]
    assert [[e["action_id"] for e in row["elements"]] for row in rows] == [
        ["riskwatch_ack", "riskwatch_silence_1h", "riskwatch_silence_4h"],
        ["riskwatch_ack", "riskwatch_silence_1h", "riskwatch_silence_4h", "riskwatch_unsilence"]]
    assert [e["text"]["text"] for e in rows[1]["elements"]] == [
        "Acknowledge", "Silence 1h", "Silence 4h", "Unsilence"]


@pytest.mark.parametrize(("threads", "operators", "shown"), [
    (True, ["U0OPS"], True), (False, ["U0OPS"], False), (True, [], False), (True, [" "], False),
])
def test_buttons_need_the_web_api_and_operators(threads: bool, operators: list[str],
                                                 shown: bool) -> None:
    """Webhooks never get buttons, and neither does a desk with no operators configured."""
    assert blocks.shows_buttons(threads, operators) is shown


def test_a_button_value_names_the_alert_and_its_firing_compactly() -> None:
    """The value is a short id of (rule, account, symbol), the same for the same key,
    plus the firing's start, however long the account name."""
    alert = _alert("a" * 10_000)
    value = blocks.button_value(alert)
    assert len(value) < 64 and value == blocks.button_value(replace(alert, value=Decimal(1)))
    assert blocks.parse_button_value(value) == (blocks.alert_id(alert.key),
                                                int(at(0).timestamp()))
    assert blocks.alert_id(alert.key) != blocks.alert_id(_alert("a" * 9_999).key)
    assert blocks.alert_id(AlertKey("r", "a", "b")) != blocks.alert_id(AlertKey("r", "ab", ""))
    for junk in ["", "v1", "v2.abc.1", "v1.zz" + "0" * 22 + ".1", "v1." + "0" * 24 + ".x"]:
        assert blocks.parse_button_value(junk) is None


def test_current_state_rewrites_the_firing_message_with_buttons_on_firing_alerts() -> None:
    """The in-place update shows each alert as it stands now; only firing ones keep buttons."""
    alerts = [_alert(), _alert("desk-2", state=State.RESOLVED, since=at(60))]
    message = blocks.current_state(alerts, at(120), buttons=True)
    check_limits(message)
    assert [b["type"] for b in message.blocks].count("actions") == 1
    assert message.text == render.current_state_message(alerts, at(120))


def test_a_message_too_big_for_details_falls_back_to_lines_and_drops_no_alert() -> None:
    """An in-place update of sixteen alerts whose error texts and action outcomes grew
    since the post shows one line per alert instead of passing Slack's limits."""
    notices = [Notice(NoticeKind.FIRING, _alert(f"{index:03d}&<", detail="&" * 600,
                                                action=">" * 600))
               for index in range(render.MAX_ALERTS_PER_MESSAGE)]
    message = blocks.message(notices, at(1), buttons=True)
    check_limits(message)
    assert not [b for b in message.blocks if b["type"] == "actions"]
    shown = json.dumps(message.blocks)
    assert "more; see" not in shown
    assert all(f"`{index:03d}&amp;&lt;" in shown for index in range(len(notices)))


def test_lines_past_every_limit_count_those_left_out() -> None:
    """A message given far more lines than fit says how many it leaves out, in bounds."""
    notices = [_huge(index) for index in range(300)]
    message = blocks.message(notices, at(1), compact=True)
    check_limits(message)
    assert message.blocks[-1]["elements"][0]["text"].startswith("_… and ")


def test_a_folded_message_says_what_it_sums_up() -> None:
    """A folded backlog is a compact message with a note of how many messages it folds."""
    notices = [Notice(NoticeKind.FIRING, _alert(f"desk-{i}")) for i in range(30)]
    message = blocks.message(notices, at(1), folded=42)
    check_limits(message)
    assert message.blocks[0]["text"]["text"] == "riskwatch: where 30 alerts stand now"
    assert "42 messages" in message.blocks[1]["elements"][0]["text"]


def test_masking_reaches_every_string() -> None:
    """A secret anywhere in the blocks is masked, buttons' values included."""
    masked = blocks.masked([{"type": "section", "text": {"type": "mrkdwn", "text": "a s3cret"},
                             "fields": [{"type": "mrkdwn", "text": "s3cret"}]}],
                           lambda text: text.replace("s3cret", "***"))
    assert "s3cret" not in json.dumps(masked) and json.dumps(masked).count("***") == 2


def test_sixteen_detailed_alerts_fit_slacks_block_count() -> None:
    """Detailed messages hold at most 16 alerts: three blocks each and a header fit in 50."""
    assert 1 + render.MAX_ALERTS_PER_MESSAGE * blocks.BLOCKS_PER_ALERT <= blocks.MAX_BLOCKS
    notices = [Notice(NoticeKind.FIRING, _alert(f"desk-{i}", detail="x", action="y"))
               for i in range(render.MAX_ALERTS_PER_MESSAGE)]
    message = blocks.message(notices, at(1))
    check_limits(message)
    assert len(message.blocks) == 1 + 2 * render.MAX_ALERTS_PER_MESSAGE


def _planned(notices: Sequence[Notice], link: blocks.Link | None = None) -> list[SlackMessage]:
    router = Router({"webhook": SlackWebhookSink("http://127.0.0.1:9/hook")}, ["webhook"],
                    links=link is not None)
    return [blocks.message([notice_from_dict(n) for n in planned.payload["notices"]], at(86_400),
                           compact=bool(planned.payload["compact"]), buttons=True, link=link)
            for planned in plan_messages(notices, router).messages]


@pytest.mark.parametrize(("huge", "count"), [(False, 500), (True, 40)],
                         ids=["500-plain", "40-with-10k-names"])
def test_a_big_poll_announces_every_alert_within_slacks_limits(huge: bool, count: int) -> None:
    """500 changed alerts in one poll (and 40 whose every string is 10,000 characters:
    one or two a message, so more would only repeat the same check) are planned into
    messages that each keep every limit with buttons shown a day later, and every alert
    appears in one of them."""
    notices = [_huge(i, 10_000) if huge else
               Notice(NoticeKind.FIRING, _alert(f"desk-{i:03d}", detail="HTTP 500"))
               for i in range(count)]
    messages = _planned(notices)
    for message in messages:
        check_limits(message)
        check_inert(message)
    shown = "\n".join(json.dumps(message.blocks) for message in messages)
    assert "more; see" not in shown
    name = "`{:03d}&amp;&lt;" if huge else "`desk-{:03d}`"
    assert all(name.format(i) in shown for i in range(count))


def test_with_a_public_url_each_alert_links_to_its_accounts_status_page() -> None:
    """RISKWATCH_PUBLIC_URL: the context line links to /accounts/NAME, the name quoted so
    that no character of it can end the link or start another; a name too long for a
    link gets none, and the message still passes every limit."""
    link = blocks.status_link("https://rw.example")
    plain = blocks.message([Notice(NoticeKind.FIRING, _alert())], at(5), link=link)
    check_limits(plain)
    notes = [e["text"] for b in plain.blocks if b["type"] == "context" for e in b["elements"]]
    assert "<https://rw.example/accounts/desk-1|Status page>" in notes
    odd = blocks.message([Notice(NoticeKind.FIRING, _alert("a|b>c <!here>"))], at(5), link=link)
    shown = json.dumps(odd.blocks)
    assert "https://rw.example/accounts/a%7Cb%3Ec%20%3C%21here%3E|Status page" in shown
    long = blocks.message([_huge(1)], at(5), link=link)
    check_limits(long)
    assert "Status page" not in json.dumps(long.blocks)
    without = blocks.message([Notice(NoticeKind.FIRING, _alert())], at(5))
    assert "Status page" not in json.dumps(without.blocks)


def test_with_links_500_alerts_still_fit_and_every_detailed_alert_links() -> None:
    """The planner counts the status page link when there is one: every message keeps
    Slack's limits, and no detailed message has to fall back to one line per alert."""
    notices = [Notice(NoticeKind.FIRING, _alert(f"desk-{i:03d}", detail="HTTP 500"))
               for i in range(500)]
    messages = _planned(notices, blocks.status_link("https://riskwatch.desk.example"))
    for message in messages:
        check_limits(message)
    shown = "\n".join(json.dumps(message.blocks) for message in messages)
    detailed = [n for n in range(500) if f"desk-{n:03d}|Status page" in shown]
    assert detailed == list(range(render.MAX_DETAILED_PER_POLL))
