"""History metrics by hand: drawdown and change, with gaps, restarts, retention and
downsampling, and how the evaluator uses them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from riskwatch.core.evaluate import CompiledRule, compile_rules, decide
from riskwatch.core.history import (
    Point,
    Reading,
    Series,
    append,
    bucket_of,
    change,
    downsample,
    drawdown,
    horizon,
    points_of,
    retain,
    series_of,
    tolerance,
    window_start,
)
from riskwatch.core.lifecycle import AlertKey, State
from riskwatch.core.snapshot import Snapshot
from riskwatch.rulefiles.loader import load_rules
from tests.helpers import T0, account, at, position

D = Decimal
MINUTE = timedelta(minutes=1)


def _equity(*pairs: tuple[float, str | None]) -> Series:
    """A series of equity points: (seconds after T0, equity)."""
    return series_of(Point(at(s), equity=None if e is None else D(e)) for s, e in pairs)


def _every(seconds: int, until: int, equity: str = "100", start: int = 0) -> list[Point]:
    return [Point(at(s), equity=D(equity), maint_margin_ratio=D("0.3"))
            for s in range(start, until + 1, seconds)]


# ------------------------------------------------------------------ drawdown

def test_drawdown_from_the_peak_of_the_window() -> None:
    """Peak 1200 in the last 24 h, equity now 900: (1200 - 900) / 1200 = 0.25."""
    series = _equity((0, "1000"), (3600, "1200"), (7200, "1100"))
    now = at(7200 + 60)
    reading = drawdown(series, D(900), now, timedelta(hours=24))
    assert reading.value == D("0.25")


def test_drawdown_ignores_a_peak_that_left_the_window() -> None:
    """A peak 2 h ago is outside a 1 h window; the window's peak is 1100."""
    series = series_of(Point(at(s), equity=D("1100") if s else D("5000"))
                       for s in range(0, 7201, 15))
    reading = drawdown(series, D(990), at(7200), timedelta(hours=1))
    assert reading == Reading(D("0.1"), lower_bound=False)


def test_drawdown_is_zero_at_a_new_high() -> None:
    """Equity now above every point: no drawdown."""
    series = series_of(_every(15, 3600))
    assert drawdown(series, D(150), at(3600), timedelta(minutes=30)) == Reading(D(0))


def test_drawdown_since_the_start_of_the_utc_day() -> None:
    """window: day starts at 00:00 UTC: yesterday's 2000 does not count, today's 1000 does."""
    midnight = datetime(2026, 1, 23, tzinfo=UTC)
    points = [Point(midnight - timedelta(seconds=s), equity=D(2000)) for s in range(15, 600, 15)]
    points += [Point(midnight + timedelta(seconds=s), equity=D(1000)) for s in range(0, 600, 15)]
    now = midnight + timedelta(minutes=10)
    assert window_start(now, "day") == midnight
    assert drawdown(series_of(points), D(800), now, "day") == Reading(D("0.2"))


def test_drawdown_is_a_lower_bound_until_the_history_reaches_the_window_start() -> None:
    """A history of 1 h in a 24 h window: the fall seen so far, flagged as a lower bound."""
    series = series_of(_every(15, 3600, start=0, equity="1000"))
    now = at(3600)
    assert drawdown(series, D(700), now, timedelta(hours=24)) == Reading(D("0.3"), True)
    # 24 h later, with points all the way: complete (tolerance: 2.4 h)
    long = series_of(_every(300, 86400, equity="1000"))
    assert drawdown(long, D(700), at(86400 + 60), timedelta(hours=24)) == Reading(D("0.3"))


def test_drawdown_after_a_restart_with_no_history() -> None:
    """No history: the peak is equity now, so 0, as a lower bound (it can clear nothing)."""
    assert drawdown(None, D(500), T0, timedelta(hours=24)) == Reading(D(0), True)
    assert drawdown(Series(), D(500), T0, "day") == Reading(D(0), True)


@pytest.mark.parametrize("equity_now", [None, D(0), D(-5)])
def test_drawdown_unknown_without_a_positive_peak(equity_now: Decimal | None) -> None:
    """Equity unknown now, or never positive: drawdown unknown."""
    series = _equity((0, "-10"), (15, None))
    assert drawdown(series, equity_now, at(30), timedelta(minutes=1)).value is None


def test_drawdown_keeps_the_peak_through_downsampling() -> None:
    """A 5-minute point keeps the bucket's highest equity, even when the last one is lower."""
    raw = [Point(at(s), equity=D(e)) for s, e in ((0, "100"), (60, "180"), (120, "110"))]
    [point] = downsample(raw)
    assert (point.at, point.equity, point.equity_high) == (at(120), D(110), D(180))
    series = series_of([point])
    assert drawdown(series, D(90), at(600), timedelta(hours=1)).value == D("0.5")


# ------------------------------------------------------------------ change

