"""Slack sinks send Block Kit blocks with the mrkdwn text as fallback, through a running
daemon: posts, thread replies and in-place updates, by webhook and by Web API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riskwatch.notify import render
from tests.blockkit import check_blocks, check_inert
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    cached_with_ratio,
    close_daemon,
    make_daemon,
    settings_for,
    wait_until,
)

HOSTILE = "desk-1\n<!channel> *x* http://evil.example"


@pytest.mark.parametrize("bot", [False, True], ids=["webhook", "web-api"])
def test_every_slack_call_carries_valid_blocks_and_its_text(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, bot: bool,
) -> None:
    """A firing, its escalation and its resolution each reach Slack as blocks that pass
    Block Kit validation and Slack's limits, with the text fallback as before; with the
    Web API the in-place updates carry blocks too (Slack keeps old blocks otherwise)."""
    settings = settings_for(tread, slack, tmp_path, bot=bot)

    async def scenario() -> None:
        daemon = make_daemon(settings)
        task = asyncio.create_task(daemon.run())
        try:
            for ratio, posts in (("0.6", 1), ("0.9", 2), ("0.2", 3)):
                tread.set_cached(cached_with_ratio(ratio, HOSTILE))
                assert await wait_until(lambda n=posts: len(slack.posts()) >= n, seconds=5)
            if bot:
                assert await wait_until(
                    lambda: sum(c.method == "chat.update" for c in slack.calls) >= 2, 5)
        finally:
            daemon.stop_event.set()
            await asyncio.wait_for(task, timeout=10)
            await close_daemon(daemon)

    asyncio.run(scenario())
    for call in slack.calls:
        check_blocks(call.body["blocks"])
        check_inert(call.body["blocks"])
        assert 0 < len(call.body["text"]) <= render.MAX_TEXT
    headers = [call.body["blocks"][0]["text"]["text"] for call in slack.posts()]
    assert [header.split(" · ")[0] for header in headers] == [
        "FIRING", "FIRING", "RESOLVED (was CRITICAL)"]
    assert "ESCALATED" in slack.posts()[1].body["text"].upper()
    assert not [b for call in slack.calls for b in call.body["blocks"] if b["type"] == "actions"]
    assert {call.method for call in slack.calls} == (
        {"chat.postMessage", "chat.update"} if bot else {"webhook"})
