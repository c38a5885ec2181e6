"""Never blind: no fault may silence riskwatch while it says it is fine.

Each test drives a daemon built as `riskwatch run` builds it, against the loopback fakes,
one tick at a time on a fake clock (no waiting on timers), and checks that the healthy
accounts keep alerting, that what is wrong is named, and that /readyz tells the truth.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from riskwatch.config.settings import Settings
from riskwatch.demo.loopback import LoopbackServer, Reply, Request
from riskwatch.service import poll as poll_module
from riskwatch.service import rule_source as rule_source_module
from riskwatch.service.daemon import Daemon
from riskwatch.store.base import Retention
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    Clock,
    cached_with_ratio,
    daemon_on,
    drive,
    settings_for,
)


def _settings(tread: FakeTread, slack: FakeSlack, folder: Path, **extra: Any) -> Settings:
    """Settings for the fakes, polling every 15 s with STALE_AFTER 45 s unless told."""
    return settings_for(tread, slack, folder, **{"poll_interval": "15s",
                                                 "stale_after": "45s", **extra})


async def _tick(daemon: Daemon, clock: Clock, seconds: float = 15) -> None:
    """One tick of the loop, the deliverer's turn, then ``seconds`` pass."""
    await daemon.tick_once()
    await daemon.deliverer.deliver_due()
    clock.advance(seconds)


def _texts(slack: FakeSlack) -> list[str]:
    return [post.body["text"] for post in slack.posts()]


def _sample(daemon: Daemon, name: str, **labels: str) -> float:
    value = daemon.telemetry.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def _two_accounts(bad_margin: str) -> dict[str, Any]:
    """desk-1 at a 90 % margin ratio, and desk-2 whose margin balance is ``bad_margin``."""
    good = cached_with_ratio("0.9")
    bad = cached_with_ratio("0.9", account="desk-2")["balances"][0]
    bad["assets"][0]["margin_balance"] = bad_margin
    good["balances"].append(bad)
    return good


def test_a_number_that_breaks_the_arithmetic_is_one_account_error(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A margin balance that overflows the decimal context in a ratio: an account-error for
    that account alone; the healthy account's alert fires as usual; the poll counts as ok."""
    tread.set_cached(_two_accounts("1E-999999"))
    clock = Clock(tread)

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)
        assert daemon.not_ready() == []

    daemon = drive(_settings(tread, slack, tmp_path), clock, script)
    text = "\n".join(_texts(slack))
    assert "`eth-margin`" in text and "desk-1" in text
    assert "`account-error`" in text and "desk-2" in text and "Overflow" in text
    assert "eth-margin` · desk-2" not in text
    assert _sample(daemon, "riskwatch_polls_total", result="ok") == 1


@pytest.mark.parametrize("where", ["errors", "balances"])
def test_an_entry_nested_thousands_deep_is_that_entrys_account_error(
    where: str, tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """An errors[] entry, or an account's entry, nested 5,000 levels deep: an account-error
    naming that account; the healthy account's alert fires as usual; the poll is ok."""
    clock = Clock(tread)
    deep = "[" * 5000 + "]" * 5000
    healthy = json.dumps(cached_with_ratio("0.9"))
    if where == "errors":
        entry = '{"account_name": "desk-2", "message": ' + deep + "}"
        body = healthy.replace('"errors": []', '"errors": [' + entry + "]")
    else:
        entry = '{"account_name": "desk-2", "exchange_name": "OKX", "assets": ' + deep + "}"
        body = healthy.replace('"balances": [', '"balances": [' + entry + ", ")
    tread.override = Reply(200, body.encode(), {"Content-Type": "application/json"})

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)

    daemon = drive(_settings(tread, slack, tmp_path), clock, script)
    text = "\n".join(_texts(slack))
    assert "`eth-margin`" in text and "desk-1" in text
    assert "`account-error`" in text and "desk-2" in text and "nested too deeply" in text
    assert _sample(daemon, "riskwatch_polls_total", result="ok") == 1