def test_change_is_now_minus_then() -> None:
    """Margin ratio 0.30 fifteen minutes ago, 0.55 now: +0.25."""
    series = series_of(_every(15, 900))
    assert change(series, "maint_margin_ratio", D("0.55"), at(900), 15 * MINUTE) == D("0.25")


def test_change_takes_the_latest_point_at_or_before_the_target() -> None:
    """Target 10:00:20 with points at :15 (0.3) and :30 (0.9): the one at :15."""
    series = series_of([Point(at(15), maint_margin_ratio=D("0.3")),
                        Point(at(30), maint_margin_ratio=D("0.9"))])
    now = at(20) + 15 * MINUTE
    assert change(series, "maint_margin_ratio", D("0.5"), now, 15 * MINUTE) == D("0.2")


def test_change_is_unknown_until_the_history_covers_the_duration() -> None:
    """A 10-minute history cannot say what happened in 15 minutes (a fresh start)."""
    series = series_of(_every(15, 600))
    assert change(series, "maint_margin_ratio", D("0.9"), at(600), 15 * MINUTE) is None
    assert change(None, "maint_margin_ratio", D("0.9"), at(600), 15 * MINUTE) is None
    assert change(Series(), "maint_margin_ratio", D("0.9"), at(600), 15 * MINUTE) is None


def test_change_is_unknown_across_a_gap_and_known_within_the_tolerance() -> None:
    """15 s polls, change: 15m: tolerance max(30 s, 90 s) = 90 s. The nearest point before
    the target 90 s back is fine; 91 s back is a gap."""
    assert tolerance(15 * MINUTE, timedelta(seconds=15)) == timedelta(seconds=90)
    series = series_of([Point(at(0), maint_margin_ratio=D("0.3"))])
    assert change(series, "maint_margin_ratio", D("0.4"), at(990), 15 * MINUTE) == D("0.1")
    assert change(series, "maint_margin_ratio", D("0.4"), at(991), 15 * MINUTE) is None


def test_change_is_unknown_when_either_value_is() -> None:
    """An unknown value then or now gives an unknown change, never a change from zero."""
    series = series_of([Point(at(0), maint_margin_ratio=None)])
    assert change(series, "maint_margin_ratio", D("0.4"), at(900), 15 * MINUTE) is None
    known = series_of([Point(at(0), maint_margin_ratio=D("0.3"))])
    assert change(known, "maint_margin_ratio", None, at(900), 15 * MINUTE) is None


def test_change_of_infinite_ratios() -> None:
    """From a finite ratio to no balance is an infinite rise; infinity to infinity unknown."""
    inf = D("Infinity")
    finite = series_of([Point(at(0), maint_margin_ratio=D("0.3"))])
    assert change(finite, "maint_margin_ratio", inf, at(900), 15 * MINUTE) == inf
    infinite = series_of([Point(at(0), maint_margin_ratio=inf)])
    assert change(infinite, "maint_margin_ratio", inf, at(900), 15 * MINUTE) is None


# ------------------------------------------------------------------ series and retention

def test_series_keeps_time_order_and_never_goes_back() -> None:
    """Points sort by time, one per time; append ignores a point not newer than the last."""
    series = series_of([Point(at(30), equity=D(3)), Point(at(0), equity=D(1)),
                        Point(at(30), equity=D(4))])
    assert [(p.at, p.equity) for p in series.points] == [(at(0), D(1)), (at(30), D(4))]
    assert append(series, Point(at(30), equity=D(9))) is series
    assert append(series, Point(at(15), equity=D(9))) is series
    assert append(series, Point(at(45), equity=D(9))).points[-1].equity == D(9)


def test_buckets_are_aligned_on_five_minutes() -> None:
    """10:03:20 falls in the bucket of 10:00; 10:05:00 starts its own."""
    assert bucket_of(at(200)) == T0 and bucket_of(at(300)) == at(300)


def test_downsample_takes_the_last_values_and_is_idempotent() -> None:
    """Each bucket keeps its last point's figures and its highest equity; doing it twice
    (or with new raw points of the same bucket) changes nothing more."""
    raw = [Point(at(s), equity=D(100 + s), maint_margin_ratio=D(s)) for s in range(0, 600, 15)]
    once = downsample(raw)
    assert [(p.at, p.equity, p.equity_high, p.maint_margin_ratio) for p in once] == [
        (at(285), D(385), D(385), D(285)), (at(585), D(685), D(685), D(585))]
    assert downsample(once) == once
    spike = Point(at(100), equity=D(10_000))
    assert downsample([*once, spike])[0].equity_high == D(10_000)


def test_retention_downsamples_after_48h_and_drops_after_90_days() -> None:
    """Raw points younger than 48 h stay; older ones become 5-minute points; older than
    90 days go."""
    now = T0 + timedelta(days=100)
    ages = [timedelta(days=95), timedelta(days=89), timedelta(days=89) - timedelta(seconds=15),
            timedelta(hours=49), timedelta(hours=47), timedelta(hours=47, seconds=-15)]
    series = series_of(Point(now - age, equity=D(n)) for n, age in enumerate(ages))
    kept = retain(series, now)
    assert [p.equity for p in kept.points] == [D(2), D(3), D(4), D(5)]
    assert [p.equity_high for p in kept.points] == [D(2), D(3), None, None]


