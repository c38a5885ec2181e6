"""Where messages go: Slack through the Web API or an incoming webhook, or the terminal.

A sink sends one rendered message and says how it went, including whether a failure is
worth retrying (429, 5xx, network) or permanent (``invalid_auth``, ``channel_not_found``),
as Alertmanager's notifiers do.

Every post and update asks Slack to link nothing by name (``link_names: false``,
``parse: none``): the text's own escaping (:mod:`riskwatch.notify.text`) is what makes
API strings inert, and Slack is not asked to find mentions in them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

SLACK_TIMEOUT_SECONDS = 10
PERMANENT_WEBHOOK_ERRORS = frozenset({"invalid_payload", "no_service", "channel_not_found",
                                      "channel_is_archived", "action_prohibited",
                                      "no_active_hooks", "invalid_token"})
UPDATE_REFUSED = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


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

    def post(self, text: str, thread_ts: str | None = None) -> Delivery:
        """Send one message (as a reply in ``thread_ts`` where supported)."""

    def update(self, channel: str, ts: str, text: str) -> Delivery:
        """Rewrite an earlier message in place."""


class TerminalSink:
    """Prints alerts to standard output (the channel when Slack is not configured)."""

    markup = "plain"
    threads = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def post(self, text: str, thread_ts: str | None = None) -> Delivery:
        """Print the message."""
        stream = self.stream or sys.stdout
        print(text, file=stream, flush=True)
        return Delivery(ok=True)

    def update(self, channel: str, ts: str, text: str) -> Delivery:  # pragma: no cover
        """The terminal cannot rewrite; never called because ``threads`` is False."""
        return Delivery(ok=True)


def _retry_after(headers: object) -> float | None:
    value = None
    if isinstance(headers, dict):
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    elif headers is not None:
        value = getattr(headers, "get", lambda _k: None)("Retry-After")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(float(str(value)), 0.0) if value is not None else None
    except ValueError:
        return None


def _network_failure(error: Exception) -> Delivery:
    return Delivery(ok=False, retryable=True, error=f"network: {type(error).__name__}")


class SlackWebSink:
    """``chat.postMessage`` and ``chat.update`` with a bot token."""

    markup = "slack"
    threads = True

    def __init__(self, token: str, channel: str, base_url: str) -> None:
        self.channel = channel
        self.client = WebClient(token=token, base_url=base_url, timeout=SLACK_TIMEOUT_SECONDS,
                                retry_handlers=[])

    def post(self, text: str, thread_ts: str | None = None) -> Delivery:
        """Post to the channel, or into a thread."""
        try:
            response = self.client.chat_postMessage(
                channel=self.channel, text=text, thread_ts=thread_ts, unfurl_links=False,
                unfurl_media=False, mrkdwn=True, link_names=False, parse="none",
            )
        except SlackApiError as error:
            return _api_failure(error)
        except Exception as error:
            return _network_failure(error)
        return Delivery(ok=True, channel=str(response.get("channel") or self.channel),
                        ts=str(response.get("ts")) if response.get("ts") else None)

    def update(self, channel: str, ts: str, text: str) -> Delivery:
        """Rewrite a message the bot posted earlier."""
        try:
            self.client.chat_update(channel=channel, ts=ts, text=text, link_names=False,
                                    parse="none")
        except SlackApiError as error:
            return _api_failure(error)
        except Exception as error:
            return _network_failure(error)
        return Delivery(ok=True, channel=channel, ts=ts)


def _api_failure(error: SlackApiError) -> Delivery:
    response = error.response
    status = response.status_code
    code = response.get("error") if isinstance(response.data, dict) else None
    retryable = status == 429 or status >= 500 or code in {"ratelimited", "internal_error",
                                                            "fatal_error", "service_unavailable"}
    detail = code or f"HTTP {status}"
    return Delivery(ok=False, retryable=retryable, error=str(detail),
                    retry_after=_retry_after(response.headers))


class SlackWebhookSink:
    """An incoming webhook (no threads, no updates)."""

    markup = "slack"
    threads = False

    def __init__(self, url: str, timeout: int = SLACK_TIMEOUT_SECONDS) -> None:
        self.client = WebhookClient(url, timeout=timeout, retry_handlers=[])

    def post(self, text: str, thread_ts: str | None = None) -> Delivery:
        """Post through the webhook."""
        try:
            response = self.client.send_dict({"text": text, "unfurl_links": False,
                                              "unfurl_media": False, "link_names": False,
                                              "parse": "none"})
        except Exception as error:
            return _network_failure(error)
        if response.status_code == 200:
            return Delivery(ok=True)
        body = (response.body or "").strip()[:100]
        retryable = response.status_code == 429 or response.status_code >= 500
        retryable = retryable and body not in PERMANENT_WEBHOOK_ERRORS
        return Delivery(ok=False, retryable=retryable,
                        error=body or f"HTTP {response.status_code}",
                        retry_after=_retry_after(response.headers))

    def update(self, channel: str, ts: str, text: str) -> Delivery:  # pragma: no cover
        """Webhooks cannot update; never called because ``threads`` is False."""
        return Delivery(ok=False, error="webhooks cannot update messages")
