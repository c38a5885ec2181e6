"""History through the daemon: recorded after each good poll, read back by the next leader
(after a restart, or by a replica sharing PostgreSQL), and used by the history rules."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from riskwatch.core.history import EPOCH
from riskwatch.service.daemon import Daemon
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import Clock, cached_with_ratio, drive, settings_for

DRAWDOWN_RULES = """
rules:
  - name: desk-drawdown
    scope: account
    metric: drawdown
    window: 24h
    levels: {warning: 0.1}
"""


def _with_equity(equity: str) -> dict[str, Any]:
    payload = copy.deepcopy(cached_with_ratio("0.1"))
    payload["balances"][0]["equity"] = equity
    return payload


def _state(kind: str, folder: Path, pg_url: str) -> str:
    return pg_url if kind == "postgresql" else f"sqlite:///{folder}/state.db"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_history_survives_a_restart_and_a_new_leader_alerts_on_it(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, pg_url: str, kind: str,
) -> None:
    """Equity recorded by one leader (5000, 5000) is the peak the next one measures a
    drawdown from: at 4400 the new leader fires a 12 % drawdown on its first poll."""
    settings = settings_for(tread, slack, tmp_path, rules=DRAWDOWN_RULES,
                            state=_state(kind, tmp_path, pg_url), poll_interval="15s")
    clock = Clock(tread)

    async def first(daemon: Daemon) -> None:
        for _ in range(2):
            tread.set_cached(_with_equity("5000"))
            await daemon.tick_once()
            clock.advance(15)
        assert daemon.alerts == {}
        latest = daemon.store.latest_points(clock() - timedelta(hours=1))
        assert list(latest) == ["desk-1"] and latest["desk-1"].equity == 5000
        assert latest["desk-1"].at > clock() - timedelta(seconds=30)  # the second poll's
        daemon.store.release_lead()

    async def second(daemon: Daemon) -> None:
        tread.set_cached(_with_equity("4400"))
        await daemon.tick_once()
        series = daemon.poll.history.view()["desk-1"]
        assert series.peak_since(EPOCH) == 5000  # the first leader's points, read back
        [alert] = [a for a in daemon.alerts.values() if a.key.rule == "desk-drawdown"]
        assert alert.state.value == "firing" and str(alert.value) == "0.12"

    drive(settings, clock, first)
    drive(settings, clock, second)


def test_a_failed_poll_records_no_point(tread: FakeTread, slack: FakeSlack,
                                        tmp_path: Path) -> None:
    """Only good polls make history: a failed poll leaves a gap, never a made-up point."""
    settings = settings_for(tread, slack, tmp_path, rules=DRAWDOWN_RULES, poll_interval="15s")
    clock = Clock(tread)

    async def script(daemon: Daemon) -> None:
        tread.set_cached(_with_equity("5000"))
        await daemon.tick_once()
        clock.advance(15)
        tread.set_cached({"not": "an answer"})
        await daemon.tick_once()
        stored = daemon.store.load_history(clock() - daemon.settings.poll_interval * 10)
        assert [len(s.points) for s in stored.values()] == [1]

    drive(settings, clock, script)
