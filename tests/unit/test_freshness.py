"""Time never goes backwards for an account, and never runs ahead of the clock."""

from __future__ import annotations

from datetime import timedelta

from riskwatch.core.snapshot import Snapshot
from riskwatch.source.freshness import Timeline
from tests.helpers import T0, account, at


def _snapshot(taken_seconds: float, now_seconds: float) -> Snapshot:
    return Snapshot("cached", at(now_seconds), (account("desk-1", taken_at=at(taken_seconds)),))


def test_a_future_time_counts_as_now_on_every_poll() -> None:
    """Data stamped a year ahead is "now" at each poll, not only the first (it must never
    pass for freshness that lasts); the log hears of it once."""
    timeline = Timeline()
    year = 365 * 86400
    seen = [timeline.admit(_snapshot(year + n, n * 15), at(n * 15)) for n in range(4)]
    assert [a.snapshot.accounts[0].taken_at for a in seen] == [at(n * 15) for n in range(4)]
    assert [a.future for a in seen] == [("desk-1",), (), (), ()]


def test_an_older_answer_is_held_back_and_a_newer_one_let_through() -> None:
    """An answer older than the newest seen observes nothing; equal or newer passes."""
    timeline = Timeline()
    assert timeline.admit(_snapshot(10, 12), at(12)).older == ()
    held = timeline.admit(_snapshot(5, 27), at(27))
    assert held.older == ("desk-1",) and held.snapshot.accounts == ()
    assert timeline.admit(_snapshot(10, 42), at(42)).snapshot.accounts[0].taken_at == at(10)
    assert timeline.newest["desk-1"] == T0 + timedelta(seconds=10)