def test_points_of_a_snapshot() -> None:
    """A snapshot gives one point per account with every figure the history keeps."""
    desk = account("desk-1", position("A", notional="4000", maint_margin="100",
                                      initial_margin="400", margin_balance="1000",
                                      unrealized_profit="-50"), equity="1200", taken_at=at(-5))
    [(name, point)] = points_of(Snapshot("cached", T0, (desk,)), T0).items()
    assert name == "desk-1"
    assert point == Point(at(-5), equity=D(1200), margin_balance=D(1000),
                          maint_margin_ratio=D("0.1"), initial_margin_ratio=D("0.4"),
                          effective_leverage=D(4000) / D(1200), gross_notional=D(4000),
                          unrealized_pnl=D(-50), liquidation_buffer=D("0.225"))


# ------------------------------------------------------------------ evaluation

RULES = """
rules:
  - {name: dd, scope: account, metric: drawdown, window: 1h, levels: {warning: 0.1, critical: 0.2}}
  - {name: margin-jump, scope: account, metric: maint_margin_ratio, change: 15m,
     levels: {warning: 0.2}}
  - {name: plain, scope: account, metric: equity, when: below, levels: {warning: 10}}
"""


def _compiled(tmp_path: Path) -> list[CompiledRule]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return compile_rules(load_rules([path]))


def _desk(equity: str, maint: str) -> Snapshot:
    row = position("A", notional="1000", maint_margin=maint, margin_balance="1000")
    return Snapshot("cached", T0, (account("desk-1", row, equity=equity),))


def test_horizon_is_the_furthest_look_back(tmp_path: Path) -> None:
    """drawdown 1h and change 15m: 1 h plus its tolerance (6 min) is kept."""
    rules = [compiled.rule for compiled in _compiled(tmp_path)]
    assert horizon(rules) == timedelta(minutes=66)


def test_decide_fires_drawdown_and_change_from_history(tmp_path: Path) -> None:
    """Peak 1000 an hour back, 750 now (0.25: critical); margin ratio 0.3 -> 0.6 in 15 min."""
    rules = _compiled(tmp_path)
    now = at(3600)
    history = {"desk-1": series_of(_every(15, 3585, equity="1000"))}
    decisions = decide(rules, _desk("750", "600"), {}, now, history=history)
    fired = {(k.rule, a.state, a.severity, a.value) for k, a in decisions.changed.items()}
    assert fired == {("dd", State.FIRING, "critical", D("0.25")),
                     ("margin-jump", State.FIRING, "warning", D("0.3"))}


def test_without_history_history_rules_see_nothing(tmp_path: Path) -> None:
    """No history: change is unknown and the drawdown lower bound (0) is unknown: skipped."""
    rules = _compiled(tmp_path)
    decisions = decide(rules, _desk("750", "600"), {}, at(3600))
    assert decisions.changed == {}
    assert sorted(skip.rule for skip in decisions.skipped) == ["dd", "margin-jump"]


def test_a_lower_bound_trips_but_never_clears(tmp_path: Path) -> None:
    """A 10-minute history in a 1 h window: a fall of 0.3 fires; a recovery does not
    resolve until the history covers the window."""
    rules = [r for r in _compiled(tmp_path) if r.rule.name == "dd"]
    history = {"desk-1": series_of(_every(15, 600, equity="1000"))}
    first = decide(rules, _desk("700", "100"), {}, at(615), history=history)
    alerts = dict(first.changed)
    assert [(a.state, a.severity) for a in alerts.values()] == [(State.FIRING, "critical")]
    calm = decide(rules, _desk("1000", "100"), alerts, at(630), history=history)
    assert calm.changed == {} and [s.rule for s in calm.skipped] == ["dd"]
    covered = {"desk-1": series_of(_every(15, 3600, equity="1000"))}
    resolved = decide(rules, _desk("1000", "100"), alerts, at(3615), history=covered)
    assert [a.state for a in resolved.changed.values()] == [State.RESOLVED]


def test_a_gap_neither_trips_nor_resolves_a_change_alert(tmp_path: Path) -> None:
    """A firing change alert stays as it is while the point 15 minutes back is missing."""
    rules = [r for r in _compiled(tmp_path) if r.rule.name == "margin-jump"]
    full = {"desk-1": series_of(_every(15, 900))}
    fired = decide(rules, _desk("1000", "600"), {}, at(900), history=full)
    alerts = dict(fired.changed)
    key = AlertKey("margin-jump", "desk-1", "")
    assert alerts[key].state is State.FIRING
    gap = {"desk-1": series_of([*_every(15, 100), *_every(15, 1200, start=1000)])}
    later = decide(rules, _desk("1000", "300"), alerts, at(1200), history=gap)
    assert later.changed == {} and [s.rule for s in later.skipped] == ["margin-jump"]
