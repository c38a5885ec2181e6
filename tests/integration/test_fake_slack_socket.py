"""The fake Slack speaks Socket Mode as slack_sdk's client expects: a URL from
apps.connections.open, hello, envelopes, acks, and a new connection after a drop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.integration.fake_slack_socket import APP_TOKEN, BOT_TOKEN, FakeSlackSocket
from tests.integration.scenario import wait_until


@pytest.fixture
def fake() -> Iterator[FakeSlackSocket]:
    """A fake Slack for Socket Mode on 127.0.0.1."""
    server = FakeSlackSocket()
    yield server
    server.close()


def _client(fake: FakeSlackSocket, received: list[SocketModeRequest]) -> SocketModeClient:
    """slack_sdk's aiohttp Socket Mode client, acking every envelope it receives."""
    web = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    client = SocketModeClient(APP_TOKEN, web_client=web, ping_interval=0.2)

    async def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request)
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    return client


@pytest.mark.parametrize("warn", [False, True], ids=["dropped", "disconnect-message"])
def test_slack_sdk_client_receives_a_click_acks_it_and_reconnects_after_a_drop(
    fake: FakeSlackSocket, warn: bool,
) -> None:
    """A block_actions envelope reaches the client's listener with the button's action and
    the message it sits on; the ack comes back; after the socket is dropped (or Slack asks
    the client to reconnect) the client opens a new URL and the next click arrives too."""
    received: list[SocketModeRequest] = []

    async def scenario() -> None:
        client = _client(fake, received)
        try:
            await client.connect()  # type: ignore[no-untyped-call]
            assert await wait_until(lambda: fake.hellos == 1 and fake.connected() == 1, 5)
            first = fake.click("riskwatch_silence_1h", "v1." + "0" * 24 + ".1700000000")
            assert await wait_until(lambda: fake.acked(first), 5)
            fake.drop(warn=warn)
            assert await wait_until(lambda: fake.opened >= 2 and fake.connected() == 1, 10)
            second = fake.command("status")
            assert await wait_until(lambda: fake.acked(second), 5)
            assert [ack.connection for ack in fake.acks] == [1, 2]
        finally:
            await client.close()  # type: ignore[no-untyped-call]
            await client.aiohttp_client_session.close()

    asyncio.run(scenario())
    click, command = received
    assert click.type == "interactive" and command.type == "slash_commands"
    assert click.payload["type"] == "block_actions"
    action = click.payload["actions"][0]
    assert action["action_id"] == "riskwatch_silence_1h" and action["value"].startswith("v1.")
    assert click.payload["user"] == {"id": "U0OPS", "username": "ops", "name": "ops",
                                     "team_id": "T0DESK"}
    assert click.payload["container"]["channel_id"] == "C0RISK"
    assert click.payload["response_url"].startswith(fake.url)
    assert command.payload["command"] == "/riskwatch" and command.payload["text"] == "status"


def test_connections_open_needs_the_app_level_token(fake: FakeSlackSocket) -> None:
    """A bot token cannot open a Socket Mode connection, as with Slack."""
    async def scenario() -> tuple[object, object]:
        web = AsyncWebClient(base_url=fake.api_url)
        with pytest.raises(SlackApiError) as refused:
            await web.apps_connections_open(app_token=BOT_TOKEN)
        right = await web.apps_connections_open(app_token=APP_TOKEN)
        return refused.value.response["error"], right["url"]

    wrong, url = asyncio.run(scenario())
    assert wrong == "not_allowed_token_type"
    assert isinstance(url, str) and url.startswith("ws://127.0.0.1:")


def test_web_api_and_response_url_calls_are_recorded(fake: FakeSlackSocket) -> None:
    """chat.postMessage, chat.update, chat.postEphemeral and response_url posts are kept
    with their bodies; a call with the wrong token is refused and not recorded."""
    async def scenario() -> None:
        web = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
        posted = await web.chat_postMessage(channel="C0RISK", text="hi", blocks=[])
        await web.chat_update(channel="C0RISK", ts=str(posted["ts"]), text="edited")
        await web.chat_postEphemeral(channel="C0RISK", user="U0X", text="not allowed")
        stranger = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)
        with pytest.raises(SlackApiError, match="invalid_auth"):
            await stranger.chat_postMessage(channel="C0RISK", text="x")

    asyncio.run(scenario())
    assert [call.method for call in fake.calls] == [
        "chat.postMessage", "chat.update", "chat.postEphemeral"]
    assert fake.called("chat.update")[0].body["text"] == "edited"
    assert fake.called("chat.postEphemeral")[0].body["user"] == "U0X"


def test_a_bolt_app_over_socket_mode_acks_clicks_and_commands_and_answers_them(
    fake: FakeSlackSocket,
) -> None:
    """slack-bolt's AsyncApp with its AsyncSocketModeHandler (the library recommended for
    the daemon's interactions) checks its bot token, routes a button by action_id and the
    slash command by name, acks both, answers through response_url and chat.postEphemeral,
    and keeps working after its connection is dropped."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

    async def scenario() -> None:
        app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url))

        @app.action("riskwatch_ack")
        async def acknowledge(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                              respond: AsyncRespond) -> None:
            await ack()
            await client.chat_postEphemeral(channel=body["container"]["channel_id"],
                                            user=body["user"]["id"], text="not allowed")
            await respond(text="acknowledged", replace_original=False)

        @app.command("/riskwatch")
        async def riskwatch(ack: AsyncAck, command: dict[str, Any]) -> None:
            await ack(text=f"you asked for {command['text']}")

        handler = AsyncSocketModeHandler(app, APP_TOKEN, ping_interval=0.2)
        try:
            await handler.connect_async()  # type: ignore[no-untyped-call]
            assert await wait_until(lambda: fake.connected() == 1, 5)
            click = fake.click("riskwatch_ack", "v1." + "0" * 24 + ".1700000000",
                               user="U0NOPE", username="stranger")
            assert await wait_until(lambda: fake.acked(click) and fake.called("response_url"), 5)
            fake.drop()
            assert await wait_until(lambda: fake.opened >= 2 and fake.connected() == 1, 10)
            status = fake.command("silences")
            assert await wait_until(lambda: fake.acked(status), 5)
            assert fake.acked(status)[0].payload == {"text": "you asked for silences"}
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
            await handler.client.aiohttp_client_session.close()

    asyncio.run(scenario())
    assert fake.called("auth.test"), "Bolt checks its token before it serves"
    ephemeral, = fake.called("chat.postEphemeral")
    assert ephemeral.body["user"] == "U0NOPE" and ephemeral.body["text"] == "not allowed"
    response, = fake.called("response_url")
    assert response.body["text"] == "acknowledged"
