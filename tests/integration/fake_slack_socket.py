"""A fake Slack for Socket Mode on 127.0.0.1: the Web API calls an app makes and a real
WebSocket that delivers envelopes, as Slack's own servers do.

- ``POST /api/apps.connections.open`` with ``Authorization: Bearer xapp-…`` answers
  ``{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=N"}`` (another token type:
  ``not_allowed_token_type``; a wrong token: ``invalid_auth``).
- The WebSocket sends ``{"type": "hello", ...}`` when a client connects, then the
  ``interactive`` (block_actions) and ``slash_commands`` envelopes a test asks for with
  :meth:`FakeSlackSocket.click` and :meth:`FakeSlackSocket.command`, and records every
  acknowledgement (``{"envelope_id": ...}``) a client sends back.
- ``auth.test``, ``chat.postMessage``, ``chat.update`` and ``chat.postEphemeral`` (bot
  token) and posts to an envelope's ``response_url`` are recorded and answered ``ok``.
- :meth:`FakeSlackSocket.drop` ends every open WebSocket, as Slack does when it
  refreshes or loses a connection, so that reconnection can be tested.

The server runs on its own event loop in a thread, so sync and async tests alike can
drive it; every method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

APP_TOKEN = "xapp-1-A0RISK-0000-fakeapptoken"
BOT_TOKEN = "xoxb-0000-fakebottoken"
TEAM = {"id": "T0DESK", "domain": "desk"}
APP_ID = "A0RISK"


@dataclass(frozen=True)
class Ack:
    """An acknowledgement a client sent back over the WebSocket."""

    envelope_id: str
    payload: dict[str, Any] | None  # the response payload, for envelopes that accept one
    connection: int  # which connection (1 for the first) it came over


@dataclass(frozen=True)
class ApiCall:
    """A Web API call or a post to a response_url."""

    method: str  # "chat.postMessage", ..., or "response_url"
    body: dict[str, Any]
    token: str | None  # the bearer token it carried


@dataclass
class _Socket:
    number: int
    ws: web.WebSocketResponse
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeSlackSocket:
    """Slack's Socket Mode endpoints and the Web API calls a riskwatch app makes."""

    def __init__(self, *, app_token: str = APP_TOKEN, bot_token: str = BOT_TOKEN) -> None:
        self.app_token = app_token
        self.bot_token = bot_token
        self.acks: list[Ack] = []
        self.calls: list[ApiCall] = []
        self.opened = 0  # apps.connections.open calls that returned a URL
        self.groups: dict[str, list[str]] = {}  # user group id -> its members
        self.hellos = 0  # connections that were sent hello
        self.lock = threading.Lock()
        self._sockets: list[_Socket] = []
        self._ts = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Slack did not start")
        self.api_url = f"{self.url}/api/"

    # -- what tests call -------------------------------------------------------------

    def click(self, action_id: str, value: str, *, user: str = "U0OPS",
              username: str = "ops", channel: str = "C0RISK",
              message_ts: str = "1700000000.000001", envelope_id: str | None = None,
              retry_attempt: int = 0, action_ts: str | None = None) -> str:
        """Send a button click (an ``interactive`` envelope of type ``block_actions``) over
        the newest connection; returns its envelope_id (pass it again, with the same
        ``action_ts``, to redeliver the same click)."""
        envelope_id = envelope_id or str(uuid.uuid4())
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user, "username": username, "name": username,
                     "team_id": TEAM["id"]},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False},
            "trigger_id": f"{next(self._ts)}.{TEAM['id']}.fake",
            "team": TEAM,
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "risk"},
            "message": {"type": "message", "ts": message_ts, "bot_id": "B0RISK", "text": ""},
            "state": {"values": {}},
            "response_url": self._response_url(),
            "actions": [{"action_id": action_id, "block_id": "fake-block", "value": value,
                         "type": "button", "text": {"type": "plain_text", "text": action_id},
                         "action_ts": action_ts or f"{time.time():.6f}"}],
        }
        self._send({"envelope_id": envelope_id, "type": "interactive", "payload": payload,
                    "accepts_response_payload": False, "retry_attempt": retry_attempt,
                    "retry_reason": "timeout" if retry_attempt else ""})
        return envelope_id

    def command(self, text: str, *, user: str = "U0OPS", username: str = "ops",
                channel: str = "C0RISK", command: str = "/riskwatch") -> str:
        """Send a slash command (a ``slash_commands`` envelope); returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        payload = {
            "token": "legacy-verification-token", "team_id": TEAM["id"],
            "team_domain": TEAM["domain"], "channel_id": channel, "channel_name": "risk",
            "user_id": user, "user_name": username, "command": command, "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": self._response_url(),
            "trigger_id": f"{next(self._ts)}.{TEAM['id']}.fake",
        }
        self._send({"envelope_id": envelope_id, "type": "slash_commands", "payload": payload,
                    "accepts_response_payload": True})
        return envelope_id

    def drop(self, *, warn: bool = False) -> None:
        """End every open WebSocket abruptly (close code 1001); with ``warn``, send the
        ``disconnect`` message instead, as Slack does before it refreshes a connection,
        and leave the client to open a new one and close the old one itself."""
        asyncio.run_coroutine_threadsafe(self._drop(warn), self._loop).result(10)

    def connected(self) -> int:
        """How many WebSockets are open now."""
        with self.lock:
            return sum(not socket.ws.closed for socket in self._sockets)

    def acked(self, envelope_id: str) -> list[Ack]:
        """The acknowledgements received for ``envelope_id``."""
        with self.lock:
            return [ack for ack in self.acks if ack.envelope_id == envelope_id]

    def called(self, method: str) -> list[ApiCall]:
        """The calls of one Web API method (or ``response_url``) received so far."""
        with self.lock:
            return [call for call in self.calls if call.method == method]

    def close(self) -> None:
        """Stop the server and its thread."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- the server ----------------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk reads some methods by GET
        app.router.add_post("/response/{id}", self._response)
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._drop(warn=False)
        if self._runner is not None:
            await self._runner.cleanup()

    def _response_url(self) -> str:
        return f"{self.url}/response/{uuid.uuid4().hex}"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        body = {**request.query, **(await _body(request))}
        token = token or body.get("token")
        if method == "apps.connections.open":
            return web.json_response(self._open(token))
        if token != self.bot_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        with self.lock:
            self.calls.append(ApiCall(method, body, token))
        if method == "auth.test":
            return web.json_response({"ok": True, "url": "https://desk.slack.com/",
                                      "team": "desk", "user": "riskwatch",
                                      "team_id": TEAM["id"], "user_id": "U0BOT",
                                      "bot_id": "B0RISK", "is_enterprise_install": False})
        if method in {"chat.postMessage", "chat.update"}:
            ts = body.get("ts") or f"1700000000.{next(self._ts):06d}"
            return web.json_response({"ok": True, "channel": body.get("channel"), "ts": ts})
        if method == "chat.postEphemeral":
            return web.json_response({"ok": True, "message_ts": f"{time.time():.6f}"})
        if method == "usergroups.users.list":
            group = str(body.get("usergroup", ""))
            if group not in self.groups:
                return web.json_response({"ok": False, "error": "no_such_subteam"})
            return web.json_response({"ok": True, "users": self.groups[group]})
        return web.json_response({"ok": False, "error": "unknown_method"})

    def _open(self, token: str | None) -> dict[str, Any]:
        if token is None or token.startswith("xoxb-"):
            return {"ok": False, "error": "not_allowed_token_type" if token else "not_authed"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        with self.lock:
            self.opened += 1
            ticket = self.opened
        return {"ok": True, "url": f"ws://{self.url.removeprefix('http://')}/link/"
                                   f"?ticket={ticket}&app_id={APP_ID}"}

    async def _response(self, request: web.Request) -> web.Response:
        with self.lock:
            self.calls.append(ApiCall("response_url", await _body(request), None))
        return web.json_response({"ok": True})

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self.lock:
            self.hellos += 1
            socket = _Socket(self.hellos, ws)
            self._sockets.append(socket)
        await ws.send_json({"type": "hello", "num_connections": self.connected(),
                            "debug_info": {"host": "fake-slack", "approximate_connection_time":
                                           18060}, "connection_info": {"app_id": APP_ID}})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if isinstance(data, dict) and "envelope_id" in data:
                with self.lock:
                    self.acks.append(Ack(str(data["envelope_id"]), data.get("payload"),
                                         socket.number))
        socket.closed.set()
        return ws

    def _send(self, envelope: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(self._deliver(envelope), self._loop).result(10)

    async def _deliver(self, envelope: dict[str, Any]) -> None:
        with self.lock:
            open_sockets = [socket for socket in self._sockets if not socket.ws.closed]
        if not open_sockets:
            raise RuntimeError("no Socket Mode connection to deliver to")
        await open_sockets[-1].ws.send_json(envelope)

    async def _drop(self, warn: bool) -> None:
        with self.lock:
            open_sockets = [socket for socket in self._sockets if not socket.ws.closed]
        for socket in open_sockets:
            if warn:
                await socket.ws.send_json({"type": "disconnect", "reason": "refresh_requested",
                                           "debug_info": {"host": "fake-slack"}})
            else:
                await socket.ws.close(code=1001, message=b"going away")


async def _body(request: web.Request) -> dict[str, Any]:
    """A Web API body: JSON, or form fields as slack_sdk sends some calls."""
    if request.content_type == "application/json":
        data = await request.json()
        return data if isinstance(data, dict) else {"_": data}
    form = await request.post()
    return {key: str(value) for key, value in form.items()}
