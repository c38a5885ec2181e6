"""The last pure step of a poll: updates, later observations and silences folded in as
new values, with the notice decisions made here rather than by the leverage actor."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from riskwatch.core.builtin_alerts import action_limit
from riskwatch.core.evaluate import Decisions
from riskwatch.core.finish import AlertUpdate, Tell, finish, muted, with_threads, with_updates
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.silences import Silence
from tests.helpers import at

KEY = AlertKey("lev", "desk-1", "SOL:PERP-USDT")
OTHER = AlertKey("lev", "desk-2", "SOL:PERP-USDT")


def _firing(key: AlertKey = KEY) -> Alert:
    return Alert(key=key, state=State.FIRING, severity="critical", exchange="Bybit",
                 metric="leverage", value=Decimal(25), threshold=Decimal(20), since=at(0),
                 firing_since=at(0))


def _silence(account: str) -> Silence:
    return Silence("s1", "lev", account, None, at(0), at(0) + timedelta(hours=1), "why", at(0))


def test_an_update_is_shown_in_the_polls_notice_of_its_alert() -> None:
    """An action outcome goes into the notice this poll already has for the alert."""
    alert = _firing()
    decisions = Decisions({KEY: alert}, set(), [Notice(NoticeKind.FIRING, alert)])
    acted = replace(alert, action="lowered SOL:PERP-USDT to 5x")
    result = with_updates(decisions, [AlertUpdate(acted, Tell.AS_REMINDER)])
    assert result.changed[KEY] == acted
    assert result.notices == [Notice(NoticeKind.FIRING, acted)]


def test_an_update_without_a_notice_is_told_as_its_kind_says() -> None:
    """No notice yet: an outcome is a reminder, a failed check an action-check, a quiet
    update (a decision found in the store, a confirmed call) no notice at all."""
    alert = _firing()
    empty = Decisions()
    told = {tell: with_updates(empty, [AlertUpdate(alert, tell)]).notices for tell in Tell}
    assert told[Tell.AS_REMINDER] == [Notice(NoticeKind.REMINDER, alert)]
    assert told[Tell.AS_CHECK] == [Notice(NoticeKind.ACTION_CHECK, alert)]
    assert told[Tell.QUIETLY] == []
    assert with_updates(empty, [AlertUpdate(alert)]).changed == {KEY: alert}


def test_finish_steps_the_action_limit_and_mutes_what_silences_cover() -> None:
    """The action limit is stepped after the updates; a silenced alert's notice is held."""
    first, second = _firing(), _firing(OTHER)
    decisions = Decisions({KEY: first, OTHER: second}, set(),
                          [Notice(NoticeKind.FIRING, first), Notice(NoticeKind.FIRING, second)])
    result = finish(decisions, {}, [], [action_limit(10, 10)], [_silence("desk-2")], at(5))
    kinds = [(n.kind, n.alert.key.rule, n.alert.key.account) for n in result.notices]
    assert (NoticeKind.FIRING, "lev", "desk-1") in kinds
    assert all(account != "desk-2" for _, _, account in kinds)
    assert result.changed[OTHER].muted
    assert any(rule == "action-limit" for _, rule, _ in kinds)


def test_no_step_changes_what_it_was_given() -> None:
    """Every step returns a new value: the decisions and alerts passed in stay as they were."""
    alert = _firing()
    decisions = Decisions({KEY: alert}, {OTHER}, [Notice(NoticeKind.FIRING, alert)])
    alerts = {KEY: alert, OTHER: _firing(OTHER)}
    before = copy.deepcopy((decisions, alerts))
    update = AlertUpdate(replace(alert, action="done"), Tell.AS_REMINDER)
    finished = finish(decisions, alerts, [update], [action_limit(10, 10)],
                      [_silence("desk-1")], at(5))
    threaded = with_threads(finished, {KEY: "m1"})
    muted(decisions, alerts, [_silence("desk-1")], at(5))
    assert (decisions, alerts) == before
    assert finished.changed[KEY].thread is None and threaded.changed[KEY].thread == "m1"


def test_threads_are_kept_only_for_alerts_this_poll_changed() -> None:
    """A thread id for an alert the poll did not change does not invent a change."""
    alert = _firing()
    result = with_threads(Decisions({KEY: alert}), {KEY: "m1", OTHER: "m2"})
    assert result.changed == {KEY: replace(alert, thread="m1")}
