"""Slack's buttons and the ``/riskwatch`` command, over Socket Mode.

slack-bolt's :class:`AsyncApp` routes the envelopes (a button by its ``action_id``, the
command by its name) and its :class:`AsyncSocketModeHandler` keeps the WebSocket open
and opens a new one when Slack drops it: no public URL is needed. Bolt rather than
slack_sdk's bare Socket Mode client because it already does the routing, the acks and
``respond`` (the envelope's response_url) that would otherwise be written here.

Every click is acknowledged first, then handled: the core decides
(:func:`riskwatch.core.interactions.decide`) and the store records the click and its
effect once (:meth:`Store.record_click`). Any replica may receive a click; it only
writes the store. What Slack shows afterwards (the parent message updated, the silence
told in the thread) goes through the outbox, which only the leader delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from riskwatch.config.settings import Settings
from riskwatch.core.evaluate import CompiledRule
from riskwatch.core.history import FIELDS, Point
from riskwatch.core.interactions import ACTIONS, Click, decide
from riskwatch.core.lifecycle import RANK, Alert, AlertKey, State
from riskwatch.core.silences import Silence
from riskwatch.notify import blocks, render
from riskwatch.store import NewMessage, Store
from riskwatch.store.base import SlackMessage

log = structlog.get_logger("riskwatch.slack")

GROUP_CACHE_SECONDS = 300.0  # a user group's members are asked for again after this
OPEN_RETRY_MAX = 60.0  # seconds between attempts to open Socket Mode, at most
MAX_LINES = 20  # lines of one /riskwatch answer (it stays short and within Slack's limits)
Clock = Callable[[], datetime]


class Operators:
    """Who may act: the user IDs of RISKWATCH_SLACK_OPERATORS, and the members of its
    user groups (``usergroups.users.list``), asked for at most every few minutes."""

    def __init__(self, ids: Sequence[str], members: Callable[[str], Awaitable[list[str]]],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.users = frozenset(found for found in ids if not found.startswith("S"))
        self.groups = tuple(found for found in ids if found.startswith("S"))
        self._members = members
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def current(self) -> frozenset[str]:
        """Every user ID that may act now."""
        found = set(self.users)
        for group in self.groups:
            found |= await self._group(group)
        return frozenset(found)

    async def _group(self, group: str) -> frozenset[str]:
        now = self._monotonic()
        cached = self._cache.get(group)
        if cached is not None and now - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            members = frozenset(await self._members(group))
        except (SlackApiError, OSError, TimeoutError) as error:
            log.warning("cannot read a Slack user group; its members may not act for now",
                        group=group, error=type(error).__name__)
            return cached[1] if cached is not None else frozenset()
        self._cache[group] = (now, members)
        return members


def parse_click(body: Mapping[str, Any]) -> Click | None:
    """The click in a ``block_actions`` payload; None for one riskwatch did not make."""
    try:
        action = body["actions"][0]
        parsed = blocks.parse_button_value(str(action.get("value", "")))
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or body["channel"]["id"])
        if parsed is None or action.get("action_id") not in ACTIONS:
            return None
        user = body["user"]
        return Click(user=str(user["id"]), username=str(user.get("username") or
                                                         user.get("name") or ""),
                     action=str(action["action_id"]), alert_id=parsed[0],
                     firing_since=parsed[1], channel=channel,
                     message_ts=str(container.get("message_ts") or body["message"]["ts"]),
                     action_ts=str(action["action_ts"]))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


class SlackInteractions:
    """The Socket Mode side of the daemon: answers clicks and ``/riskwatch``."""

    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 wake: Callable[[], None] = lambda: None,
                 rules: Callable[[], Sequence[CompiledRule]] = list) -> None:
        if settings.slack_app_token is None or settings.slack_bot_token is None:
            raise ValueError("Socket Mode needs RISKWATCH_SLACK_APP_TOKEN and a bot token")
        self.store = store
        self.clock = clock
        self.rules = rules  # the rules in force, for how near each account is to a level
        self.stale = settings.stale_limit
        self.wake = wake  # the deliverer, when it runs in this process
        self.client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(),
                                     base_url=settings.slack_api_url,
                                     timeout=int(max(1, settings.deadline.total_seconds())))
        self.operators = Operators(settings.slack_operators, self._group_members)
        self.app = AsyncApp(client=self.client, process_before_response=False)
        for action in sorted(ACTIONS):
            self.app.action(action)(self._on_click)
        self.app.command("/riskwatch")(self._on_command)
        self._app_token = settings.slack_app_token.get_secret_value()
        self.handler: AsyncSocketModeHandler | None = None
        self._opening: asyncio.Task[None] | None = None
        self.handled = 0  # clicks that took effect here (for tests and logs)

    async def start(self) -> None:
        """Open the Socket Mode connection in the background, trying again until Slack
        answers (alerts never wait for it); Bolt reconnects by itself after a drop."""
        self._opening = asyncio.create_task(self._open())

    async def _open(self) -> None:
        wait = 1.0
        while True:
            handler = AsyncSocketModeHandler(self.app, self._app_token)
            try:
                await handler.connect_async()  # type: ignore[no-untyped-call]
            except Exception as error:  # Slack down, a bad token: buttons wait, alerts go on
                log.warning("cannot open Slack Socket Mode; trying again",
                            error=type(error).__name__, retry_in=wait)
                with contextlib.suppress(Exception):
                    await handler.client.aiohttp_client_session.close()
                await asyncio.sleep(wait)
                wait = min(wait * 2, OPEN_RETRY_MAX)
                continue
            self.handler = handler
            log.info("Slack buttons and /riskwatch connected (Socket Mode)")
            return

    async def stop(self) -> None:
        """Close the connection and its HTTP session."""
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._opening
            self._opening = None
        handler, self.handler = self.handler, None
        if handler is None:
            return
        with contextlib.suppress(Exception):  # a stop must finish whatever the socket does
            await handler.close_async()  # type: ignore[no-untyped-call]
            await handler.client.aiohttp_client_session.close()

    # ------------------------------------------------------------------ clicks

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any],
                        respond: AsyncRespond) -> None:
        await ack()  # first: Slack wants the ack within 3 s, whatever the store does
        try:
            reply = await self.handle_click(body)
        except Exception:  # a click must never take the connection down
            log.exception("a Slack click failed")
            reply = "riskwatch could not take this click; please try again."
        if reply:
            with contextlib.suppress(Exception):
                await respond(text=reply, response_type="ephemeral", replace_original=False)

    async def handle_click(self, body: Mapping[str, Any]) -> str:
        """Decide and store one click; the ephemeral reply for the clicker (or "")."""
        click = parse_click(body)
        if click is None:
            return "riskwatch does not know this button."
        operators = await self.operators.current()
        landed = self.store.slack_message_at(click.channel, click.message_ts)
        alert = self._alert(click.alert_id, landed)
        now = self.clock()
        outcome = decide(click, alert, operators, self.store.silences(),
                         self.store.acknowledgements(), now)
        messages = []
        if outcome.changes and landed is not None and landed.destination:
            messages.append(NewMessage(uuid.uuid4().hex, landed.destination,
                                       {"update": landed.id}))
        took = self.store.record_click(click, outcome, alert.key if alert else None, now,
                                       messages)
        log.info("slack click", user=click.user, action=click.action,
                 outcome=outcome.verdict.value, taken=took,
                 rule=alert.key.rule if alert else None)
        if not took:
            return ""  # a redelivery: the first delivery answered
        self.handled += 1
        if messages:
            self.wake()
        return outcome.reply

    def _alert(self, alert_id: str, landed: SlackMessage | None) -> Alert | None:
        """The alert a button names: among the keys of its message, else among all."""
        keys: Sequence[AlertKey] = landed.keys if landed is not None else ()
        found = next((key for key in keys if blocks.alert_id(key) == alert_id), None)
        if found is None:
            found = next((key for key in self.store.load_alerts()
                          if blocks.alert_id(key) == alert_id), None)
        return self.store.alert(found) if found is not None else None

    async def _group_members(self, group: str) -> list[str]:
        answer = await self.client.usergroups_users_list(usergroup=group)
        return [str(user) for user in answer.get("users") or []]

    # ------------------------------------------------------------------ /riskwatch

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        asked = str(command.get("text") or "").strip().lower()
        try:
            text = self.answer(asked)
        except Exception:
            log.exception("/riskwatch failed")
            text = "riskwatch could not read its state store; try again shortly."
        await ack(response_type="ephemeral", text=text)

    def answer(self, asked: str) -> str:
        """The ephemeral answer to ``/riskwatch <asked>``."""
        now = self.clock()
        if asked == "status":
            alerts = self.store.load_alerts()
            near = nearest(self.store.latest_points(now - self.stale), self.rules(), alerts)
            return status_text(alerts, now, near)
        if asked == "silences":
            return silences_text(self.store.silences(), now)
        return ("`/riskwatch status`: the firing alerts and the alerts nearest their "
                "levels · `/riskwatch silences`: the silences in force")


@dataclass(frozen=True)
class Near:
    """An account not alerting on a rule, and how close it stands to the rule's lowest
    level, as the share of the level still between them (0: at the level)."""

    headroom: Decimal
    account: str
    rule: str
    metric: str
    value: Decimal
    level: Decimal
    when: str


def nearest(points: Mapping[str, Point], rules: Sequence[CompiledRule],
            alerts: Mapping[AlertKey, Alert], most: int = 5) -> list[Near]:
    """The accounts nearest the lowest level of an account rule they do not alert on,
    from each account's newest recorded figures (the metrics the history keeps)."""
    near: list[Near] = []
    for compiled in rules:
        rule = compiled.rule
        if (rule.scope != "account" or rule.metric not in FIELDS or rule.change is not None
                or not rule.levels.ordered()):
            continue
        level = rule.levels.ordered()[0][1]
        for account, point in points.items():
            value = getattr(point, rule.metric)
            alert = alerts.get(AlertKey(rule.name, account, ""))
            if value is None or level == 0 or (alert is not None and alert.active):
                continue
            gap = (level - value) if rule.when == "above" else (value - level)
            if gap >= 0:
                near.append(Near(gap / abs(level), account, rule.name, rule.metric, value,
                                 level, rule.when))
    return sorted(near, key=lambda n: (n.headroom, n.account, n.rule))[:most]


