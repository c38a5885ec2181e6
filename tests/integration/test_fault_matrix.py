"""The fault matrix: each API, Slack and store fault against a daemon holding a firing alert.

For every fault it records whether the daemon stayed up, and whether any alert was lost,
duplicated or falsely resolved (docs/RELIABILITY.md lists the results). The daemon runs
tick by tick on a fake clock, one poll interval a tick; a kill -9 in the middle of a poll
is a real process (``e2e``).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from riskwatch.demo.loopback import Reply
from riskwatch.notify.plan import Router
from riskwatch.notify.sinks import SlackWebhookSink
from riskwatch.service.daemon import Daemon
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    RUN,
    Clock,
    cached_with_ratio,
    drive,
    run_env,
    settings_for,
    ticks,
    ticks_until,
)

Fault = Callable[[FakeTread, FakeSlack, Daemon], Callable[[], None]]


def _api(reply: Reply | None = None, delay: float = 0.0, payload: Any = None) -> Fault:
    def apply(tread: FakeTread, _slack: FakeSlack, _daemon: Daemon) -> Callable[[], None]:
        tread.override, tread.delay = reply, delay
        if payload is not None:
            tread.set_cached(payload)

        def undo() -> None:
            tread.override, tread.delay = None, 0.0
            tread.set_cached(cached_with_ratio("0.9"))
        return undo
    return apply


def _truncated() -> Reply:
    body = json.dumps(cached_with_ratio("0.9")).encode()
    return Reply(200, body[: len(body) // 2], {"Content-Type": "application/json"})


API_FAULTS: dict[str, Fault] = {
    "500": _api(Reply.json({"message": "Something went wrong..."}, 500)),
    "502 html": _api(Reply(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})),
    "401": _api(Reply.json({"message": "Invalid credentials"}, 401)),
    "429": _api(Reply.json({"message": "slow down"}, 429, {"Retry-After": "5"})),
    "timeout": _api(delay=2.5),
    "reset": _api(Reply(status=0)),
    "html 200": _api(Reply(200, b"<html>login</html>", {"Content-Type": "text/html"})),
    "truncated body": _api(_truncated()),
    "errors[] entry": _api(payload={**cached_with_ratio("0.9"),
                                    "errors": [{"account_name": "desk-1", "message": "boom"}],
                                    "balances": []}),
    "account vanishes and returns": _api(payload={"balances": [], "errors": []}),
    "malformed row": _api(payload=json.loads(json.dumps(cached_with_ratio("0.9")).replace(
        '"maint_margin": "900.0"', '"maint_margin": "lots"'))),
}
EXPECTED_BUILTIN = {"401": "auth-failed", "errors[] entry": "account-error",
                    "malformed row": "account-error"}




def _margin_texts(slack: FakeSlack) -> list[str]:
    return [p.body["text"] for p in slack.posts() if "eth-margin" in p.body["text"]]


@pytest.mark.parametrize("name", list(API_FAULTS))
def test_api_fault_keeps_the_daemon_up_and_every_alert_intact(
    name: str, tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """No crash, no lost, duplicated or falsely resolved alert; built-ins where due."""
    tread.set_cached(cached_with_ratio("0.9"))
    clock = Clock(tread)
    settings = settings_for(tread, slack, tmp_path)
    polls: list[int] = []

    async def script(daemon: Daemon) -> None:
        assert await ticks_until(daemon, clock, lambda: len(slack.posts()) >= 1)
        undo = API_FAULTS[name](tread, slack, daemon)
        await ticks(daemon, clock, 2)
        polls.append(daemon.polls)
        undo()
        await ticks(daemon, clock, 2)
        polls.append(daemon.polls)

    drive(settings, clock, script)
    assert polls[1] > polls[0]  # still polling after the fault
    margin = _margin_texts(slack)
    assert len(margin) == 1 and "FIRING · CRITICAL" in margin[0]  # not lost, not repeated
    assert not any("RESOLVED" in t for t in margin)  # not falsely resolved
    if name in EXPECTED_BUILTIN:
        builtin = [p.body["text"] for p in slack.posts()
                   if f"`{EXPECTED_BUILTIN[name]}`" in p.body["text"]]
        assert builtin and "FIRING" in builtin[0]


SLACK_FAULTS: dict[str, Callable[[FakeSlack], None]] = {
    "429 Retry-After": lambda s: s.failures.append(Reply(429, b"rate_limited",
                                                         {"Retry-After": "1"})),
    "5xx": lambda s: s.failures.extend([Reply(500, b"oops"), Reply(503, b"down")]),
    "timeout": lambda s: setattr(s, "delay", 1.5),
}


@pytest.mark.parametrize("name", list(SLACK_FAULTS))
def test_slack_fault_delays_but_never_loses_or_repeats(
    name: str, tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """The firing and the resolution each arrive exactly once despite the fault."""
    tread.set_cached(cached_with_ratio("0.9"))
    clock = Clock(tread)
    SLACK_FAULTS[name](slack)

    async def script(daemon: Daemon) -> None:
        daemon.router = Router({"webhook": SlackWebhookSink(slack.webhook_url, timeout=1)},
                               ["webhook"])
        daemon.deliverer.router = daemon.router
        await ticks(daemon, clock, 2)
        slack.delay = 0
        tread.set_cached(cached_with_ratio("0.1"))
        await ticks_until(daemon, clock, lambda: len(_margin_texts(slack)) >= 2)
        await ticks(daemon, clock, 2)

    drive(settings_for(tread, slack, tmp_path), clock, script)
    margin = _margin_texts(slack)
    assert len(margin) == 2, margin
    assert "FIRING" in margin[0] and "RESOLVED" in margin[1]


def test_invalid_auth_is_kept_and_the_daemon_stays_up(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A permanent refusal: the message is kept as failed; polling goes on."""
    tread.set_cached(cached_with_ratio("0.9"))
    slack.failures.append(Reply(403, b"invalid_token"))
    clock = Clock(tread)

    async def script(daemon: Daemon) -> None:
        await ticks(daemon, clock, 3)

    assert drive(settings_for(tread, slack, tmp_path), clock, script).polls == 3
    from riskwatch.store import SqliteStore

    [failed] = SqliteStore(tmp_path / "state.db").outbox("failed")
    assert failed.last_error == "invalid_token"