def test_a_500_body_nested_thousands_deep_is_a_failed_poll_that_feeds_source_down(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A 500 whose body nests 5,000 levels: never a crash; a counted failed poll named on
    /readyz, source-down within STALE_AFTER, resolved when the API is back."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    deep = b"[" * 5000 + b"]" * 5000
    reply = Reply(500, b'{"errors": [' + deep + b"]}", {"Content-Type": "application/json"})
    reasons: list[str] = []

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)
        tread.override = reply
        for _ in range(4):
            await _tick(daemon, clock)
        reasons.extend(daemon.not_ready())
        tread.override = None
        await _tick(daemon, clock)

    daemon = drive(_settings(tread, slack, tmp_path), clock, script)
    texts = _texts(slack)
    assert any("FIRING" in t and "`source-down`" in t for t in texts), texts
    assert any("RESOLVED" in t and "`source-down`" in t for t in texts), texts
    assert any("HTTP 500" in r and "nested too deeply" in r for r in reasons), reasons
    assert _sample(daemon, "riskwatch_polls_total", result="error") == 4


def test_an_unexpected_error_anywhere_in_a_poll_is_a_counted_failure(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bug in evaluation: the poll fails, is counted, logged once with its traceback, named
    on /readyz, feeds source-down, and the alerts come back once the bug is gone."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.9"))
    real_decide = getattr(poll_module, "decide")  # noqa: B009 - the name the poll uses
    broken = {"on": True}

    def decide(rules: Any, snapshot: Any, *args: Any, **named: Any) -> Any:
        if snapshot is not None and broken["on"]:
            raise ZeroDivisionError("a bug nobody foresaw")
        return real_decide(rules, snapshot, *args, **named)

    monkeypatch.setattr(poll_module, "decide", decide)
    reasons: list[list[str]] = []

    async def script(daemon: Daemon) -> None:
        for _ in range(4):
            await _tick(daemon, clock)
        reasons.append(daemon.not_ready())
        broken["on"] = False
        await _tick(daemon, clock)
        reasons.append(daemon.not_ready())

    settings = _settings(tread, slack, tmp_path)
    daemon = drive(settings, clock, script)
    assert any("ZeroDivisionError" in reason for reason in reasons[0]), reasons
    assert reasons[1] == []
    texts = _texts(slack)
    assert any("FIRING" in t and "`source-down`" in t for t in texts), texts
    assert any("`eth-margin`" in t for t in texts)
    assert _sample(daemon, "riskwatch_polls_total", result="error") == 4
    logged = capsys.readouterr().out
    assert logged.count("Traceback") == 4 and "a bug nobody foresaw" in logged


