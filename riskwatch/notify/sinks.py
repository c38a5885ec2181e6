"""Where messages go: Slack through the Web API or an incoming webhook, or the terminal.

A sink sends one rendered message and says how it went, including whether a failure is
worth retrying (429, 5xx, network) or permanent (``invalid_auth``, ``channel_not_found``),
as Alertmanager's notifiers do.

Slack sinks send Block Kit ``blocks`` (:mod:`riskwatch.notify.blocks`) with the mrkdwn
``text`` as the fallback Slack shows in notifications; the terminal gets plain text.

Every post and update asks Slack to link nothing by name (``link_names: false``,
``parse: none``): the text's own escaping (:mod:`riskwatch.notify.render`) is what makes
API strings inert, and Slack is not asked to find mentions in them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import httpx

SLACK_TIMEOUT_SECONDS = 10
DEFAULT_DEADLINE_SECONDS = 20.0  # one attempt in all, however slowly Slack answers
PERMANENT_WEBHOOK_ERRORS = frozenset({"invalid_payload", "no_service", "channel_not_found",
                                      "channel_is_archived", "action_prohibited",
                                      "no_active_hooks", "invalid_token"})
UPDATE_REFUSED = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
Blocks = Sequence[dict[str, Any]]
RETRYABLE_API_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error",
                                  "service_unavailable", "request_timeout"})


@dataclass(frozen=True)
class Delivery:
    """The outcome of one send."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    retry_after: float | None = None  # seconds, from Slack's Retry-After
    channel: str | None = None
    ts: str | None = None


class Sink(Protocol):
    """A destination for messages."""

    markup: str  # "slack" or "plain"
    threads: bool  # can reply in threads and update messages in place

    async def post(self, text: str, thread_ts: str | None = None, *,
                   blocks: Blocks | None = None) -> Delivery:
        """Send one message (as a reply in ``thread_ts`` where supported); Slack sinks
        show ``blocks`` with ``text`` as the fallback, others ignore them."""

    async def update(self, channel: str, ts: str, text: str, *,
                     blocks: Blocks | None = None) -> Delivery:
        """Rewrite an earlier message in place."""


class TerminalSink:
    """Prints alerts to standard output (the channel when Slack is not configured)."""

    markup = "plain"
    threads = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    async def post(self, text: str, thread_ts: str | None = None, *,
                   blocks: Blocks | None = None) -> Delivery:
        """Print the message (plain text; blocks are for Slack)."""
        stream = self.stream or sys.stdout
        print(text, file=stream, flush=True)
        return Delivery(ok=True)

    async def update(self, channel: str, ts: str, text: str, *,
                     blocks: Blocks | None = None) -> Delivery:  # pragma: no cover
        """The terminal cannot rewrite; never called because ``threads`` is False."""
        return Delivery(ok=True)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _network_failure(error: Exception) -> Delivery:
    return Delivery(ok=False, retryable=True, error=f"network: {type(error).__name__}")


class _SlackHttp:
    """One POST to Slack with a total deadline: a Slack that trickles its answer costs at
    most ``deadline`` seconds per attempt, and the attempt is then retried later."""

    def __init__(self, timeout: float, deadline: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.transport = transport

    async def send(self, url: str, body: dict[str, Any],
                   headers: dict[str, str]) -> httpx.Response | Delivery:
        """The response, or the Delivery that says why there is none."""
        try:
            async with asyncio.timeout(self.deadline):
                async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport,
                                             follow_redirects=False) as client:
                    response = await client.post(
                        url, content=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json; charset=utf-8",
                                 "User-Agent": "riskwatch", **headers})
                    await response.aread()
                    return response
        except TimeoutError:
            return Delivery(ok=False, retryable=True,
                            error=f"no answer within the {self.deadline:g}s deadline")
        except Exception as error:
            return _network_failure(error)


class SlackWebSink:
    """``chat.postMessage`` and ``chat.update`` with a bot token."""

    markup = "slack"
    threads = True

    def __init__(self, token: str, channel: str, base_url: str, *,
                 deadline: float = DEFAULT_DEADLINE_SECONDS,
                 timeout: float = SLACK_TIMEOUT_SECONDS) -> None:
        self.channel = channel
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._auth = {"Authorization": f"Bearer {token}"}
        self.http = _SlackHttp(timeout, deadline)

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any] | Delivery:
        answer = await self.http.send(self.base_url + method, body, self._auth)
        if isinstance(answer, Delivery):
            return answer
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.status_code == 200 and isinstance(data, dict) and data.get("ok"):
            return data
        code = data.get("error") if isinstance(data, dict) else None
        status = answer.status_code
        retryable = status == 429 or status >= 500 or code in RETRYABLE_API_ERRORS
        return Delivery(ok=False, retryable=retryable, error=str(code or f"HTTP {status}"),
                        retry_after=_retry_after(answer.headers))

    async def post(self, text: str, thread_ts: str | None = None, *,
                   blocks: Blocks | None = None) -> Delivery:
        """Post to the channel, or into a thread."""
        body: dict[str, Any] = {"channel": self.channel, "text": text, "unfurl_links": False,
                                "unfurl_media": False, "mrkdwn": True, "link_names": False,
                                "parse": "none"}
        if blocks is not None:
            body["blocks"] = list(blocks)
        if thread_ts:
            body["thread_ts"] = thread_ts
        data = await self._call("chat.postMessage", body)
        if isinstance(data, Delivery):
            return data
        return Delivery(ok=True, channel=str(data.get("channel") or self.channel),
                        ts=str(data.get("ts")) if data.get("ts") else None)

    async def update(self, channel: str, ts: str, text: str, *,
                     blocks: Blocks | None = None) -> Delivery:
        """Rewrite a message the bot posted earlier (without ``blocks``, Slack would keep
        the old ones: an update always sends them)."""
        body: dict[str, Any] = {"channel": channel, "ts": ts, "text": text,
                                "link_names": False, "parse": "none"}
        if blocks is not None:
            body["blocks"] = list(blocks)
        data = await self._call("chat.update", body)
        if isinstance(data, Delivery):
            return data
        return Delivery(ok=True, channel=channel, ts=ts)


class SlackWebhookSink:
    """An incoming webhook (no threads, no updates)."""

    markup = "slack"
    threads = False

    def __init__(self, url: str, timeout: float = SLACK_TIMEOUT_SECONDS, *,
                 deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
        self.url = url
        self.http = _SlackHttp(timeout, deadline)

    async def post(self, text: str, thread_ts: str | None = None, *,
                   blocks: Blocks | None = None) -> Delivery:
        """Post through the webhook."""
        body: dict[str, Any] = {"text": text, "unfurl_links": False, "unfurl_media": False,
                                "link_names": False, "parse": "none"}
        if blocks is not None:
            body["blocks"] = list(blocks)
        answer = await self.http.send(self.url, body, {})
        if isinstance(answer, Delivery):
            return answer
        if answer.status_code == 200:
            return Delivery(ok=True)
        said = answer.text.strip()[:100]
        retryable = answer.status_code == 429 or answer.status_code >= 500
        retryable = retryable and said not in PERMANENT_WEBHOOK_ERRORS
        return Delivery(ok=False, retryable=retryable,
                        error=said or f"HTTP {answer.status_code}",
                        retry_after=_retry_after(answer.headers))

    async def update(self, channel: str, ts: str, text: str, *,
                     blocks: Blocks | None = None) -> Delivery:  # pragma: no cover
        """Webhooks cannot update; never called because ``threads`` is False."""
        return Delivery(ok=False, error="webhooks cannot update messages")
