"""The Slack cockpit as a desk meets it: a real daemon, driven poll by poll on a fake
clock, posting to a fake Slack on loopback whose Socket Mode WebSocket delivers clicks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from riskwatch.cli import cli
from riskwatch.config.settings import Settings, load_settings
from riskwatch.core.interactions import ACK, SILENCE_1H, UNSILENCE
from riskwatch.core.silences import Silence
from riskwatch.service.daemon import Daemon, utcnow
from riskwatch.service.interactions import SlackInteractions
from tests.blockkit import check_blocks, check_inert
from tests.integration.fake_slack_socket import APP_TOKEN, BOT_TOKEN, ApiCall, FakeSlackSocket
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import (
    MARGIN_RULES,
    Clock,
    cached_with_ratio,
    daemon_on,
    wait_until,
)

CHANNEL = "C0RISK"


@pytest.fixture
def fake() -> Iterator[FakeSlackSocket]:
    """A fake Slack for Socket Mode and the Web API on 127.0.0.1."""
    server = FakeSlackSocket()
    yield server
    server.close()


def cockpit_settings(tread: FakeTread, fake: FakeSlackSocket, folder: Path,
                     **extra: Any) -> Settings:
    """Bot token, app token and operators, all pointed at the fakes."""
    rules = folder / "rules.yaml"
    rules.write_text(MARGIN_RULES)
    values: dict[str, Any] = {
        "tread_url": tread.url, "tread_token": TOKEN, "poll_interval": "1s",
        "state": f"sqlite:///{folder}/state.db", "rules": rules, "http": "off",
        "slack_bot_token": BOT_TOKEN, "slack_channel": CHANNEL, "slack_api_url": fake.api_url,
        "slack_app_token": APP_TOKEN, "slack_operators": "U0OPS", **extra}
    return load_settings(**values)


Script = Callable[[Daemon], Coroutine[Any, Any, None]]


def run(settings: Settings, clock: Clock, fake: FakeSlackSocket, script: Script) -> Daemon:
    """A daemon with its Socket Mode connection open, running ``script``."""
    daemon = daemon_on(settings, clock)

    async def go() -> None:
        assert daemon.interactions is not None
        await daemon.interactions.start()
        try:
            assert await wait_until(lambda: fake.connected() >= 1, 10)
            await script(daemon)
        finally:
            await daemon.interactions.stop()
            await daemon.client.aclose()
            daemon.store.close()

    asyncio.run(go())
    return daemon


async def poll_and_send(daemon: Daemon) -> None:
    """One poll, then every message it made."""
    await daemon.tick_once()
    await daemon.deliverer.deliver_due()


def posts(fake: FakeSlackSocket) -> list[ApiCall]:
    """Messages posted (not updates)."""
    return fake.called("chat.postMessage")


def buttons_of(call: ApiCall) -> dict[str, str]:
    """action_id -> value of the buttons in a posted or updated message."""
    return {element["action_id"]: element["value"] for block in call.body.get("blocks", [])
            if block["type"] == "actions" for element in block["elements"]}


def context_text(call: ApiCall) -> str:
    """Every context line of a message, joined."""
    return "\n".join(element["text"] for block in call.body.get("blocks", [])
                     if block["type"] == "context" for element in block["elements"])


async def click(fake: FakeSlackSocket, action: str, parent: ApiCall, *, user: str = "U0OPS",
                **extra: Any) -> tuple[str, float]:
    """Click a button of the posted ``parent`` message; the envelope id and seconds to ack."""
    started = time.monotonic()
    envelope = fake.click(action, buttons_of(parent)[ACK], user=user, username=user.lower(),
                          channel=CHANNEL, message_ts=_ts(fake, parent), **extra)
    assert await wait_until(lambda: fake.acked(envelope), 3)
    return envelope, time.monotonic() - started


def _ts(fake: FakeSlackSocket, parent: ApiCall) -> str:
    """The ts Slack gave ``parent`` (the fake numbers posts in order)."""
    return f"1700000000.{posts(fake).index(parent) + 1:06d}"


def test_an_operator_silences_an_alert_from_its_message(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """A firing message carries the buttons; *Silence 1h* by an operator is acked within
    3 s, creates the silence (listed by the CLI with its author), updates the parent with
    *Unsilence*, is told in the thread, and the next escalation of the alert is not sent."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))
    latencies: list[float] = []

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        assert set(buttons_of(firing)) == {ACK, SILENCE_1H, "riskwatch_silence_4h"}
        _, took = await click(fake, SILENCE_1H, firing)
        latencies.append(took)
        assert await wait_until(lambda: len(daemon.store.silences()) == 1, 3)
        await daemon.deliverer.deliver_due()
        update = fake.called("chat.update")[-1]
        assert update.body["ts"] == _ts(fake, firing) and UNSILENCE in buttons_of(update)
        check_blocks(update.body["blocks"])
        clock.advance(5)
        await poll_and_send(daemon)
        told = posts(fake)[-1]
        assert told.body["thread_ts"] == _ts(fake, firing)
        assert "Silenced by <@U0OPS> until <!date^" in context_text(told)
        check_blocks(told.body["blocks"])
        check_inert(told.body["blocks"])
        sent = len(posts(fake))
        tread.set_cached(cached_with_ratio("0.9"))  # escalates to critical, while silenced
        clock.advance(5)
        await poll_and_send(daemon)
        assert len(posts(fake)) == sent

    run(settings, clock, fake, script)
    assert latencies[0] < 3
    listed = CliRunner().invoke(cli, ["silence", "list"],
                                env={"RISKWATCH_STATE": settings.state})
    assert listed.exit_code == 0, listed.output
    assert "slack:<@U0OPS|u0ops>" in listed.output and "eth-margin" in listed.output


