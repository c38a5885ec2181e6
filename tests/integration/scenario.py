"""Building blocks for daemon scenarios: payloads with a chosen margin ratio, a daemon to run."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from riskwatch.config.settings import Settings, load_settings
from riskwatch.service.daemon import Daemon, utcnow
from riskwatch.service.wiring import build_router, load_compiled_rules, open_client, open_state
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread

MARGIN_RULES = """
rules:
  - name: eth-margin
    description: Maintenance margin against margin balance
    scope: position
    metric: maint_margin_ratio
    levels: {warning: 0.5, critical: 0.8}
    repeat: 1h
"""


def cached_with_ratio(ratio: str, account: str = "desk-1") -> dict[str, Any]:
    """A cached payload whose ETH position has maint_margin / margin_balance == ratio."""
    maint = str(round(float(ratio) * 1000, 2))
    return {"balances": [{
        "exchange_name": "Bybit", "account_name": account, "user_id": 1,
        "account_id": "2fd72fdc-e010-400f-886c-2e45fa0104c4", "username": "t",
        "equity": "5000", "equities": [], "transfers": [], "vcefi_enabled": False,
        "timestamp_millis": int(time.time() * 1000),
        "assets": [{
            "symbol": "ETH:PERP-USDT", "amount": "-1", "margin_balance": "1000",
            "unrealized_profit": "0", "notional": "-3000", "wallet_type": "unified",
            "asset_type": "position", "funding_fee": None, "borrowed": None,
            "initial_margin": "300", "maint_margin": maint, "leverage": "10",
            "margin_mode": None,
        }],
    }], "errors": []}


def settings_for(tread: FakeTread, slack: FakeSlack | None, folder: Path, *, bot: bool = False,
                 rules: str = MARGIN_RULES, **extra: Any) -> Settings:
    """Settings pointing at the fakes, with the rules written to ``folder``."""
    rules_path = folder / "rules.yaml"
    rules_path.write_text(rules)
    slack_settings: dict[str, Any] = {}
    if slack is not None and bot:
        slack_settings = {"slack_bot_token": "xoxb-test-secret-bot-token",
                          "slack_channel": "#risk", "slack_api_url": slack.api_url}
    elif slack is not None:
        slack_settings = {"slack_webhook_url": slack.webhook_url}
    values: dict[str, Any] = {"tread_url": tread.url, "tread_token": TOKEN,
                              "poll_interval": "1s", "state": f"sqlite:///{folder}/state.db",
                              "rules": rules_path, "http": "off", **slack_settings, **extra}
    return load_settings(**values)


def run_env(tread: FakeTread, slack: FakeSlack, rules: Path, *, interval: str = "1s",
            state: str | None = None) -> dict[str, str]:
    """The environment of a `riskwatch run` process watching the fakes (webhook delivery)."""
    rules.write_text(MARGIN_RULES)
    return {**os.environ, "RISKWATCH_TREAD_URL": tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
            "RISKWATCH_RULES": str(rules), "RISKWATCH_POLL_INTERVAL": interval,
            "RISKWATCH_STATE": state or f"sqlite:///{rules.parent}/state.db",
            "RISKWATCH_HTTP": "off", "RISKWATCH_SLACK_WEBHOOK_URL": slack.webhook_url}


RUN = [sys.executable, "-m", "riskwatch", "run"]


def make_daemon(settings: Settings, clock: Callable[[], datetime] = utcnow) -> Daemon:
    """A daemon built exactly as `riskwatch run` builds it (on ``clock``, if given)."""
    rules = load_compiled_rules([settings.rules])
    return Daemon(settings, rules, open_state(settings), open_client(settings),
                  build_router(settings), clock=clock)


async def close_daemon(daemon: Daemon) -> None:
    """Release the daemon's client and store."""
    await daemon.client.aclose()
    daemon.store.close()


async def wait_until(predicate: Any, seconds: float) -> bool:
    """Poll ``predicate`` every 20 ms until true or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


class Clock:
    """A clock the test moves by hand; the fake API stamps its data with it, and the fake
    Slack records its calls at its time (seconds since the epoch)."""

    def __init__(self, tread: FakeTread | None = None, slack: FakeSlack | None = None) -> None:
        self.now = datetime.now(UTC)
        if tread is not None:
            tread.stamp_clock = self.timestamp
        if slack is not None:
            slack.clock = self.timestamp

    def timestamp(self) -> float:
        """Now, in seconds since the epoch."""
        return self.now.timestamp()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


def daemon_on(settings: Settings, clock: Clock) -> Daemon:
    """A daemon as `riskwatch run` builds it, on ``clock``."""
    rules = load_compiled_rules([settings.rules])
    return Daemon(settings, rules, open_state(settings), open_client(settings),
                  build_router(settings), clock=clock)


def drive(settings: Settings, clock: Clock,
          script: Callable[[Daemon], Coroutine[Any, Any, None]]) -> Daemon:
    """Build a daemon, run ``script`` on it, and release its client and store."""
    daemon = daemon_on(settings, clock)

    async def go() -> None:
        try:
            await script(daemon)
        finally:
            await daemon.client.aclose()
            daemon.store.close()

    asyncio.run(go())
    return daemon


async def ticks(daemon: Daemon, clock: Clock, count: int, seconds: float | None = None) -> None:
    """``count`` ticks of the loop on ``clock``: a tick (lead, poll, watch the store), then
    ``seconds`` (by default one poll interval) pass, in which the deliverer sends each
    message when it falls due, as it does beside the real loop."""
    step = daemon.settings.poll_interval.total_seconds() if seconds is None else seconds
    for _ in range(count):
        end = clock.now + timedelta(seconds=step)
        await daemon.tick_once()
        while (due := await daemon.deliverer.deliver_due()) is not None:
            if clock.now + timedelta(seconds=due) >= end:
                break
            clock.advance(max(due, 0.001))
        clock.now = end


async def ticks_until(daemon: Daemon, clock: Clock, done: Callable[[], object],
                      most: int = 30) -> bool:
    """Tick until ``done()`` holds, at most ``most`` ticks; whether it came to hold."""
    for _ in range(most):
        if done():
            return True
        await ticks(daemon, clock, 1)
    return bool(done())
