"""The leader's history in memory: what the rules look back on, loaded when it takes the
lead, one point per account added after each good poll, trimmed to the rules' horizon.

The store keeps the long history (for the status page and for the next leader); this keeps
only what the rules in force read, so its size follows the rules, not polls x accounts:

- **Raw points** only as far back as the longest ``change`` look-back plus its tolerance
  (from the 5-minute edge before that), holding only the metrics ``change`` rules read.
- **Beyond that, per 5-minute bucket**, only what ``drawdown`` reads: the time of the
  bucket's first point (whether the history reaches a window's start) and its equity, kept
  as a *monotonic stack* of peaks — an equity is dropped as soon as a later one is as high,
  since every window that holds the first holds the second (a window always ends now).
  So the peak of a window is one bisection, and a bucket keeps at most one peak.

A window that starts in the bucketed part starts at the 5-minute edge before its start (a
``day`` window starts on an edge, so it is exact); within the raw part it is exact.
Each :class:`Track` answers as :class:`riskwatch.core.history.Series` would with every
point recorded (tests/unit/test_history_book.py compares them on random histories).
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from riskwatch.core.evaluate import CompiledRule
from riskwatch.core.history import (
    BUCKET,
    EPOCH,
    History,
    Point,
    bucket_of,
    horizon,
    tolerance,
)
from riskwatch.core.rules import Rule
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.daemon")

_MICRO = timedelta(microseconds=1)
BUCKET_US = BUCKET // _MICRO


def micros(at: datetime) -> int:
    """A time as microseconds since the epoch (how the book and the store keep times)."""
    return (at - EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    """The time ``us`` microseconds after the epoch (UTC)."""
    return EPOCH + us * _MICRO


class Track:
    """One account's history as the rules need it (see the module docstring); a
    :class:`~riskwatch.core.history.SeriesView`. Points must come oldest first.

    Times are kept as integer microseconds and the raw points' values column by column
    (a few hundred bytes a point less than a :class:`Point` and its datetime)."""

    __slots__ = ("_next_settle", "boundary", "columns", "fields", "firsts", "interval",
                 "peak_highs", "peak_times", "raw_span", "settled", "times")

    def __init__(self, interval: timedelta, raw_span: timedelta,
                 fields: Sequence[str] = ()) -> None:
        self.interval = interval
        self.raw_span = raw_span // _MICRO
        self.fields = tuple(fields)  # the metrics kept of raw points
        self.times: list[int] = []  # raw points (µs), at or after ``boundary``
        # values as recorded (Decimal) or as stored (decimal text, parsed when read)
        self.columns: list[list[Decimal | str | None]] = [[] for _ in self.fields]
        self.firsts = array("q")  # first time (µs) of each bucket before ``boundary``
        self.peak_times: list[int] = []  # the monotonic stack: times rise,
        self.peak_highs: list[Decimal] = []  # highs strictly fall
        self.settled = 0  # stack entries before ``boundary`` (at most one per bucket)
        self.boundary = 0  # a 5-minute edge (µs): before it, only buckets are kept
        self._next_settle = 0

    @property
    def points(self) -> list[Point]:
        """The raw points kept (holding only ``fields``), oldest first."""
        return [self._point(index) for index in range(len(self.times))]

    def _point(self, index: int) -> Point:
        values = {name: Decimal(value) if isinstance(value, str) else value
                  for name, column in zip(self.fields, self.columns, strict=True)
                  if (value := column[index]) is not None}
        return Point(from_micros(self.times[index]), **values)

    def add(self, point: Point) -> None:
        """Add a point newer than every other (an older or equal time is ignored)."""
        at = micros(point.at)
        if self.times and at <= self.times[-1]:
            return
        self.times.append(at)
        for name, column in zip(self.fields, self.columns, strict=True):
            column.append(getattr(point, name))
        self._push(at, point.high)
        if at >= self._next_settle:
            self.settle(_edge(at - self.raw_span))

    def seed(self, buckets: Sequence[tuple[int, str | None]]) -> None:
        """Start from stored 5-minute buckets (first time in µs, highest equity as decimal
        text), oldest first, before any point is added; a bucket given twice counts once
        (its earliest time, its highest equity). One pass from the newest: a bucket is a
        peak when it is higher than every later one. Floats pick the candidates (rounding
        keeps order, so only a tie needs the exact numbers)."""
        firsts: list[int] = []
        times: list[int] = []
        highs: list[Decimal] = []
        top, top_float = None, -math.inf
        for first, text in reversed(buckets):
            if firsts and first // BUCKET_US == firsts[-1] // BUCKET_US:
                firsts[-1] = min(first, firsts[-1])
                if times and times[-1] // BUCKET_US == first // BUCKET_US:
                    times[-1] = firsts[-1]
            else:
                firsts.append(first)
            if text is None or (rough := float(text)) < top_float:
                continue
            high = Decimal(text)
            if top is None or high > top:
                top, top_float = high, rough
                times.append(firsts[-1])
                highs.append(high)
        if firsts:
            self.firsts.extend(reversed(firsts))
            self.peak_times = times[::-1]
            self.peak_highs = highs[::-1]
            self.settled = len(highs)
            self.boundary = _edge(firsts[0]) + BUCKET_US

    def extend(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add stored raw rows, oldest first and newer than any point kept: (time in µs,
        equity, then ``fields``), numbers as decimal text. Their peaks in one pass from the
        newest, as :meth:`seed` does."""
        if self.times:
            rows = [row for row in rows if row[0] > self.times[-1]]
        self.times.extend(row[0] for row in rows)
        for index, column in enumerate(self.columns, start=2):
            column.extend(row[index] for row in rows)
        times: list[int] = []
        highs: list[Decimal] = []
        top, top_float = None, -math.inf
        for row in reversed(rows):
            text = row[1]
            if text is None or (rough := float(text)) < top_float:
                continue
            high = Decimal(text)
            if top is None or high > top:
                top, top_float = high, rough
                times.append(row[0])
                highs.append(high)
        if top is not None:
            while self.peak_highs and self.peak_highs[-1] <= top:
                self.peak_highs.pop()
                self.peak_times.pop()
            self.settled = min(self.settled, len(self.peak_highs))
            self.peak_times.extend(reversed(times))
            self.peak_highs.extend(reversed(highs))

    def _push(self, at: int, high: Decimal | None) -> None:
        if high is None:
            return
        highs, times = self.peak_highs, self.peak_times
        while highs and highs[-1] <= high:
            highs.pop()
            times.pop()
        self.settled = min(self.settled, len(highs))
        highs.append(high)
        times.append(at)

    def settle(self, edge: int) -> None:
        """Keep only buckets before ``edge`` (µs): raw points become bucket first times,
        and stack entries become one per bucket (the first, which is the highest)."""
        if edge <= self.boundary:
            return
        cut = bisect.bisect_left(self.times, edge)
        last = self.firsts[-1] // BUCKET_US if self.firsts else None
        for at in self.times[:cut]:
            if at // BUCKET_US != last:
                self.firsts.append(at)
                last = at // BUCKET_US
        del self.times[:cut]
        for column in self.columns:
            del column[:cut]
        end = bisect.bisect_left(self.peak_times, edge, lo=self.settled)
        times, highs = [], []
        seen: int | None = None
        for index in range(self.settled, end):
            bucket = self.peak_times[index] // BUCKET_US
            if bucket != seen:
                times.append(self.peak_times[index])
                highs.append(self.peak_highs[index])
                seen = bucket
        self.peak_times[self.settled:end] = times
        self.peak_highs[self.settled:end] = highs
        self.settled += len(times)
        self.boundary = edge
        self._next_settle = edge + BUCKET_US + self.raw_span

    def trim(self, since: datetime) -> None:
        """Forget what lies before the 5-minute edge at or before ``since``."""
        edge = _edge(micros(since))
        cut = bisect.bisect_left(self.times, edge)
        del self.times[:cut]
        for column in self.columns:
            del column[:cut]
        del self.firsts[:bisect.bisect_left(self.firsts, edge)]
        cut = bisect.bisect_left(self.peak_times, edge)
        del self.peak_times[:cut], self.peak_highs[:cut]
        self.settled = max(0, self.settled - cut)

    def empty(self) -> bool:
        """Nothing kept (the account has not been seen within the horizon)."""
        return not self.times and not self.firsts

    # -- SeriesView: what the history metrics read

    def latest(self, target: datetime) -> Point | None:
        """The latest point at or before ``target``; in the bucketed part, a point with
        only a time (the first of its bucket)."""
        at = micros(target)
        index = bisect.bisect_right(self.times, at)
        if index:
            return self._point(index - 1)
        index = bisect.bisect_right(self.firsts, at)
        return Point(from_micros(self.firsts[index - 1])) if index else None

    def aligned(self, start: datetime) -> datetime:
        """A window's start: as given in the raw part, the 5-minute edge before it beyond."""
        return bucket_of(start) if micros(start) < self.boundary else start

    def peak_since(self, start: datetime) -> Decimal | None:
        """The highest equity at or after ``start`` (the first stack entry from there)."""
        index = bisect.bisect_left(self.peak_times, micros(start))
        return self.peak_highs[index] if index < len(self.peak_highs) else None


