"""The history table on real SQLite and real PostgreSQL: bulk writes, reading back after a
restart, and retention (downsampling after 48 h, dropping after 90 days) in prune."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from riskwatch.core.evaluate import compile_rules
from riskwatch.core.history import BUCKET, Point, change, drawdown
from riskwatch.rulefiles.loader import load_rules
from riskwatch.service.history_book import HistoryBook
from riskwatch.store import Store, open_store
from riskwatch.store.history import time_of
from tests.helpers import T0

D = Decimal
NOW = T0 + timedelta(days=100)


def _point(ago: timedelta, equity: str, ratio: str | None = "0.25") -> Point:
    return Point(NOW - ago, equity=D(equity), margin_balance=D("1E+3"),
                 maint_margin_ratio=None if ratio is None else D(ratio),
                 liquidation_buffer=D("-0.1400000000000000000000"))


def test_history_round_trips_exactly(store: Store) -> None:
    """Points come back per account, in time order, with exact Decimals and unknowns as None;
    ``since`` bounds what is read."""
    store.record_history({"a": _point(timedelta(minutes=2), "100"),
                          "b": _point(timedelta(minutes=2), "7", ratio=None)}, NOW)
    store.record_history({"a": _point(timedelta(minutes=1), "90")}, NOW)
    store.record_history({"a": _point(timedelta(hours=5), "500")}, NOW)
    loaded = store.load_history(NOW - timedelta(hours=1), interval=timedelta(seconds=30))
    assert set(loaded) == {"a", "b"}
    assert loaded["a"].points == (_point(timedelta(minutes=2), "100"),
                                  _point(timedelta(minutes=1), "90"))
    assert loaded["a"].interval == timedelta(seconds=30)
    [b] = loaded["b"].points
    assert b.maint_margin_ratio is None and b.gross_notional is None
    assert str(b.liquidation_buffer) == "-0.1400000000000000000000"
    assert store.load_history(NOW - timedelta(hours=6))["a"].points[0].equity == D(500)


def test_a_point_from_the_future_is_recorded_as_now(store: Store) -> None:
    """A timestamp after now counts as now, as everywhere else."""
    store.record_history({"a": _point(-timedelta(minutes=5), "1")}, NOW)
    [point] = store.load_history(NOW - timedelta(hours=1))["a"].points
    assert point.at == NOW


def test_ten_thousand_accounts_in_one_call(store: Store) -> None:
    """A poll of 10,000 accounts is one bulk write; every point is there afterwards."""
    points = {f"desk-{n}": _point(timedelta(seconds=15), str(n)) for n in range(10_000)}
    store.record_history(points, NOW)
    loaded = store.load_history(NOW - timedelta(minutes=1))
    assert len(loaded) == 10_000 and loaded["desk-9999"].points[0].equity == D(9999)


def test_prune_downsamples_after_48h_and_drops_after_90_days(store: Store) -> None:
    """Raw points older than 48 h become one point per 5-minute bucket that keeps the
    bucket's peak equity; points older than 90 days go; recent points stay as they are.
    A second prune finds nothing more to do."""
    old_bucket = timedelta(hours=60)  # T0 + 100d - 60h is on a 5-minute edge
    for seconds, equity in ((0, "100"), (60, "180"), (120, "110")):
        store.record_history({"a": _point(old_bucket - timedelta(seconds=seconds), equity)},
                             NOW)
    store.record_history({"a": _point(timedelta(days=91), "1")}, NOW)
    for minutes in (0, 1, 2):
        store.record_history({"a": _point(timedelta(hours=47, minutes=minutes), "50")}, NOW)
    assert store.prune(NOW) == 3  # one 91-day-old point, two of the three in the bucket
    points = store.load_history(NOW - timedelta(days=365))["a"].points
    assert [(NOW - p.at, p.equity, p.equity_high) for p in points] == [
        (old_bucket - timedelta(seconds=120), D(110), D(180)),
        (timedelta(hours=47, minutes=2), D(50), None),
        (timedelta(hours=47, minutes=1), D(50), None),
        (timedelta(hours=47), D(50), None),
    ]
    series = store.load_history(NOW - timedelta(hours=61))["a"]
    assert drawdown(series, D(90), NOW, timedelta(hours=61)).value == D("0.5")
    assert store.prune(NOW) == 0


def test_restart_reads_the_history_back(tmp_path: Path) -> None:
    """A second process on the same SQLite file reads what the first recorded."""
    url = f"sqlite:///{tmp_path}/state.db"
    first = open_store(url)
    first.record_history({"a": _point(timedelta(minutes=1), "100")}, NOW)
    first.close()
    second = open_store(url)
    assert second.load_history(NOW - timedelta(hours=1))["a"].points == (
        _point(timedelta(minutes=1), "100"),)
    second.close()


DEFAULT_RULES = Path(__file__).parents[2] / "rules" / "default.yaml"


def _walk(store: Store, minutes: int, accounts: int = 3) -> HistoryBook:
    """Record ``minutes`` of 15-second polls ending at NOW (equity falling and rising by
    account) and return the book that saw them poll by poll."""
    rules = compile_rules(load_rules([DEFAULT_RULES]))
    book = HistoryBook(timedelta(seconds=15))
    book.load(store, rules, NOW - timedelta(minutes=minutes, seconds=15))
    for step in range(minutes * 4 + 1):
        when = NOW - timedelta(minutes=minutes) + step * timedelta(seconds=15)
        points = {f"a{n}": Point(when, equity=D(1000 + (step * (n - 1)) % 97),
                                 maint_margin_ratio=D(step % 13) / 20) for n in range(accounts)}
        store.record_history(points, when)
        book.add(points)
    return book


def test_a_new_leader_loads_the_book_the_old_one_built(store: Store) -> None:
    """After 90 minutes of polls, a book loaded from the store (5-minute peaks, then raw rows
    of the change look-back) answers drawdown and change as the book that saw every poll."""
    seen = _walk(store, 90)
    loaded = HistoryBook(timedelta(seconds=15))
    loaded.load(store, compile_rules(load_rules([DEFAULT_RULES])), NOW)
    assert set(loaded.series) == set(seen.series) == {"a0", "a1", "a2"}
    for name in seen.series:
        old, new = seen.view()[name], loaded.view()[name]
        for window in ("day", timedelta(minutes=50), timedelta(minutes=7)):
            assert drawdown(new, D(990), NOW, window) == drawdown(old, D(990), NOW, window)
        assert change(new, "maint_margin_ratio", D(1), NOW, timedelta(minutes=15)) == change(
            old, "maint_margin_ratio", D(1), NOW, timedelta(minutes=15)) is not None


def test_peaks_survive_a_leader_change_within_a_bucket(tmp_path: Path) -> None:
    """A process that starts recording in the middle of a bucket counts the points its
    predecessor stored in that bucket: the bucket's peak is the higher of both."""
    url = f"sqlite:///{tmp_path}/state.db"
    edge = NOW - timedelta(hours=1)
    first = open_store(url)
    first.record_history({"a": Point(edge + timedelta(seconds=15), equity=D(900))}, NOW)
    first.close()
    second = open_store(url)
    second.record_history({"a": Point(edge + timedelta(seconds=30), equity=D(800))}, NOW)
    second.record_history({"a": Point(edge + BUCKET, equity=D(700))}, NOW)  # closes it
    [(first_at, high)] = second.load_peaks(edge, edge + BUCKET)["a"]
    assert (time_of(first_at), high) == (edge + timedelta(seconds=15), "900")
    second.close()