def test_a_trickling_api_costs_one_deadline_and_source_down_fires_on_time(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """An API that answers one byte at a time, each inside the read timeout: each poll ends
    at the deadline, and source-down fires within STALE_AFTER plus one deadline."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    slow = Reply(200, json.dumps(cached_with_ratio("0.1")).encode(),
                 {"Content-Type": "application/json"}, trickle=0.05)
    durations: list[float] = []
    reasons: list[str] = []

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock, seconds=1)
        tread.override = slow
        for _ in range(3):
            started = time.monotonic()
            await daemon.tick_once()
            durations.append(time.monotonic() - started)
            await daemon.deliverer.deliver_due()
            clock.advance(1.2)  # the deadline, then the next tick
        reasons.extend(daemon.not_ready())

    settings = settings_for(tread, slack, tmp_path, poll_interval="1s", stale_after="3s",
                            request_deadline="0.5s")
    drive(settings, clock, script)
    assert all(0.4 < seconds < 1.5 for seconds in durations), durations
    assert any("FIRING" in t and "`source-down`" in t for t in _texts(slack))
    assert any("0.5s deadline" in reason for reason in reasons), reasons


def test_an_answer_over_the_size_cap_fails_the_poll_with_size_and_cap(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """An answer larger than RISKWATCH_MAX_RESPONSE_BYTES is refused as it arrives, and the
    failed poll names its size and the cap."""
    clock = Clock(tread)
    huge = {"balances": [], "errors": [], "padding": "x" * 3_000_000}
    tread.set_cached(huge)
    reasons: list[str] = []

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)
        reasons.extend(daemon.not_ready())

    drive(_settings(tread, slack, tmp_path, max_response_bytes="1MiB"), clock, script)
    assert any("3,000,0" in r and "1,048,576 bytes" in r for r in reasons), reasons


def test_the_size_cap_holds_without_a_content_length() -> None:
    """A streamed answer with no Content-Length is cut off as soon as it passes the cap."""
    from riskwatch.errors import TreadTooLarge
    from riskwatch.source.client import TreadClient, make_http_client

    sent = {"chunks": 0}

    async def stream() -> Any:
        for _ in range(1000):
            sent["chunks"] += 1
            yield b"x" * 65536

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())

    async def go() -> None:
        client = TreadClient(make_http_client("http://tread.test", "t",
                                              transport=httpx.MockTransport(handler)),
                             max_bytes=1024 * 1024)
        try:
            with pytest.raises(TreadTooLarge, match="before its end, over the cap of 1,048,576"):
                await client.cached_balances_raw()
        finally:
            await client.aclose()

    asyncio.run(go())
    assert sent["chunks"] <= 18  # stopped at the cap, not after 64 MB


def test_an_older_answer_observes_nothing_and_a_future_one_is_now(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A cache answer older than one already seen, without the firing position, resolves
    nothing and fires nothing again; a timestamp a year ahead does not hide source-down."""
    clock = Clock(tread)
    tread.stamp_now = False
    fresh = cached_with_ratio("0.9")
    fresh["balances"][0]["timestamp_millis"] = int(clock.now.timestamp() * 1000)
    old = cached_with_ratio("0.9")
    old["balances"][0]["timestamp_millis"] = int(clock.now.timestamp() * 1000) - 60_000
    old["balances"][0]["assets"] = []
    future = cached_with_ratio("0.9")
    future["balances"][0]["timestamp_millis"] = int(clock.now.timestamp() * 1000) + 365 * 86400_000

    async def script(daemon: Daemon) -> None:
        tread.set_cached(fresh)
        await _tick(daemon, clock)
        tread.set_cached(old)
        await _tick(daemon, clock)
        fresh["balances"][0]["timestamp_millis"] = int(clock.now.timestamp() * 1000)
        tread.set_cached(fresh)
        await _tick(daemon, clock)
        for _ in range(4):  # stamped a year ahead, poll after poll
            future["balances"][0]["timestamp_millis"] = int(
                clock.now.timestamp() * 1000) + 365 * 86400_000
            tread.set_cached(future)
            await _tick(daemon, clock)
        tread.override = Reply.json({"message": "down"}, 503)
        for _ in range(4):
            await _tick(daemon, clock)

    settings = _settings(tread, slack, tmp_path)
    daemon = drive(settings, clock, script)
    margin = [t for t in _texts(slack) if "`eth-margin`" in t]
    assert len(margin) == 1 and "FIRING" in margin[0], margin
    assert _sample(daemon, "riskwatch_out_of_order_answers_total") == 1
    assert any("FIRING" in t and "`source-down`" in t for t in _texts(slack))


def test_a_watched_or_alerting_account_missing_from_the_answer_is_named(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """An account with a firing alert vanishes: account-missing fires, its alert stays
    firing (no RESOLVED), and both come back right when it returns."""
    clock = Clock(tread)

    async def script(daemon: Daemon) -> None:
        tread.set_cached(cached_with_ratio("0.9"))
        await _tick(daemon, clock)
        tread.set_cached({"balances": [], "errors": []})
        await _tick(daemon, clock)
        await _tick(daemon, clock)
        tread.set_cached(cached_with_ratio("0.9"))
        await _tick(daemon, clock)

    drive(_settings(tread, slack, tmp_path), clock, script)
    texts = _texts(slack)
    assert not any("RESOLVED" in t and "`eth-margin`" in t for t in texts), texts
    missing = [t for t in texts if "`account-missing`" in t]
    assert len(missing) == 2 and "FIRING" in missing[0] and "RESOLVED" in missing[1], texts
    assert "desk-1" in missing[0]


def test_a_watched_account_the_api_never_names_fires_account_missing(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """RISKWATCH_ACCOUNTS with a typo: account-missing names it; the live endpoint gets the
    names comma-joined in one parameter."""
    clock = Clock(tread)
    tread.live = {"desk-1": {"exchange": "Bybit", "assets": []}}
    reasons: list[tuple[str, list[str]]] = []

    async def script(daemon: Daemon) -> None:
        await daemon.tick_once()
        reasons.extend([("ready", daemon.not_ready()), ("warnings", daemon.warnings())])
        await daemon.deliverer.deliver_due()

    drive(_settings(tread, slack, tmp_path, accounts="desk-1,desk-typo", source="live"),
           clock, script)
    texts = _texts(slack)
    assert any("`account-missing`" in t and "desk-typo" in t for t in texts), texts
    assert not any("`account-missing`" in t and "desk-1 " in t for t in texts)
    assert tread.requests[-1].query == [("account_names", "desk-1,desk-typo")]
    assert reasons == [("ready", []), ("warnings",
                        ["1 account(s) missing from the API's answer: desk-typo"])]


def test_a_store_that_cannot_be_written_says_so_and_loses_nothing(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """Writes fail: store-failed goes straight to Slack, /readyz gives the true reason (not
    "standby"), and the alert that fired meanwhile is sent once when writes work again."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    reasons: list[str] = []

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)
        daemon.store._db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        tread.set_cached(cached_with_ratio("0.9"))
        for _ in range(3):
            await _tick(daemon, clock)
        reasons.extend(daemon.not_ready())
        daemon.store._db.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
        for _ in range(2):
            await _tick(daemon, clock)

    drive(_settings(tread, slack, tmp_path), clock, script)
    texts = _texts(slack)
    failed = [t for t in texts if "`store-failed`" in t]
    assert len(failed) == 2 and "FIRING" in failed[0] and "RESOLVED" in failed[1], texts
    assert any(r.startswith("state store failed") for r in reasons), reasons
    assert not any("standby" in r for r in reasons)
    assert len([t for t in texts if "`eth-margin`" in t]) == 1


def test_a_trickling_slack_costs_one_deadline_per_attempt_and_shows_as_stuck(
    tread: FakeTread, tmp_path: Path,
) -> None:
    """Slack that answers one byte at a time: each attempt ends at the deadline, and the
    oldest waiting message's age shows on /metrics and, past the threshold, on /readyz."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.9"))
    slow = FakeSlack()
    slow.failures = [Reply(200, b"ok" * 200, trickle=0.05) for _ in range(10)]
    durations: list[float] = []
    reasons: list[str] = []

    async def script(daemon: Daemon) -> None:
        daemon.health.delivery_stuck_after = timedelta(seconds=20)
        await daemon.tick_once()
        for _ in range(3):
            started = time.monotonic()
            await daemon.deliverer.deliver_due()
            durations.append(time.monotonic() - started)
            clock.advance(15)
            await daemon.tick_once()
        reasons.extend(daemon.not_ready())

    try:
        settings = _settings(tread, slow, tmp_path, request_deadline="0.5s")
        daemon = drive(settings, clock, script)
    finally:
        slow.close()
    assert all(seconds < 1.5 for seconds in durations), durations
    assert _sample(daemon, "riskwatch_outbox_oldest_message_age_seconds") >= 44
    assert any(r.startswith("Slack delivery stuck") for r in reasons), reasons
    metrics = generate_latest(daemon.telemetry.registry).decode()
    assert 'riskwatch_outbox_messages{status="pending"} 1.0' in metrics


class FakeMonitor:
    """A heartbeat receiver (healthchecks.io, Uptime Kuma) on loopback."""

    def __init__(self) -> None:
        self.beats: list[Request] = []
        self.server = LoopbackServer(self._handle)
        self.url = f"{self.server.url}/ping/secret-check-uuid"

    def _handle(self, request: Request) -> Reply:
        self.beats.append(request)
        return Reply(200, b"OK")

    def close(self) -> None:
        """Stop the server."""
        self.server.close()


def test_the_heartbeat_follows_good_polls_whose_messages_reached_slack(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """One beat per good poll once its messages are out; none while the API fails or Slack
    holds the messages back; the URL never appears in the logs."""
    monitor = FakeMonitor()
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.9"))
    counts: list[int] = []

    async def script(daemon: Daemon) -> None:
        assert daemon.heartbeat is not None
        for _ in range(2):
            await _tick(daemon, clock)
            await daemon.heartbeat.wait()
        counts.append(len(monitor.beats))
        tread.override = Reply.json({"message": "down"}, 503)
        for _ in range(2):
            await _tick(daemon, clock)
            await daemon.heartbeat.wait()
        counts.append(len(monitor.beats))
        tread.override = None
        await _tick(daemon, clock)
        await daemon.heartbeat.wait()
        counts.append(len(monitor.beats))
        slack.failures = [Reply(503, b"unavailable") for _ in range(20)]
        tread.set_cached(cached_with_ratio("0.1"))  # a RESOLVED message that cannot go out
        for _ in range(3):
            await _tick(daemon, clock)
            await daemon.heartbeat.wait()
        counts.append(len(monitor.beats))

    try:
        drive(_settings(tread, slack, tmp_path, heartbeat_url=monitor.url), clock, script)
    finally:
        monitor.close()
    assert counts[0] == 1, counts  # the first poll's message went out during the second
    assert counts[1] == 1, counts  # the API failed: no beat
    assert counts[2] == 2, counts  # a good poll again, nothing waiting
    assert counts[3] == 2, counts  # a message waits for Slack: no beat
    status = json.loads(monitor.beats[0].body)
    assert status["status"] == "ok" and monitor.beats[0].method == "POST"
    assert "secret-check-uuid" not in capsys.readouterr().out


def test_any_failure_to_reload_rules_raises_rules_invalid_and_keeps_the_old_rules(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload that fails with an error nobody planned for (here a RecursionError) is
    rules-invalid on /readyz and in Slack, and the old rules go on alerting."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    reasons: list[str] = []

    def broken(paths: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock)
        monkeypatch.setattr(rule_source_module, "load_compiled_rules", broken)
        daemon.request_reload()
        tread.set_cached(cached_with_ratio("0.9"))
        await _tick(daemon, clock)
        reasons.extend(daemon.not_ready())

    drive(_settings(tread, slack, tmp_path), clock, script)
    texts = _texts(slack)
    assert any("FIRING" in t and "`rules-invalid`" in t for t in texts), texts
    assert any("FIRING" in t and "`eth-margin`" in t for t in texts), texts
    assert any("RecursionError" in r or "recursion" in r for r in reasons), reasons


def test_a_standby_that_can_take_over_is_ready_and_says_it_stands_by(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """Two daemons on one state file: the second stands by, is ready (so a rolling update
    can finish), and names its role; the leader names its own."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    settings = _settings(tread, slack, tmp_path)
    seen: list[tuple[str, list[str]]] = []

    async def script(leader: Daemon) -> None:
        await _tick(leader, clock)
        standby = daemon_on(settings, clock)
        try:
            await standby.tick_once()
            seen.append((standby.role(), standby.not_ready()))
            seen.append((leader.role(), leader.not_ready()))
        finally:
            await standby.client.aclose()
            standby.store.close()

    drive(settings, clock, script)
    assert seen == [("standby", []), ("leader", [])]


def test_the_leader_prunes_the_store_once_an_hour(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Store.prune runs at the first poll and then once an hour of the clock, not per poll."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    pruned: list[datetime] = []

    async def script(daemon: Daemon) -> None:
        real = daemon.store.prune
        def prune(now: datetime, retention: Retention | None = None) -> int:
            pruned.append(now)
            assert retention is not None and retention.history_raw == timedelta(hours=48)
            return real(now, retention)

        monkeypatch.setattr(daemon.store, "prune", prune)
        for _ in range(14):  # 14 polls of 5 minutes: an hour and five minutes
            await daemon.tick_once()
            clock.advance(300)

    drive(_settings(tread, slack, tmp_path, poll_interval="5m", stale_after="15m"), clock,
          script)
    assert len(pruned) == 2 and pruned[1] - pruned[0] == timedelta(hours=1)


def test_readyz_names_a_poll_that_hangs_and_data_that_is_old(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """While a poll waits past one interval for a hung API, /readyz says so before the
    deadline ends it; answers that arrive but carry old data are named too."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    seen: list[list[str]] = []

    async def script(daemon: Daemon) -> None:
        await _tick(daemon, clock, seconds=1)
        tread.delay = 2.5
        hung = asyncio.create_task(daemon.tick_once())
        await asyncio.sleep(1.4)
        seen.append(daemon.not_ready())
        await hung
        tread.delay = 0
        tread.stamp_clock = lambda: clock.now.timestamp() - 100  # a cache stuck in the past
        clock.advance(10)
        await daemon.tick_once()
        seen.append(daemon.not_ready())

    settings = settings_for(tread, slack, tmp_path, poll_interval="1s", stale_after="5s",
                            request_deadline="2s")
    drive(settings, clock, script)
    assert any(r.startswith("the current poll has run for 1s") for r in seen[0]), seen
    assert any(r.startswith("the newest data is 11s old") for r in seen[1]), seen
