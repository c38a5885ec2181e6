"""The alert lifecycle of SPEC §5, as tables of observations over an injected clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from riskwatch.core.lifecycle import (
    Alert,
    AlertKey,
    NoticeKind,
    Observation,
    Policy,
    State,
    Steady,
    expired,
    resolve_removed,
    step,
)
from riskwatch.core.rules import Severity
from tests.helpers import at

KEY = AlertKey("margin", "desk-1", "ETH:PERP-USDT")
LEVELS: tuple[tuple[Severity, Decimal], ...] = (("warning", Decimal("0.5")),
                                                ("critical", Decimal("0.8")))


def policy(**changes: object) -> Policy:
    """A position margin policy, with changes."""
    base = Policy(name="margin", metric="maint_margin_ratio", scope="position", levels=LEVELS)
    return replace(base, **changes)  # type: ignore[arg-type]


def run(p: Policy, values: list[tuple[float, str | None]]) -> tuple[Alert | None, list[str]]:
    """Feed (time, value) observations; return the final alert and 'kind:severity' notices."""
    alert: Alert | None = None
    notices: list[str] = []
    for seconds, value in values:
        seen = Observation(KEY, "Bybit", None if value is None else Decimal(value))
        alert, notice = step(p, alert, seen, at(seconds))
        if notice is not None:
            notices.append(f"{notice.kind.value}:{notice.alert.severity}")
    return alert, notices


def test_warning_then_critical_then_safe_sends_three_notices() -> None:
    """Firing, a severity change and the resolution each notify exactly once."""
    alert, notices = run(policy(), [(0, "0.3"), (1, "0.6"), (2, "0.6"), (3, "0.9"), (4, "0.9"),
                                    (5, "0.2"), (6, "0.2")])
    assert notices == ["firing:warning", "escalated:critical", "resolved:critical"]
    assert alert is not None and alert.state is State.RESOLVED


def test_severity_going_down_notifies_at_once() -> None:
    """Critical back to warning is a de-escalation notice."""
    _, notices = run(policy(), [(0, "0.9"), (1, "0.6")])
    assert notices == ["firing:critical", "de-escalated:warning"]


def test_pending_until_for_has_passed() -> None:
    """With for: 30s the alert waits pending, and fires only when the breach has lasted 30s."""
    p = policy(for_=timedelta(seconds=30))
    alert, notices = run(p, [(0, "0.6"), (15, "0.6")])
    assert alert is not None and alert.state is State.PENDING and notices == []
    alert, notices = run(p, [(0, "0.6"), (15, "0.6"), (30, "0.6")])
    assert alert is not None and alert.state is State.FIRING
    assert notices == ["firing:warning"]


def test_pending_breach_that_clears_goes_away_silently() -> None:
    """A breach shorter than `for` never notifies."""
    alert, notices = run(policy(for_=timedelta(seconds=30)), [(0, "0.6"), (10, "0.2")])
    assert alert is None and notices == []


def test_repeat_reminds_while_firing() -> None:
    """A firing alert reminds every `repeat`, and not more often."""
    p = policy(repeat=timedelta(minutes=10))
    _, notices = run(p, [(0, "0.6"), (300, "0.6"), (600, "0.6"), (900, "0.6"), (1200, "0.6")])
    assert notices == ["firing:warning", "reminder:warning", "reminder:warning"]


def test_repeat_zero_never_reminds() -> None:
    """repeat: 0 means one notification per firing."""
    _, notices = run(policy(repeat=timedelta(0)), [(0, "0.6"), (7200, "0.6"), (90000, "0.6")])
    assert notices == ["firing:warning"]


def test_missing_data_never_resolves() -> None:
    """Unknown values leave a firing alert firing, however long they last."""
    alert, notices = run(policy(), [(0, "0.9"), (60, None), (3000, None)])
    assert alert is not None and alert.state is State.FIRING
    assert notices == ["firing:critical"]


def test_missing_data_keeps_a_pending_timer() -> None:
    """An unknown value does not restart or cancel a pending `for` timer."""
    p = policy(for_=timedelta(seconds=30))
    alert, notices = run(p, [(0, "0.6"), (10, None), (30, "0.6")])
    assert alert is not None and alert.state is State.FIRING and notices == ["firing:warning"]


def test_hysteresis_holds_until_the_value_is_far_enough_on_the_safe_side() -> None:
    """With hysteresis 0.05 a warning at 0.5 resolves only at or below 0.45."""
    p = policy(hysteresis=Decimal("0.05"))
    alert, notices = run(p, [(0, "0.55"), (1, "0.48"), (2, "0.46")])
    assert alert is not None and alert.state is State.FIRING and notices == ["firing:warning"]
    alert, notices = run(p, [(0, "0.55"), (1, "0.48"), (2, "0.45")])
    assert notices == ["firing:warning", "resolved:warning"]


def test_hysteresis_also_holds_a_higher_severity() -> None:
    """A critical alert stays critical just under the critical level, within hysteresis."""
    p = policy(hysteresis=Decimal("0.05"))
    _, notices = run(p, [(0, "0.85"), (1, "0.78"), (2, "0.74")])
    assert notices == ["firing:critical", "de-escalated:warning"]


def test_hysteresis_does_not_lower_the_level_to_start_firing() -> None:
    """Hysteresis only delays clearing: 0.48 does not start a warning at 0.5."""
    alert, notices = run(policy(hysteresis=Decimal("0.05")), [(0, "0.48")])
    assert alert is None and notices == []


def test_keep_firing_for_delays_the_resolution() -> None:
    """keep_firing_for: the alert resolves only after the value stayed safe that long."""
    p = policy(keep_firing_for=timedelta(seconds=60))
    alert, notices = run(p, [(0, "0.6"), (10, "0.2"), (40, "0.2")])
    assert alert is not None and alert.state is State.FIRING
    _, notices = run(p, [(0, "0.6"), (10, "0.2"), (40, "0.2"), (70, "0.2")])
    assert notices == ["firing:warning", "resolved:warning"]


def test_send_resolved_false_resolves_quietly() -> None:
    """send_resolved: false changes state without a notice."""
    alert, notices = run(policy(send_resolved=False), [(0, "0.6"), (1, "0.1")])
    assert alert is not None and alert.state is State.RESOLVED and notices == ["firing:warning"]


def test_below_rules_breach_under_the_level() -> None:
    """when: below breaches at or under the level, most severe lowest."""
    p = policy(when="below", levels=(("warning", Decimal(1000)), ("critical", Decimal(500))),
               metric="equity")
    _, notices = run(p, [(0, "1500"), (1, "1000"), (2, "400"), (3, "2000")])
    assert notices == ["firing:warning", "escalated:critical", "resolved:critical"]


def test_gone_row_resolves_a_firing_alert() -> None:
    """A position missing from a fresh snapshot (closed) resolves its alert."""
    alert, _ = run(policy(), [(0, "0.9")])
    resolved, notice = step(policy(), alert, Observation(KEY, "Bybit", None, gone=True), at(5))
    assert resolved is not None and resolved.state is State.RESOLVED
    assert notice is not None and notice.kind is NoticeKind.RESOLVED
    assert "closed" in resolved.detail


def test_resolved_alert_fires_again_as_a_new_firing() -> None:
    """After a resolution, a new breach starts a new firing with a fresh start time."""
    alert, notices = run(policy(), [(0, "0.6"), (1, "0.1"), (100, "0.6")])
    assert notices == ["firing:warning", "resolved:warning", "firing:warning"]
    assert alert is not None and alert.firing_since == at(100)


def test_removed_rule_resolves_and_old_resolved_alerts_expire() -> None:
    """A rule that disappears resolves its alerts; resolved alerts are dropped after a day."""
    alert, _ = run(policy(), [(0, "0.6")])
    assert alert is not None
    resolved, notice = resolve_removed(alert, at(10))
    assert resolved is not None and notice is not None and "removed" in resolved.detail
    assert not expired(resolved, at(3600)) and expired(resolved, at(90000))


def test_firing_alert_remembers_what_it_crossed() -> None:
    """The alert carries the value and the threshold of its current severity."""
    alert, _ = run(policy(), [(0, "0.9")])
    assert alert is not None
    assert alert.value == Decimal("0.9") and alert.threshold == Decimal("0.8")
    assert alert.severity == "critical" and alert.firing_since == at(0)


def _steady_case(p: Policy, value: str, later: float) -> tuple[bool, bool]:
    """(Steady.holds, step left it untouched) for a firing warning seeing ``value``."""
    alert, _ = run(policy(), [(0, "0.6")])
    assert alert is not None and alert.state is State.FIRING
    seen = Observation(KEY, "Bybit", Decimal(value))
    stepped, notice = step(p, alert, seen, at(later))
    return Steady(p, at(later)).holds(alert, Decimal(value)), (stepped is alert and notice is None)


def test_steady_holds_exactly_when_step_would_change_nothing() -> None:
    """Steady.holds (the evaluator's shortcut) agrees with step: same value, same level,
    no reminder due -> holds; a reminder due, another value, or levels changed by a
    reload that put the same value at critical -> does not."""
    reloaded = policy(levels=(("warning", Decimal("0.4")), ("critical", Decimal("0.55"))))
    cases = [(policy(), "0.6", 60), (policy(), "0.6", 3600), (policy(), "0.61", 60),
             (reloaded, "0.6", 60)]
    results = [_steady_case(p, value, later) for p, value, later in cases]
    assert results == [(True, True), (False, False), (False, False), (False, False)]


def test_an_account_error_says_each_problem_once() -> None:
    """The same problem met several times in one poll (one per alert of the account) is
    said once in the account-error's detail."""
    from riskwatch.core.builtin_alerts import with_problems
    from riskwatch.core.snapshot import AccountProblem

    found = with_problems([], [AccountProblem("desk-1", "its numbers could not be computed")] * 3)
    [(_, observation)] = found
    assert observation.detail == "its numbers could not be computed"
