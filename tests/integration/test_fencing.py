"""Fenced leaders on PostgreSQL: a leader deposed mid-poll saves, sends and acts nothing.

The leader's lock connection is terminated on the server (``pg_terminate_backend``) while
its poll waits for a slow API answer; the process lives on. The standby takes the lead at
its next tick. Whatever the timing, each change is announced once and acted on at most
once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from riskwatch.service.daemon import Daemon
from tests.integration.conftest import PG_BASE
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import (
    MARGIN_RULES,
    Clock,
    cached_with_ratio,
    daemon_on,
    drive,
)
from tests.integration.test_never_blind import _settings, _texts

ACTING_RULES = MARGIN_RULES + "    action: {set_leverage: 3}\n"  # the same rule, acting


def _terminate_lock_connection(daemon: Daemon) -> None:
    """Kill the leader's lock connection on the server, as a network cut or a DBA would."""
    connection: Any = daemon.store._lock_conn  # type: ignore[attr-defined]
    pid = connection.info.backend_pid
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.mark.parametrize("standby_after", [0.05, 0.2, 0.35, 0.5, 0.8])
def test_a_leader_deposed_mid_poll_never_announces_or_acts_twice(
    standby_after: float, tread: FakeTread, slack: FakeSlack, tmp_path: Path, pg_url: str,
) -> None:
    """Terminate the leader's lock connection while its API answer is in flight; the standby
    leads at its next tick: exactly one FIRING message and at most one set_leverage call."""
    clock = Clock(tread)
    settings = _settings(tread, slack, tmp_path, state=pg_url, actions="enforce",
                         rules=ACTING_RULES)
    tread.set_cached(cached_with_ratio("0.1"))
    roles: list[str] = []

    async def script(leader: Daemon) -> None:
        standby = daemon_on(settings, clock)
        try:
            await leader.tick_once()
            await standby.tick_once()
            roles.extend([leader.role(), standby.role()])
            tread.set_cached(cached_with_ratio("0.9"))
            tread.delay = 0.4  # the answer takes most of a poll
            in_flight = asyncio.create_task(leader.tick_once())
            await asyncio.sleep(0.1)
            _terminate_lock_connection(leader)
            await asyncio.sleep(standby_after)
            await standby.tick_once()
            await in_flight
            tread.delay = 0
            for daemon in (leader, standby, leader, standby):
                await daemon.deliverer.deliver_due()
                await daemon.tick_once()
            roles.extend([leader.role(), standby.role()])
        finally:
            await standby.client.aclose()
            standby.store.close()

    drive(settings, clock, script)
    firing = [t for t in _texts(slack) if "FIRING" in t and "`eth-margin`" in t]
    assert len(firing) == 1, _texts(slack)
    assert len(tread.leverage_calls) <= 1, tread.leverage_calls
    assert roles[:2] == ["leader", "standby"]
    assert sorted(roles[2:]) == ["leader", "standby"]  # exactly one leads afterwards


def test_a_lost_lock_connection_is_noticed_within_a_tick(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, pg_url: str,
) -> None:
    """With no other replica, a leader whose lock connection dies stops leading at its next
    tick and leads again (a new epoch) at the one after."""
    clock = Clock(tread)
    tread.set_cached(cached_with_ratio("0.1"))
    seen: list[tuple[bool, int | None]] = []

    async def script(daemon: Daemon) -> None:
        await daemon.tick_once()
        seen.append((daemon.leader, daemon.store.epoch))
        _terminate_lock_connection(daemon)
        await daemon.tick_once()
        seen.append((daemon.leader, daemon.store.epoch))
        await daemon.tick_once()
        seen.append((daemon.leader, daemon.store.epoch))

    drive(_settings(tread, slack, tmp_path, state=pg_url), clock, script)
    first, lost, again = seen
    assert first[0] and not lost[0] and lost[1] is None
    assert again[0] and again[1] is not None and first[1] is not None and again[1] > first[1]
