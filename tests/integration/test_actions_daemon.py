"""Leverage actions through the daemon against a loopback fake Tread.fi and Slack (SPEC §6).

The daemon runs poll by poll on a fake clock; a kill -9 during a call is a real process
(``e2e``)."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from riskwatch.config import logs
from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import AlertKey
from riskwatch.core.silences import Silence
from riskwatch.demo.loopback import Reply, Request
from riskwatch.service.daemon import Daemon, utcnow
from riskwatch.store import SqliteStore
from tests.helpers import T0
from tests.integration.command import riskwatch
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    RUN,
    Clock,
    close_daemon,
    drive,
    make_daemon,
    run_env,
    settings_for,
    ticks,
)

ACCOUNT_ID = "2fd72fdc-e010-400f-886c-2e45fa0104c4"
LEVER_RULES = """
rules:
  - name: lev-cap
    scope: position
    metric: leverage
    levels: {warning: 10, critical: 20}
    action: {set_leverage: 5, at: critical}
"""


def _cached(leverages: dict[str, str], account: str = "desk-1") -> dict[str, Any]:
    assets = [{"symbol": symbol, "amount": "1", "margin_balance": "1000",
               "unrealized_profit": "0", "notional": "100", "wallet_type": "unified",
               "asset_type": "position", "funding_fee": None, "borrowed": None,
               "initial_margin": "5", "maint_margin": "1", "leverage": lev, "margin_mode": None}
              for symbol, lev in leverages.items()]
    return {"balances": [{"exchange_name": "Bybit", "account_name": account, "user_id": 1,
                          "account_id": ACCOUNT_ID, "username": "t", "equity": "1000",
                          "equities": [], "transfers": [], "vcefi_enabled": False,
                          "timestamp_millis": 0, "assets": assets}], "errors": []}


def _live(leverages: dict[str, str]) -> dict[str, Any]:
    return {"desk-1": {"exchange": "Bybit", "assets": [
        {"symbol": symbol, "size": 1, "notional": 100, "market_type": "perp",
         "asset_type": "position", "unrealized_profit": 0, "initial_margin": 5,
         "maint_margin": 1, "margin_balance": 1000, "leverage": float(lev),
         "notional_pct_total": 0.5} for symbol, lev in leverages.items()]}}


def _run(tread: FakeTread, slack: FakeSlack, folder: Path, polls: int, **extra: Any) -> None:
    """``polls`` ticks, one poll interval apart on a fake clock, of a daemon with
    LEVER_RULES (or ``rules=``) and the given settings."""
    clock = Clock(tread)
    settings = settings_for(tread, slack, folder, **{"rules": LEVER_RULES, **extra})

    async def script(daemon: Daemon) -> None:
        await ticks(daemon, clock, polls)

    drive(settings, clock, script)


def _daemon(tread: FakeTread, slack: FakeSlack, tmp_path: Path,
            clock: Callable[[], datetime] = utcnow, **extra: Any) -> Daemon:
    return make_daemon(settings_for(tread, slack, tmp_path, rules=LEVER_RULES, **extra), clock)


class _Steps:
    """A clock that moves only when told: 10 ms a poll, one second a Slack post."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_dry_run_says_what_it_would_do_and_calls_nothing(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """The default dry-run: a Slack line and a log line, no API call."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    stream = io.StringIO()
    logs.configure("info", "json", [], stream=stream)
    try:
        _run(tread, slack, tmp_path, 3)
    finally:
        structlog.reset_defaults()
    assert tread.leverage_calls == []
    [post] = slack.posts()
    assert "would lower SOL:PERP-USDT on desk-1 from 25x to 5x" in post.body["text"]
    assert "would lower SOL:PERP-USDT on desk-1 from 25x to 5x" in stream.getvalue()


