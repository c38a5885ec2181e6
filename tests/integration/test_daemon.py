"""`riskwatch run` at one-second polls against loopback fakes of Tread.fi and Slack.

The alert lifecycle runs tick by tick on a fake clock; how the loop stops and how it
schedules a slow poll are about its real timers, so those two run on them (``e2e``)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from riskwatch.service.daemon import Daemon
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    Clock,
    cached_with_ratio,
    close_daemon,
    daemon_on,
    make_daemon,
    settings_for,
    ticks,
    ticks_until,
    wait_until,
)

LATENCY_LIMIT = 1.5  # one poll interval plus half a second


async def _change_and_wait(daemon: Daemon, clock: Clock, tread: FakeTread, slack: FakeSlack,
                           ratio: str, expected_posts: int) -> float:
    """Move the account to ``ratio``; return the clock's seconds until Slack had
    ``expected_posts``."""
    changed = clock.timestamp()
    tread.set_cached(cached_with_ratio(ratio))
    arrived = await ticks_until(daemon, clock, lambda: len(slack.posts()) >= expected_posts, 5)
    assert arrived, f"no message {expected_posts} within 5 polls"
    return slack.posts()[expected_posts - 1].at - changed


async def _start(daemon: Daemon) -> asyncio.Task[None]:
    task = asyncio.create_task(daemon.run())
    await asyncio.sleep(0)
    return task


async def _stop(daemon: Daemon, task: asyncio.Task[None]) -> float:
    began = time.monotonic()
    daemon.stop_event.set()
    await asyncio.wait_for(task, timeout=10)
    await close_daemon(daemon)
    return time.monotonic() - began


def test_warning_critical_safe_sends_exactly_three_timely_messages_and_restart_sends_none(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """SPEC issue point 4 through the webhook: firing, escalation, resolution; no repeats."""
    settings = settings_for(tread, slack, tmp_path)
    tread.set_cached(cached_with_ratio("0.2"))
    clock = Clock(tread, slack)

    async def scenario() -> list[float]:
        latencies = []
        daemon = daemon_on(settings, clock)
        await ticks(daemon, clock, 2)
        assert slack.posts() == []  # safe: nothing to say
        latencies.append(await _change_and_wait(daemon, clock, tread, slack, "0.6", 1))
        await ticks(daemon, clock, 3)
        assert len(slack.posts()) == 1  # nothing more while the state holds
        latencies.append(await _change_and_wait(daemon, clock, tread, slack, "0.9", 2))
        await ticks(daemon, clock, 1)
        await close_daemon(daemon)
        restarted = daemon_on(settings, clock)  # a restart while the alert fires
        await ticks(restarted, clock, 3)
        assert len(slack.posts()) == 2, "the restart repeated a notification"
        latencies.append(await _change_and_wait(restarted, clock, tread, slack, "0.1", 3))
        await ticks(restarted, clock, 3)
        await close_daemon(restarted)
        return latencies

    latencies = asyncio.run(scenario())
    texts = [post.body["text"] for post in slack.posts()]
    assert len(texts) == 3
    assert "FIRING · WARNING" in texts[0]
    assert "FIRING · CRITICAL (escalated from WARNING)" in texts[1]
    assert "RESOLVED (was CRITICAL)" in texts[2]
    assert max(latencies) <= LATENCY_LIMIT, latencies


def test_bot_token_threads_changes_and_updates_the_firing_message(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """With the Web API, changes reply in the firing message's thread and it is edited."""
    settings = settings_for(tread, slack, tmp_path, bot=True)
    tread.set_cached(cached_with_ratio("0.6"))
    clock = Clock(tread, slack)

    async def scenario() -> None:
        daemon = daemon_on(settings, clock)
        assert await ticks_until(daemon, clock, lambda: len(slack.posts()) == 1, 5)
        await _change_and_wait(daemon, clock, tread, slack, "0.9", 2)
        await _change_and_wait(daemon, clock, tread, slack, "0.2", 3)
        await ticks_until(daemon, clock,
                          lambda: sum(c.method == "chat.update" for c in slack.calls) >= 2, 5)
        await close_daemon(daemon)

    asyncio.run(scenario())
    first, escalation, resolution = slack.posts()
    assert first.body["channel"] == "#risk" and "thread_ts" not in first.body
    parent_ts = "1700000000.000001"
    assert escalation.body["thread_ts"] == parent_ts
    assert resolution.body["thread_ts"] == parent_ts
    updates = [c for c in slack.calls if c.method == "chat.update"]
    assert all(u.body["ts"] == parent_ts for u in updates)
    assert "RESOLVED" in updates[-1].body["text"]
    assert first.headers["authorization"] == "Bearer xoxb-test-secret-bot-token"


@pytest.mark.e2e
def test_daemon_stops_within_seconds_and_survives_api_failures(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A failing API does not stop the loop or resolve alerts; stop takes a few seconds."""
    from riskwatch.demo.loopback import Reply

    settings = settings_for(tread, slack, tmp_path)
    tread.set_cached(cached_with_ratio("0.9"))

    async def scenario() -> float:
        daemon = make_daemon(settings)
        task = await _start(daemon)
        assert await wait_until(lambda: len(slack.posts()) == 1, seconds=5)
        tread.override = Reply.json({"message": "Something went wrong..."}, 500)
        await asyncio.sleep(2.5)
        polls_during_outage = daemon.polls
        assert not task.done()
        firing = [a for a in daemon.alerts.values() if a.key.rule == "eth-margin"]
        assert [a.state.value for a in firing] == ["firing"]
        assert polls_during_outage >= 3
        return await _stop(daemon, task)

    assert asyncio.run(scenario()) < 5
    assert len(slack.posts()) == 1  # the outage resolved nothing (stale_after not yet reached)


@pytest.mark.e2e
def test_slow_api_never_overlaps_polls_nor_piles_them_up(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A poll slower than the interval: one request at a time, and no burst after the stall."""
    settings = settings_for(tread, slack, tmp_path, stale_after="10s")  # deadline 5 s
    tread.set_cached(cached_with_ratio("0.2"))
    tread.delay = 2.5  # each answer takes 2.5 polls' worth of time

    async def scenario() -> None:
        daemon = make_daemon(settings)
        task = await _start(daemon)
        await asyncio.sleep(6)
        tread.delay = 0
        await asyncio.sleep(2.5)
        await _stop(daemon, task)

    asyncio.run(scenario())
    assert tread.max_in_flight == 1
    times = [r.received for r in tread.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.9, gaps  # missed runs are coalesced, not replayed in a burst
    assert len(times) <= 8
