"""Each account's recorded history, and the metrics that need it: ``drawdown`` and ``change``.

Pure: series are immutable values and every function takes ``now``. The shell records a
:class:`Point` per account after each successful poll, keeps what the rules need
(:func:`horizon`), and passes it to the evaluator. The metrics read a history through
:class:`SeriesView` (the latest point at a time, a window's peak), so the leader can keep a
compact record of each account (``riskwatch.service.history_book``) instead of a
:class:`Series` of every point; :class:`Series` is the plain reference it is tested against.

The rules chosen here, and why:

- **Tolerance.** A time ``t`` is covered when the history holds a point at or before ``t``
  and no more than ``tolerance(d, interval) = max(2 poll intervals, d / 10)`` before it,
  ``d`` being the duration looked back over. Two intervals forgive one missed poll; the
  tenth lets long look-backs use 5-minute points (a ``change: 1h`` forgives 6 minutes).
- **change: d** is the value now minus the value of the latest point at or before
  ``now - d``, when that time is covered; otherwise unknown (a history younger than ``d``,
  a gap at that time, an unknown value then or now). Unknown never trips and never clears.
- **drawdown** over a window (a duration, or ``day``: since 00:00 UTC) is
  ``(peak - equity now) / peak``, the peak being the highest equity in the window (now
  included); 0.1 means 10 % below the peak. Unknown when equity now is unknown or the peak
  is not positive. When the history does not reach back to the window's start (within
  the tolerance, measured on the window's length), the value is a *lower bound*: the
  fall seen so far. It may trip (that fall happened) but cannot clear an alert.
  Gaps inside the window are not filled: the peak is the highest equity seen.
- **Downsampling.** Points older than ``RAW_KEEP`` become one point per 5-minute bucket
  (buckets aligned on the epoch): the bucket's last point, with ``equity_high`` the
  highest equity of the bucket, so the drawdown peak survives. A window's start then falls
  within 5 minutes of a bucket's edge. Downsampled points go after ``KEEP``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple, Protocol

from riskwatch.core.measures import ACCOUNT_METRICS, AccountFigures
from riskwatch.core.rules import Rule
from riskwatch.core.snapshot import Snapshot

RAW_KEEP = timedelta(hours=48)  # raw points, one per poll
KEEP = timedelta(days=90)  # 5-minute points
BUCKET = timedelta(minutes=5)
DEFAULT_INTERVAL = timedelta(seconds=15)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The figures a point holds, by the name of the account metric each is (margin_balance
# is not a metric but is kept for charts).
FIELDS: tuple[str, ...] = ("equity", "margin_balance", "maint_margin_ratio",
                           "initial_margin_ratio", "effective_leverage", "gross_notional",
                           "unrealized_pnl", "liquidation_buffer")
# The account metrics ``change`` can look back on: those the history holds.
CHANGE_METRICS: tuple[str, ...] = tuple(name for name in FIELDS if name in ACCOUNT_METRICS)

Window = timedelta | Literal["day"]


@dataclass(frozen=True, slots=True)
class Point:
    """One account's figures at one time (a poll, or the last poll of a 5-minute bucket)."""

    at: datetime
    equity: Decimal | None = None
    margin_balance: Decimal | None = None
    maint_margin_ratio: Decimal | None = None
    initial_margin_ratio: Decimal | None = None
    effective_leverage: Decimal | None = None
    gross_notional: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    liquidation_buffer: Decimal | None = None
    equity_high: Decimal | None = None  # a downsampled point: the bucket's highest equity

    @property
    def high(self) -> Decimal | None:
        """The highest equity this point stands for."""
        return self.equity if self.equity_high is None else self.equity_high


class SeriesView(Protocol):
    """What the history metrics read of an account's history: a plain :class:`Series`, or
    the leader's compact record of it (see ``riskwatch.service.history_book``)."""

    @property
    def interval(self) -> timedelta:
        """The poll interval the points were recorded at (it sets the tolerance)."""

    def latest(self, target: datetime) -> Point | None:
        """The latest point at or before ``target``, or None."""

    def aligned(self, start: datetime) -> datetime:
        """Where a drawdown window that starts at ``start`` begins in this history: the
        start itself where points are kept as recorded, the 5-minute edge before it where
        only each bucket's highest equity is kept."""

    def peak_since(self, start: datetime) -> Decimal | None:
        """The highest equity of the points at or after ``start`` (None: none known)."""


@dataclass(frozen=True, slots=True)
class Series:
    """An account's points, oldest first, at most one per time; ``interval`` is the poll
    interval they were recorded at (it sets the tolerance for gaps)."""

    points: tuple[Point, ...] = ()
    interval: timedelta = DEFAULT_INTERVAL
    times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", tuple(point.at for point in self.points))

    def latest(self, target: datetime) -> Point | None:
        """The latest point at or before ``target``, or None."""
        index = bisect.bisect_right(self.times, target)
        return self.points[index - 1] if index else None

    def aligned(self, start: datetime) -> datetime:
        """Every point is kept as recorded: a window starts where it starts."""
        return start

    def peak_since(self, start: datetime) -> Decimal | None:
        """The highest equity of the points at or after ``start`` (a scan)."""
        first = bisect.bisect_left(self.times, start)
        return max((high for point in self.points[first:] if (high := point.high) is not None),
                   default=None)


History = Mapping[str, SeriesView]  # account name -> its series