def test_enforce_calls_once_per_firing_with_the_exact_body(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """enforce: one POST per firing, body as SPEC says, outcome in the Slack message."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    _run(tread, slack, tmp_path, 4, actions="enforce")
    assert tread.leverage_calls == [
        {"leverage": "5", "pair": "SOL:PERP-USDT", "account_ids": [ACCOUNT_ID]}]
    post = slack.posts()[0]  # later: "still 25x", as this fake never changes the leverage
    assert "lowered SOL:PERP-USDT on desk-1 from 25x to 5x" in post.body["text"]


def test_enforce_on_live_source_finds_the_account_id_by_name(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """With the live source, the account id comes from GET /api/accounts/."""
    tread.live = _live({"SOL:PERP-USDT": "25"})
    tread.accounts = [{"id": "acc-uuid-live", "name": "desk-1", "exchange": "Bybit",
                       "api_key": "secret-exchange-key"}]
    _run(tread, slack, tmp_path, 3, actions="enforce", source="live")
    assert tread.leverage_calls == [
        {"leverage": "5", "pair": "SOL:PERP-USDT", "account_ids": ["acc-uuid-live"]}]
    assert "secret-exchange-key" not in json.dumps([c.body for c in slack.attempts])
    audit = SqliteStore(tmp_path / "state.db").actions()
    assert audit and "secret-exchange-key" not in repr(audit)


def test_never_raises_leverage(tread: FakeTread, slack: FakeSlack, tmp_path: Path) -> None:
    """A position already at or below the target is skipped, with the reason in the audit."""
    rules = LEVER_RULES.replace("set_leverage: 5", "set_leverage: 30")
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    _run(tread, slack, tmp_path, 3, rules=rules, actions="enforce")
    assert tread.leverage_calls == []
    store = SqliteStore(tmp_path / "state.db")
    [decision] = store.actions()
    assert decision.outcome == "skipped" and "not below the current 25x" in decision.detail


def test_422_fails_without_retry_and_5xx_retries_three_times(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A 422 is a failed action with the API's message; 5xx is retried at most three times."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25", "ETH:PERP-USDT": "30"}))
    tread.leverage_replies = [Reply.json({"message": "Failed to set leverage"}, 422)] + [
        Reply.json({"message": "Something went wrong..."}, 500)] * 4
    _run(tread, slack, tmp_path, 6, actions="enforce")
    assert len(tread.leverage_calls) == 5  # one 422, then 1 + 3 retries of 500
    [post] = slack.posts()
    assert "Failed to set leverage" in post.body["text"]
    store = SqliteStore(tmp_path / "state.db")
    assert [d.outcome for d in store.actions()] == ["failed", "failed"]


def test_hourly_cap_stops_actions_and_raises_one_critical_alert(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """With a cap of 2, the third position is skipped and action-limit fires once."""
    tread.set_cached(_cached({"A:PERP-USDT": "25", "B:PERP-USDT": "25", "C:PERP-USDT": "25"}))
    _run(tread, slack, tmp_path, 4, actions="enforce", max_actions_per_hour=2)
    assert len(tread.leverage_calls) == 2
    texts = "\n".join(p.body["text"] for p in slack.posts())
    assert texts.count("`action-limit`") == 1 and "FIRING · CRITICAL" in texts
    store = SqliteStore(tmp_path / "state.db")
    assert [d.outcome for d in store.actions()] == ["acted", "acted", "skipped"]


def test_silenced_or_off_never_acts(tread: FakeTread, slack: FakeSlack, tmp_path: Path) -> None:
    """A silenced alert never acts; RISKWATCH_ACTIONS=off never acts."""
    from datetime import UTC, datetime, timedelta

    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    store = SqliteStore(tmp_path / "state.db")
    now = datetime.now(UTC)
    store.add_silence(Silence("s1", "lev-*", None, None, now, now + timedelta(hours=1), "x",
                              now))
    store.close()
    _run(tread, slack, tmp_path, 3, actions="enforce")
    off_dir = tmp_path / "off"
    off_dir.mkdir()
    _run(tread, slack, off_dir, 3, actions="off")
    assert tread.leverage_calls == []
    reasons = [d.detail for d in SqliteStore(tmp_path / "state.db").actions()]
    reasons += [d.detail for d in SqliteStore(off_dir / "state.db").actions()]
    assert reasons == ["the alert is silenced", "actions are off (RISKWATCH_ACTIONS=off)"]


def test_actions_command_lists_every_decision(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """`riskwatch actions --format json` lists time, account, exchange, pair, leverages,
    mode, outcome and the API's answer."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    _run(tread, slack, tmp_path, 3, actions="enforce")
    result = riskwatch("actions", "--format", "json",
                       env={"RISKWATCH_STATE": f"sqlite:///{tmp_path}/state.db"})
    [row] = json.loads(result.stdout)
    assert {k: row[k] for k in ("account", "exchange", "pair", "from_leverage", "to_leverage",
                                "mode", "outcome", "answer")} == {
        "account": "desk-1", "exchange": "Bybit", "pair": "SOL:PERP-USDT",
        "from_leverage": "25", "to_leverage": "5", "mode": "enforce", "outcome": "acted",
        "answer": "Leverage changed successfully."}
    assert row["time"] > T0.isoformat()
    table = riskwatch("actions", env={"RISKWATCH_STATE": f"sqlite:///{tmp_path}/state.db"})
    assert "SOL:PERP-USDT" in table.stdout and "acted" in table.stdout



def _nested(levels: int) -> Reply:
    """A 200 whose JSON body nests ``levels`` lists: valid JSON no recursive reader can take."""
    return Reply(200, b"[" * levels + b"]" * levels, {"Content-Type": "application/json"})


class _Witness(FakeTread):
    """A fake Tread.fi that reads the audit log as each set_leverage call arrives, and can
    hold its answer for ``hold`` seconds (a call in flight)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.hold = 0.0
        self.audit_at_call: list[list[Decision]] = []
        super().__init__()

    def _answer(self, request: Request) -> Reply:
        if request.path != "/api/set_leverage/":
            return super()._answer(request)
        store = SqliteStore(self.state)
        try:
            self.audit_at_call.append(store.actions())
        finally:
            store.close()
        answer = super()._answer(request)
        time.sleep(self.hold)
        return answer


def _polls(daemon: Daemon, count: int,
           after_first: Callable[[], None] | None = None) -> None:
    """Run ``count`` polls on the daemon's :class:`_Steps` clock, then deliver every message
    (the clock then moves by Slack's one second between posts)."""
    clock = daemon.clock
    assert isinstance(clock, _Steps)

    async def run() -> None:
        for index in range(count):
            await daemon.poll_once()
            if index == 0 and after_first is not None:
                after_first()
            clock.now += timedelta(seconds=0.01)
        while daemon.store.outbox():
            await daemon.deliverer.deliver_due()
            clock.now += timedelta(seconds=1)
        await close_daemon(daemon)

    asyncio.run(run())


@pytest.mark.parametrize("polls", [12, 100])
def test_an_unreadable_answer_is_one_call_one_audit_row_and_announced(
    slack: FakeSlack, tmp_path: Path, polls: int,
) -> None:
    """A 200 nesting 5,000 levels: over 12 (and 100) polls one call, whose audit row was
    written before it (calling) and then given its outcome (unknown: the call may have
    worked, its answer cannot say); the FIRING message shows it, and nothing is retried."""
    tread = _Witness(tmp_path / "state.db")
    try:
        tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
        tread.leverage_replies = [_nested(5000)] * polls
        _polls(_daemon(tread, slack, tmp_path, _Steps(), actions="enforce"), polls)
    finally:
        tread.close()
    assert len(tread.leverage_calls) == 1
    [[intent]] = tread.audit_at_call
    assert intent.outcome == "calling" and intent.audit_id
    [decision] = SqliteStore(tmp_path / "state.db").actions()
    assert decision.audit_id == intent.audit_id
    assert decision.outcome == "unknown" and "nested too deeply" in decision.detail
    [post] = slack.posts()
    assert "FIRING · CRITICAL" in post.body["text"]
    assert "outcome unknown, not retried" in post.body["text"]


def test_a_call_the_next_data_does_not_show_is_reported_once(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """set_leverage answered OK, yet newer data still shows 25x: one notice says so, and
    nothing is called again in that firing."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    _polls(_daemon(tread, slack, tmp_path, _Steps(), actions="enforce"), 6)
    assert len(tread.leverage_calls) == 1
    texts = [post.body["text"] for post in slack.posts()]
    assert len(texts) == 2 and "lowered SOL" in texts[0] and "still 25x" not in texts[0]
    assert "set_leverage answered OK but leverage is still 25x" in texts[1]
    stored = SqliteStore(tmp_path / "state.db").alert(
        AlertKey("lev-cap", "desk-1", "SOL:PERP-USDT"))
    assert stored is not None and stored.verify_after is None
    assert stored.action.endswith("still 25x")


def test_with_the_web_api_the_unchanged_leverage_is_told_in_the_alerts_thread(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """With a bot token, "answered OK but leverage is still 25x" is a reply in the thread
    of the FIRING message, and the FIRING message is updated in place to show it."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    _polls(_daemon(tread, slack, tmp_path, _Steps(), actions="enforce", bot=True), 6)
    firing, check = slack.posts()
    assert "thread_ts" not in firing.body or not firing.body["thread_ts"]
    assert check.body.get("thread_ts") and "still 25x" in check.body["text"]
    updates = [call for call in slack.calls if call.method == "chat.update"]
    assert updates and "still 25x" in updates[-1].body["text"]


def test_a_call_the_next_data_confirms_adds_nothing(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """When newer data shows the lower leverage, no "still" notice is sent."""
    tread.set_cached(_cached({"SOL:PERP-USDT": "25", "ETH:PERP-USDT": "25"}))
    _polls(_daemon(tread, slack, tmp_path, _Steps(), actions="enforce"), 5, after_first=lambda: (
        tread.set_cached(_cached({"SOL:PERP-USDT": "5", "ETH:PERP-USDT": "25"}))))
    texts = "\n".join(post.body["text"] for post in slack.posts())
    assert len(tread.leverage_calls) == 2
    assert texts.count("set_leverage answered OK but leverage is still 25x") == 1  # ETH only
    assert "RESOLVED" in texts  # SOL at 5x is below every level
    stored = SqliteStore(tmp_path / "state.db").load_alerts()
    assert all(alert.verify_after is None for alert in stored.values())


@pytest.mark.e2e
def test_killed_during_the_call_the_next_process_announces_and_does_not_call_again(
    slack: FakeSlack, tmp_path: Path,
) -> None:
    """kill -9 while set_leverage is in flight: the next process announces the firing with
    "no outcome recorded", calls nothing, and the audit row still reads calling."""
    tread = _Witness(tmp_path / "state.db")
    try:
        tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
        tread.hold = 30
        env = run_env(tread, slack, tmp_path / "rules.yaml", interval="0.5s")
        (tmp_path / "rules.yaml").write_text(LEVER_RULES)
        env["RISKWATCH_ACTIONS"] = "enforce"
        first = subprocess.Popen(RUN, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        assert _wait(lambda: tread.leverage_calls, 20)
        first.kill()
        first.wait(timeout=5)
        tread.hold = 0
        second = subprocess.Popen(RUN, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert _wait(slack.posts, 20)
        time.sleep(2)  # four more polls
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)
    finally:
        tread.close()
    assert len(tread.leverage_calls) == 1
    [post] = slack.posts()
    assert "FIRING · CRITICAL" in post.body["text"]
    assert "no outcome recorded" in post.body["text"]
    [row] = SqliteStore(tmp_path / "state.db").actions()
    assert row.outcome == "calling"
    table = riskwatch("actions", env={"RISKWATCH_STATE": f"sqlite:///{tmp_path}/state.db"})
    assert "calling" in table.stdout and "no outcome recorded" in table.stdout


def _wait(predicate: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