@pytest.mark.parametrize("fault", ["locked", "read-only"])
def test_store_fault_loses_nothing(
    fault: str, tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A locked or read-only state store: the daemon stays up, and the alert that fired
    meanwhile is sent once the store works again."""
    tread.set_cached(cached_with_ratio("0.1"))
    clock = Clock(tread)
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)

    async def script(daemon: Daemon) -> None:
        await ticks(daemon, clock, 1)
        if fault == "locked":
            blocker.execute("BEGIN EXCLUSIVE")
        else:
            daemon.store._db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        tread.set_cached(cached_with_ratio("0.9"))
        await ticks(daemon, clock, 2)  # a locked store costs its 2 s busy timeout a tick
        if fault == "locked":
            blocker.execute("ROLLBACK")
        else:
            daemon.store._db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
        assert await ticks_until(daemon, clock, lambda: len(slack.posts()) >= 1, most=6)
        await ticks(daemon, clock, 2)

    drive(settings_for(tread, slack, tmp_path), clock, script)
    blocker.close()
    margin = _margin_texts(slack)
    assert len(margin) == 1 and "FIRING · CRITICAL" in margin[0]


@pytest.mark.e2e
def test_sigkill_in_the_middle_of_a_poll_repeats_nothing(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """Killed -9 while waiting for a slow API answer: the restarted daemon sends nothing
    already sent, and the alert keeps firing."""
    tread.set_cached(cached_with_ratio("0.9"))
    env = run_env(tread, slack, tmp_path / "rules.yaml")
    first = subprocess.Popen(RUN, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not slack.posts() and time.monotonic() < deadline:
        time.sleep(0.05)
    tread.delay = 1.5
    seen = len(tread.requests)
    while len(tread.requests) == seen and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # in the middle of that request
    first.wait(timeout=5)
    tread.delay = 0
    second = subprocess.Popen(RUN, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    restarted = len(tread.requests)
    deadline = time.monotonic() + 20  # a loaded machine may take seconds to start it
    while len(tread.requests) < restarted + 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # three polls of the new process: its handlers are in place
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=10)
    assert second.returncode == 0
    margin = _margin_texts(slack)
    assert len(margin) == 1 and "FIRING · CRITICAL" in margin[0]
