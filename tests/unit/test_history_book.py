"""The leader's compact history (riskwatch.service.history_book): on random histories it
answers ``change`` and ``drawdown`` as the plain series of every point would."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.core.history import (
    BUCKET,
    Point,
    Series,
    Window,
    bucket_of,
    change,
    drawdown,
    tolerance,
    window_start,
)
from riskwatch.service.history_book import Track, micros
from tests.helpers import T0

D = Decimal
INTERVAL = timedelta(seconds=60)
CHANGES = (timedelta(minutes=5), timedelta(minutes=15))
WINDOWS: tuple[Window, ...] = ("day", timedelta(hours=1), timedelta(minutes=20),
                               timedelta(hours=3))
RAW_SPAN = BUCKET + max(d + tolerance(d, INTERVAL) for d in CHANGES)
NEED = timedelta(days=1, hours=3)
START = T0 - timedelta(hours=11, seconds=7)  # the history crosses 00:00 UTC

# a step: polls skipped before the point (0: none), its equity's move (a walk that mostly
# falls, so many points stay peaks), its margin ratio
steps = st.lists(st.tuples(st.sampled_from([0, 0, 0, 0, 1, 2, 6, 25, 90]),
                           st.one_of(st.none(), st.integers(-4, 3)),
                           st.one_of(st.none(), st.integers(0, 9))),
                 min_size=1, max_size=160)


def _points(drawn: list[tuple[int, int | None, int | None]]) -> list[Point]:
    points, at, level = [], START, 500
    for skipped, move, ratio in drawn:
        at += INTERVAL * (1 + skipped) + timedelta(seconds=skipped % 7)
        level += move or 0
        points.append(Point(at, equity=None if move is None else D(level),
                            maint_margin_ratio=None if ratio is None else D(ratio) / 10))
    return points


def _agree(track: Track, full: Series, now: datetime, point: Point) -> None:
    for duration in CHANGES:
        value = None if point.maint_margin_ratio is None else point.maint_margin_ratio + 1
        assert change(track, "maint_margin_ratio", value, now, duration) == change(
            full, "maint_margin_ratio", value, now, duration), (now, duration)
    for window in WINDOWS:
        for equity in (point.equity, D(7)):
            start = track.aligned(window_start(now, window))
            expected = drawdown(full, equity, now, "day" if window == "day" else now - start)
            assert drawdown(track, equity, now, window) == expected, (now, window, equity)


@settings(max_examples=120, deadline=None)
@given(steps, st.integers(0, 59))
def test_a_track_answers_as_the_full_series(drawn: list[tuple[int, int | None, int | None]],
                                            lag: int) -> None:
    """change is exact; drawdown is exact for ``day`` and, for a window reaching past the raw
    span, equals the full series' drawdown from the 5-minute edge before the start — after
    every point, with trims along the way."""
    points = _points(drawn)
    track = Track(INTERVAL, RAW_SPAN, ("maint_margin_ratio",))
    for index, point in enumerate(points):
        track.add(point)
        now = point.at + timedelta(seconds=lag)
        if index % 37 == 36:
            track.trim(now - NEED)
        _agree(track, Series(tuple(points[:index + 1]), INTERVAL), now, point)


def test_day_windows_are_exact_and_buckets_bound_the_memory() -> None:
    """A day of 15-second polls falling steadily (every point a new low: the worst case for
    the stack) keeps raw points only for the raw span and one peak per older bucket."""
    interval = timedelta(seconds=15)
    track = Track(interval, timedelta(minutes=20), ("maint_margin_ratio",))
    midnight = T0.replace(hour=0)
    points = [Point(midnight + interval * n, equity=D(100_000 - n), maint_margin_ratio=D(0))
              for n in range(5760)]
    for point in points:
        track.add(point)
    assert len(track.times) <= 25 * 4 and len(track.peak_highs) <= 288 + 25 * 4
    assert len(track.firsts) <= 288
    now = points[-1].at
    assert drawdown(track, D(50_000), now, "day") == drawdown(
        Series(tuple(points), interval), D(50_000), now, "day")


def test_an_old_point_is_ignored_and_a_trim_forgets_the_past() -> None:
    """Time never goes backwards for an account; trimming keeps the bucket the horizon
    starts in and drops what lies before it."""
    track = Track(INTERVAL, RAW_SPAN)
    for minutes in range(0, 120):
        track.add(Point(START + timedelta(minutes=minutes), equity=D(200 - minutes)))
    track.add(Point(START, equity=D(10_000)))
    assert track.peak_since(START) == D(200)
    track.trim(START + timedelta(minutes=61))
    assert track.peak_since(START) == D(200 - 61)  # the first point after 00:00, the edge
    assert not track.empty()
    track.trim(START + timedelta(days=1))
    assert track.empty() and track.peak_since(START) is None


def _stored(points: list[Point], split: datetime) -> tuple[list[tuple[int, str | None]],
                                                           list[tuple[int, str | None,
                                                                      str | None]]]:
    """What the store holds for ``points``: 5-minute peaks before ``split`` (a bucket of
    several points stored as two halves, as after a leader change), raw rows from it."""
    by_bucket: dict[datetime, list[Point]] = {}
    for point in points:
        if point.at < split:
            by_bucket.setdefault(bucket_of(point.at), []).append(point)
    buckets: list[tuple[int, str | None]] = []
    for inside in by_bucket.values():
        half = (len(inside) + 1) // 2
        for part in (inside[:half], inside[half:]):
            highs = [p.equity for p in part if p.equity is not None]
            if part:
                buckets.append((micros(part[0].at), str(max(highs)) if highs else None))
    rows = [(micros(p.at), None if p.equity is None else str(p.equity),
             None if p.maint_margin_ratio is None else str(p.maint_margin_ratio))
            for p in points if p.at >= split]
    return buckets, rows


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(0, 59))
def test_a_track_loaded_from_stored_rows_answers_as_the_full_series(
        drawn: list[tuple[int, int | None, int | None]], lag: int) -> None:
    """A restart (stored peaks, then stored raw rows of the raw span) gives a track that
    answers as the full series, as a track that saw every point does."""
    points = _points(drawn)
    now = points[-1].at + timedelta(seconds=lag)
    split = bucket_of(now - RAW_SPAN)
    buckets, rows = _stored(points, split)
    track = Track(INTERVAL, RAW_SPAN, ("maint_margin_ratio",))
    track.seed(buckets)
    track.settle(micros(split))
    track.extend(rows)
    _agree(track, Series(tuple(points), INTERVAL), now, points[-1])