class Reading(NamedTuple):
    """A history metric's value; ``lower_bound``: the true value may be higher (it may trip
    an ``above`` rule but never clear one)."""

    value: Decimal | None
    lower_bound: bool = False


def series_of(points: Iterable[Point], interval: timedelta = DEFAULT_INTERVAL) -> Series:
    """A series of ``points`` in any order; of two points at one time the later given wins."""
    by_time = {point.at: point for point in points}
    return Series(tuple(by_time[at] for at in sorted(by_time)), interval)


def append(series: Series, point: Point) -> Series:
    """``series`` with ``point`` added; a point not newer than the last is ignored (time never
    goes backwards for an account)."""
    if series.points and point.at <= series.points[-1].at:
        return series
    return Series((*series.points, point), series.interval)


def point_of(figures: AccountFigures, at: datetime) -> Point:
    """The point an account's figures make at ``at``."""
    values = {name: ACCOUNT_METRICS[name](figures, at) for name in CHANGE_METRICS}
    return Point(at=at, margin_balance=figures.margin_balance, **values)


def points_of(snapshot: Snapshot, now: datetime) -> dict[str, Point]:
    """One point per account of a snapshot, at the time its data was taken (never after now).

    An account whose figures break the arithmetic (a number like ``1E-999999``) makes no
    point: evaluation already reports it as an account-error, and a gap is never read as
    a value.
    """
    points = {}
    for account in snapshot.accounts:
        try:
            points[account.name] = point_of(AccountFigures.of(account),
                                            min(account.taken_at or now, now))
        except ArithmeticError:
            continue
    return points


def tolerance(duration: timedelta, interval: timedelta) -> timedelta:
    """How far before a time the nearest point may be for the time to count as covered."""
    return max(2 * interval, duration / 10)


def window_start(now: datetime, window: Window) -> datetime:
    """Where a drawdown window begins: ``now - window``, or 00:00 UTC of today for ``day``."""
    if window == "day":
        utc = now.astimezone(UTC)
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)
    assert isinstance(window, timedelta)
    return now - window


def covered(series: SeriesView, target: datetime, duration: timedelta) -> Point | None:
    """The point that covers ``target`` (see the module docstring), or None."""
    found = series.latest(target)
    if found is None or target - found.at > tolerance(duration, series.interval):
        return None
    return found


def change(series: SeriesView | None, metric: str, value_now: Decimal | None, now: datetime,
           duration: timedelta) -> Decimal | None:
    """``metric`` now minus its value ``duration`` ago; None unless the history covers then."""
    if value_now is None or series is None:
        return None
    then = covered(series, now - duration, duration)
    if then is None:
        return None
    before: Decimal | None = getattr(then, metric, None)
    if before is None or (before.is_infinite() and value_now.is_infinite()):
        return None  # no number is the difference of two infinities
    return value_now - before


def drawdown(series: SeriesView | None, equity_now: Decimal | None, now: datetime,
             window: Window) -> Reading:
    """How far equity now is below its peak in the window, as a fraction of the peak."""
    if equity_now is None:
        return Reading(None)
    start = window_start(now, window)
    if series is not None:
        start = series.aligned(start)
    seen = series.peak_since(start) if series is not None else None
    peak = equity_now if seen is None or equity_now > seen else seen
    if peak <= 0:
        return Reading(None)
    complete = series is not None and covered(series, start + tolerance(
        now - start, series.interval), now - start) is not None
    return Reading((peak - equity_now) / peak, lower_bound=not complete)


def bucket_of(at: datetime) -> datetime:
    """The start of the 5-minute bucket ``at`` falls in (aligned on the epoch)."""
    return at - (at - EPOCH) % BUCKET


def downsample(points: Sequence[Point]) -> list[Point]:
    """One point per 5-minute bucket: the last one, with the bucket's highest equity.

    Idempotent: downsampling downsampled points (with raw ones of the same bucket or not)
    keeps the highest equity of all.
    """
    result: list[Point] = []
    last_bucket: datetime | None = None
    for point in sorted(points, key=lambda p: p.at):
        bucket = bucket_of(point.at)
        if bucket == last_bucket:
            highs = [h for h in (result[-1].high, point.high) if h is not None]
            result[-1] = replace(point, equity_high=max(highs) if highs else None)
        else:
            result.append(replace(point, equity_high=point.high))
            last_bucket = bucket
    return result


def retain(series: Series, now: datetime, raw_for: timedelta = RAW_KEEP,
           keep_for: timedelta = KEEP) -> Series:
    """``series`` as retention leaves it: points older than ``keep_for`` gone, those older
    than ``raw_for`` (from a 5-minute edge) downsampled, the rest as recorded."""
    since = now - keep_for
    cutoff = bucket_of(now - raw_for)
    start = bisect.bisect_left(series.times, since)
    split = max(start, bisect.bisect_left(series.times, cutoff))
    old = series.points[start:split]
    return Series((*downsample(old), *series.points[split:]), series.interval)


def horizon(rules: Iterable[Rule], interval: timedelta = DEFAULT_INTERVAL) -> timedelta:
    """How far back the rules look: the history worth keeping for them (zero: none)."""
    furthest = timedelta(0)
    for rule in rules:
        if rule.window is not None:
            window = timedelta(days=1) if rule.window == "day" else rule.window
            assert isinstance(window, timedelta)
            furthest = max(furthest, window + tolerance(window, interval))
        if rule.change is not None:
            furthest = max(furthest, rule.change + tolerance(rule.change, interval))
    return furthest