def test_acknowledge_updates_the_parent_and_stops_reminders_until_an_escalation(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """*Acknowledge* shows "Acknowledged by" on the parent message at once; the hourly
    reminder is not sent while acknowledged; an escalation is sent and clears it."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        await click(fake, ACK, firing)
        assert await wait_until(lambda: daemon.store.acknowledgements(), 3)
        await daemon.deliverer.deliver_due()
        update = fake.called("chat.update")[-1]
        assert "Acknowledged by <@U0OPS> at <!date^" in context_text(update)
        check_blocks(update.body["blocks"])
        clock.advance(3700)  # past the rule's hourly reminder
        await poll_and_send(daemon)
        assert posts(fake) == [firing]
        tread.set_cached(cached_with_ratio("0.9"))
        clock.advance(5)
        await poll_and_send(daemon)
        escalated = posts(fake)[-1]
        assert "escalated" in escalated.body["text"]
        key = next(iter(daemon.alerts))
        assert daemon.alerts[key].acked_by == "" and daemon.alerts[key].escalated_at

    run(settings, clock, fake, script)


def test_a_non_operator_is_refused_and_nothing_changes(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """A click by someone not in RISKWATCH_SLACK_OPERATORS gets an ephemeral "not
    allowed"; no silence, no acknowledgement, no update; the click is recorded as refused."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        await click(fake, SILENCE_1H, firing, user="U0NOPE")
        assert await wait_until(lambda: fake.called("response_url"), 3)
        await daemon.deliverer.deliver_due()
        assert daemon.store.silences() == [] and daemon.store.acknowledgements() == []
        assert fake.called("chat.update") == []
        [stored] = daemon.store.interactions()
        assert (stored["user"], stored["outcome"]) == ("U0NOPE", "refused")

    run(settings, clock, fake, script)
    [reply] = fake.called("response_url")
    assert "not allowed" in reply.body["text"] and reply.body["response_type"] == "ephemeral"


def test_a_redelivered_click_takes_effect_once_and_a_dropped_socket_reconnects(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """The same envelope delivered twice (Slack retries one it thinks was not acked)
    makes one silence and one update; after the WebSocket drops, a new one is opened and
    the next click (*Unsilence*) works and ends the silence."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        envelope, _ = await click(fake, SILENCE_1H, firing, action_ts="1700000100.000001")
        await click(fake, SILENCE_1H, firing, action_ts="1700000100.000001",
                    envelope_id=envelope, retry_attempt=1)
        assert await wait_until(lambda: len(daemon.store.interactions()) == 1, 3)
        await asyncio.sleep(0.2)  # the second delivery is handled, and adds nothing
        assert len(daemon.store.silences()) == 1 and len(daemon.store.interactions()) == 1
        assert daemon.interactions is not None and daemon.interactions.handled == 1
        clock.advance(1)
        await poll_and_send(daemon)  # the silence is told in the thread
        fake.drop()
        assert await wait_until(lambda: fake.opened >= 2 and fake.connected() == 1, 10)
        await click(fake, UNSILENCE, firing)
        assert await wait_until(lambda: len(daemon.store.interactions()) == 2, 3)
        [silence] = daemon.store.silences()
        assert not silence.active(clock()) and silence.ended_by == "slack:<@U0OPS|u0ops>"
        clock.advance(1)
        await poll_and_send(daemon)
        thread = [context_text(call) for call in posts(fake)
                  if call.body.get("thread_ts") == _ts(fake, firing)]
        assert len(thread) == 2 and "ended by <@U0OPS>" in thread[-1]

    run(settings, clock, fake, script)


def test_a_cli_silence_is_told_when_made_ten_minutes_before_its_end_and_when_it_ends(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """A silence added with the CLI covering a firing alert is told in its thread at the
    next poll, again in its last ten minutes, and its end within one poll; each once."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        now = clock()
        daemon.store.add_silence(Silence("maint1", "eth-*", None, None, now,
                                         now + timedelta(minutes=15), "exchange maintenance",
                                         now, "alice"))
        told: list[str] = []
        for seconds in (1, 1, 6 * 60, 1, 9 * 60, 1):
            clock.advance(seconds)
            await poll_and_send(daemon)
            told += [context_text(call) for call in posts(fake)
                     if call.body.get("thread_ts") == _ts(fake, firing)][len(told):]
        assert len(told) == 3
        assert "Silenced by `alice`" in told[0] and "exchange maintenance" in told[0]
        assert "ends at" in told[1] and "ended" in told[2]

    run(settings, clock, fake, script)


def test_slash_commands_answer_status_and_silences_ephemerally(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """`/riskwatch status` lists the firing alert; `/riskwatch silences` the silences in
    force; both in the ack, ephemeral, over the same connection."""
    clock = Clock(tread)
    settings = cockpit_settings(tread, fake, tmp_path)
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        now = clock()
        daemon.store.add_silence(Silence("s1", "eth-margin", None, None, now,
                                         now + timedelta(hours=1), "rollover", now, "bob"))
        for asked in ("status", "silences"):
            envelope = fake.command(asked)
            assert await wait_until(lambda envelope=envelope: fake.acked(envelope), 3)

    run(settings, clock, fake, script)
    status, silences = (ack.payload or {} for ack in fake.acks[-2:])
    assert status["response_type"] == "ephemeral"
    assert "1 firing" in status["text"] and "`eth-margin`" in status["text"]
    assert "`s1`" in silences["text"] and "rollover" in silences["text"]


def test_webhook_mode_sends_block_kit_without_buttons(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """With a webhook (even with operators set) messages are Block Kit, with no buttons."""
    clock = Clock(tread)
    rules = tmp_path / "rules.yaml"
    rules.write_text(MARGIN_RULES)
    settings = load_settings(tread_url=tread.url, tread_token=TOKEN, poll_interval="1s",
                             state=f"sqlite:///{tmp_path}/state.db", rules=rules, http="off",
                             slack_webhook_url=slack.webhook_url, slack_operators="U0OPS")
    tread.set_cached(cached_with_ratio("0.6"))
    daemon = daemon_on(settings, clock)
    assert daemon.interactions is None

    async def go() -> None:
        try:
            await poll_and_send(daemon)
        finally:
            await daemon.client.aclose()
            daemon.store.close()

    asyncio.run(go())
    [post] = slack.posts()
    check_blocks(post.body["blocks"])
    assert not any(block["type"] == "actions" for block in post.body["blocks"])


def test_interactions_need_the_app_token() -> None:
    """SlackInteractions refuses to start without its tokens."""
    with pytest.raises(ValueError, match="Socket Mode"):
        SlackInteractions(load_settings(), None, utcnow)  # type: ignore[arg-type]


def test_operators_may_be_a_user_group_read_from_slack(
    tread: FakeTread, fake: FakeSlackSocket, tmp_path: Path,
) -> None:
    """RISKWATCH_SLACK_OPERATORS=S… is a user group: its members (usergroups.users.list)
    may act, anyone else is refused; the group is asked for once, not at every click."""
    clock = Clock(tread)
    fake.groups["S0DESK"] = ["U0ANA"]
    settings = cockpit_settings(tread, fake, tmp_path, slack_operators="S0DESK")
    tread.set_cached(cached_with_ratio("0.6"))

    async def script(daemon: Daemon) -> None:
        await poll_and_send(daemon)
        [firing] = posts(fake)
        await click(fake, SILENCE_1H, firing, user="U0NOPE")
        assert await wait_until(lambda: fake.called("response_url"), 3)
        assert daemon.store.silences() == []
        await click(fake, SILENCE_1H, firing, user="U0ANA")
        assert await wait_until(lambda: daemon.store.silences() != [], 3)

    run(settings, clock, fake, script)
    assert len(fake.called("usergroups.users.list")) == 1