def _edge(at: int) -> int:
    """The 5-minute edge at or before ``at`` (µs)."""
    return at - at % BUCKET_US


def raw_span(rules: Iterable[Rule], interval: timedelta) -> timedelta:
    """How far back raw points must reach: the longest ``change`` look-back with its
    tolerance (those of the open 5-minute bucket are kept as well)."""
    return max((rule.change + tolerance(rule.change, interval)
                         for rule in rules if rule.change is not None), default=timedelta(0))


def change_fields(rules: Iterable[Rule]) -> tuple[str, ...]:
    """The metrics ``change`` rules look back on: all a raw point needs to hold."""
    return tuple(sorted({rule.metric for rule in rules if rule.change is not None}))


class HistoryBook:
    """Each account's track, as far back as the rules in force look."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self.need = timedelta(0)
        self.raw_span = timedelta(0)
        self.fields: tuple[str, ...] = ()
        self.series: dict[str, Track] = {}

    def view(self) -> History:
        """The tracks to evaluate with (read only)."""
        return self.series

    def _plan(self, rules: Sequence[CompiledRule]) -> tuple[timedelta, timedelta,
                                                            tuple[str, ...]]:
        plain = [compiled.rule for compiled in rules]
        return (horizon(plain, self.interval), raw_span(plain, self.interval),
                change_fields(plain))

    def load(self, store: Store, rules: Sequence[CompiledRule], now: datetime) -> None:
        """Read what the rules need from the store (on taking the lead, or when a reload
        makes the rules look further back or at other metrics): 5-minute peaks beyond the
        raw span, raw rows of the needed metrics within it."""
        self.need, self.raw_span, self.fields = self._plan(rules)
        self.series = {}
        if self.need <= timedelta(0):
            return
        split = bucket_of(now - self.raw_span)
        since = bucket_of(now - self.need)
        for account, buckets in store.load_peaks(since, split).items():
            self._track(account).seed(buckets)
        edge = micros(split)
        for account, rows in store.load_rows(max(since, split), self.fields).items():
            track = self._track(account)
            track.settle(edge)  # the stored buckets end where raw rows begin
            track.extend(rows)
        if self.series:
            log.info("history loaded", accounts=len(self.series),
                     hours=round(self.need.total_seconds() / 3600, 2))

    def _track(self, account: str) -> Track:
        track = self.series.get(account)
        if track is None:
            track = self.series[account] = Track(self.interval, self.raw_span, self.fields)
        return track

    def follow(self, store: Store, rules: Sequence[CompiledRule], now: datetime) -> None:
        """After a rule reload: load again if the rules now need more than is kept."""
        need, span, fields = self._plan(rules)
        if need > self.need or span > self.raw_span or not set(fields) <= set(self.fields):
            self.load(store, rules, now)

    def add(self, points: Mapping[str, Point]) -> None:
        """One good poll's point per account."""
        if self.need <= timedelta(0):
            return
        for name, point in points.items():
            track = self.series.get(name)
            if track is None:
                track = self._track(name)
            track.add(point)

    def trim(self, now: datetime) -> None:
        """Drop what the rules no longer look at, and accounts not seen within it."""
        since = now - self.need
        for name, track in list(self.series.items()):
            track.trim(since)
            if track.empty():
                del self.series[name]
