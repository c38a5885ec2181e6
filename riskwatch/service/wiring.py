"""Building the shell's parts from settings: rules, store, API client, delivery routes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from riskwatch.config.settings import Settings
from riskwatch.core.evaluate import CompiledRule, compile_rules
from riskwatch.errors import SettingsError
from riskwatch.notify.plan import Router
from riskwatch.notify.sinks import Sink, SlackWebhookSink, SlackWebSink, TerminalSink
from riskwatch.rulefiles.loader import load_rules
from riskwatch.source.client import TreadClient, make_http_client
from riskwatch.store import Store, open_store


def load_compiled_rules(paths: Sequence[Path]) -> list[CompiledRule]:
    """Load rule files (RulesError on any problem) and compile them."""
    for path in paths:
        if not path.exists():
            raise SettingsError(f"RISKWATCH_RULES: {path} does not exist")
    return compile_rules(load_rules(paths))


def build_router(settings: Settings, *, terminal: bool = False) -> Router:
    """Destinations from the Slack settings; the terminal when Slack is not set (or asked for)."""
    sinks: dict[str, Sink] = {}
    default: list[str] = []
    deadline = settings.deadline.total_seconds()
    router = Router(sinks, default, links=settings.public_url is not None)
    if settings.slack_bot_token is not None and settings.slack_channel:
        token = settings.slack_bot_token.get_secret_value()
        api_url = settings.slack_api_url

        def web(channel: str) -> Sink:
            return SlackWebSink(token, channel, api_url, deadline=deadline)

        destination = f"slack:{settings.slack_channel}"
        sinks[destination] = web(settings.slack_channel)
        default.append(destination)
        router.slack_web = web
        router.web_default_channel = settings.slack_channel
    elif settings.slack_webhook_url is not None:
        sinks["webhook"] = SlackWebhookSink(settings.slack_webhook_url.get_secret_value(),
                                            deadline=deadline)
        default.append("webhook")
    if terminal or not default:
        sinks["terminal"] = TerminalSink()
        default.append("terminal")
    return router


def api_timeout(settings: Settings) -> httpx.Timeout:
    """A request may take one poll interval, between 2 and 10 seconds, so a hung API
    cannot hold the loop much past the next poll."""
    seconds = min(max(settings.poll_interval.total_seconds(), 2.0), 10.0)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def open_client(settings: Settings) -> TreadClient:
    """The API client (requires RISKWATCH_TREAD_TOKEN)."""
    return TreadClient(make_http_client(settings.tread_url, settings.token(),
                                        timeout=api_timeout(settings)),
                       deadline=settings.deadline.total_seconds(),
                       max_bytes=settings.max_response_bytes)


def open_state(settings: Settings) -> Store:
    """The state store named by RISKWATCH_STATE (created if it does not exist)."""
    return open_store(settings.state)


def open_existing_state(settings: Settings) -> Store:
    """The state store the daemon keeps, for the commands that read or edit it.

    They never create one: a new, empty store in the wrong folder would list no alerts
    and hold silences that the daemon never sees.
    """
    if settings.state.startswith("sqlite:///"):
        path = Path(settings.state.removeprefix("sqlite:///"))
        if not path.is_file():
            raise SettingsError(f"RISKWATCH_STATE: no state store at {path.resolve()}; run "
                                "this where `riskwatch run` keeps its store, or point "
                                "RISKWATCH_STATE at it")
    return open_store(settings.state)