def status_text(alerts: Mapping[AlertKey, Alert], now: datetime,
                near: Sequence[Near] = ()) -> str:
    """The firing alerts, most severe first; the pending ones (past a level, not yet
    firing for as long as their rule asks); and the accounts nearest their levels."""
    firing = sorted((a for a in alerts.values() if a.state is State.FIRING), key=_urgency)
    pending = sorted((a for a in alerts.values() if a.state is State.PENDING), key=_urgency)
    lines = [f"*{len(firing)} firing*" + (":" if firing else ".")]
    lines += [_status_line(alert, now) for alert in firing[:MAX_LINES]]
    if len(firing) > MAX_LINES:
        lines.append(f"… and {len(firing) - MAX_LINES} more; see `riskwatch alerts`")
    if pending:
        lines.append(f"*{len(pending)} pending* (past a level, not firing yet):")
        lines += [_status_line(alert, now) for alert in pending[:MAX_LINES // 2]]
    if near:
        lines.append("*Nearest their levels:*")
        lines += [_near_line(item) for item in near]
    return "\n".join(lines)


def _near_line(item: Near) -> str:
    sign = "≥" if item.when == "above" else "≤"
    return (f"• {render.slack_code(item.account, 100)} {render.slack_code(item.rule, 100)}: "
            f"{item.metric} {render.format_value(item.metric, item.value)} (lowest level "
            f"{sign} {render.format_value(item.metric, item.level)}; "
            f"{(item.headroom * 100).quantize(Decimal('0.1'))}% of the way left)")


def silences_text(silences: Sequence[Silence], now: datetime) -> str:
    """The silences in force: what they mute, who made them, until when, why."""
    active = [silence for silence in silences if silence.active(now)]
    if not active:
        return "No silence is in force."
    lines = [f"*{len(active)} silences in force:*"]
    for silence in active[:MAX_LINES]:
        scope = " · ".join(render.slack_code(part, 100) for part in
                           (silence.rule, silence.account, silence.symbol) if part)
        lines.append(f"• {render.slack_code(silence.id, 60)} {scope} by "
                     f"{render.who(silence.created_by)} until "
                     f"{render.slack_time(silence.ends_at)}: "
                     f"{render.slack_code(silence.reason, 200)}")
    if len(active) > MAX_LINES:
        lines.append(f"… and {len(active) - MAX_LINES} more; see `riskwatch silence list`")
    return "\n".join(lines)


def _urgency(alert: Alert) -> tuple[int, AlertKey]:
    return -RANK.get(alert.severity, 0), alert.key


def _status_line(alert: Alert, now: datetime) -> str:
    value = (render.format_value(alert.metric, alert.value)
             if alert.value is not None and alert.metric not in render.NO_VALUE_METRICS else "")
    level = render.comparison(alert)
    where = " · ".join(render.slack_code(part, 100)
                       for part in (alert.key.account, alert.key.symbol) if part)
    facts = ", ".join(fact for fact in (value and f"{alert.metric} {value}", level,
                                        render.duration_line(alert, now)) if fact)
    acked = " (acknowledged)" if alert.acked_by else ""
    return (f"• *{alert.severity.upper()}* {render.slack_code(alert.key.rule, 100)} "
            f"{where} {facts}{acked}").rstrip()

