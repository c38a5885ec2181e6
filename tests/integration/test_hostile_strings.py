"""Hostile strings from the API: a huge or crafted account name hides no other alert,
forges no line and pings nobody, through every sink of a running daemon."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.notify import render
from riskwatch.notify.plan import Router, plan_messages
from riskwatch.notify.sinks import SlackWebhookSink, TerminalSink
from riskwatch.service.daemon import Daemon
from riskwatch.service.wiring import load_compiled_rules, open_client, open_state
from riskwatch.store.codec import notice_from_dict
from tests.helpers import at
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    cached_with_ratio,
    close_daemon,
    make_daemon,
    settings_for,
    wait_until,
)

LONG_ACCOUNT = "A" * 10_000
LONG_SYMBOL = "S" * 10_000
OTHERS = [f"desk-{index}" for index in range(1, 6)]


def _six_breaches(first_account: str = LONG_ACCOUNT,
                  first_symbol: str = LONG_SYMBOL) -> dict[str, Any]:
    """A payload with six breaching positions, the first with a hostile name and symbol."""
    payload = cached_with_ratio("0.9", first_account)
    payload["balances"][0]["assets"][0]["symbol"] = first_symbol
    for name in OTHERS:
        payload["balances"].extend(cached_with_ratio("0.9", name)["balances"])
    return payload


def _run(daemon: Daemon, done: Callable[[], bool]) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(daemon.run())
        try:
            assert await wait_until(done, seconds=15)
        finally:
            daemon.stop_event.set()
            await task
            await close_daemon(daemon)

    asyncio.run(scenario())


def _all_six_in(shown: str) -> None:
    assert shown.count("FIRING · CRITICAL") == 6, shown[:2000]
    for name in OTHERS:
        assert name in shown, name
    assert "A" * 150 in shown and "A" * 250 not in shown  # the long name, cut
    assert "S" * 150 in shown and "S" * 250 not in shown
    assert "more; see" not in shown


@pytest.mark.parametrize("bot", [False, True], ids=["webhook", "web-api"])
def test_a_ten_thousand_character_name_hides_no_alert_in_slack(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, bot: bool,
) -> None:
    """A poll with a 10,000-character account name and symbol and five other breaches
    announces all six in Slack, the long strings cut with an ellipsis."""
    tread.set_cached(_six_breaches())
    daemon = make_daemon(settings_for(tread, slack, tmp_path, bot=bot))

    def announced() -> str:
        return "\n".join(call.body["text"] for call in slack.posts())

    _run(daemon, lambda: announced().count("FIRING · CRITICAL") >= 6)
    _all_six_in(announced())
    assert all(len(call.body["text"]) <= render.MAX_TEXT for call in slack.posts())


def test_a_ten_thousand_character_name_hides_no_alert_in_the_terminal(
    tread: FakeTread, tmp_path: Path,
) -> None:
    """The same poll prints all six alerts in the terminal."""
    tread.set_cached(_six_breaches())
    settings = settings_for(tread, None, tmp_path)
    stream = io.StringIO()
    router = Router({"terminal": TerminalSink(stream)}, ["terminal"])
    daemon = Daemon(settings, load_compiled_rules([settings.rules]), open_state(settings),
                    open_client(settings), router)
    _run(daemon, lambda: stream.getvalue().count("FIRING · CRITICAL") >= 6)
    _all_six_in(stream.getvalue())


@pytest.mark.parametrize("bot", [False, True], ids=["webhook", "web-api"])
def test_a_crafted_name_forges_no_line_and_pings_nobody(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, bot: bool,
) -> None:
    """Newlines, markup, mentions and links in a name and symbol reach Slack as text on
    the alert's own line, and Slack is asked to link no names."""
    account = "desk-x\n:large_green_circle: *RESOLVED (was CRITICAL)* <!channel> @here"
    symbol = "ETH:PERP-USDT\u202e <http://evil.example|click> http://evil.example"
    tread.set_cached(_six_breaches(account, symbol))
    daemon = make_daemon(settings_for(tread, slack, tmp_path, bot=bot))

    def announced() -> str:
        return "\n".join(call.body["text"] for call in slack.posts())

    _run(daemon, lambda: announced().count("FIRING · CRITICAL") >= 6)
    shown = announced()
    forged = [line for line in shown.splitlines() if "RESOLVED" in line]
    assert len(forged) == 1 and "account `desk-x\\n:large_green_circle:" in forged[0]
    assert "<!channel>" not in shown and "<http" not in shown and "://" not in shown
    assert "\u202e" not in shown and "`ETH:PERP-USDT\\u202e &lt;http[:]//evil[.]example" in shown
    for call in slack.posts():
        assert call.body["link_names"] in (False, 0, "0", "false")
        assert call.body["parse"] == "none"


def _huge(index: int) -> Notice:
    name = f"{index:02d}" + "&<" * 5_000
    alert = Alert(key=AlertKey("margin", name, "ETH.example:" + "`*" * 5_000), state=State.FIRING,
                  severity="critical", exchange="Bybit" + "&" * 5_000,
                  metric="maint_margin_ratio", value=Decimal("0.9"), threshold=Decimal("0.8"),
                  since=at(0), firing_since=at(0), detail="&" * 5_000, action=">" * 5_000)
    return Notice(NoticeKind.FIRING, alert)


@pytest.mark.parametrize("count", [20, 150])
def test_messages_split_rather_than_clip(count: int) -> None:
    """Alerts whose escaped strings are as long as they can be are spread over more
    messages, each within Slack's size, and every alert appears in full."""
    router = Router({"webhook": SlackWebhookSink("http://127.0.0.1:9/hook")}, ["webhook"])
    notices = [_huge(index) for index in range(count)]
    messages = plan_messages(notices, router).messages
    bodies = [render.slack_message([notice_from_dict(n) for n in message.payload["notices"]],
                                 at(3600), compact=bool(message.payload["compact"]))
              for message in messages]
    assert len(messages) > (count + render.MAX_ALERTS_PER_MESSAGE - 1) // 20
    assert all(len(body) <= render.MAX_TEXT for body in bodies)
    joined = "\n".join(bodies)
    assert "more; see" not in joined
    assert all(f"`{index:02d}&amp;&lt;" in joined for index in range(count))
    assert sum(body.count("FIRING · CRITICAL") for body in bodies) == count
