"""Silences: what they match, what they hold back, and what happens when they end."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.silences import Silence, apply, silenced
from tests.helpers import at

KEY = AlertKey("eth-margin", "desk-1", "ETH:PERP-USDT")


def _silence(rule: str = "eth-*", account: str | None = None, symbol: str | None = None,
             hours: float = 1) -> Silence:
    return Silence("s1", rule, account, symbol, at(0), at(0) + timedelta(hours=hours), "why",
                   at(0))


def _firing(key: AlertKey = KEY) -> Alert:
    return Alert(key=key, state=State.FIRING, severity="critical", exchange="Bybit",
                 metric="maint_margin_ratio", value=None, threshold=None, since=at(0),
                 firing_since=at(0))


def test_silence_matches_by_globs_and_time() -> None:
    """Rule, account and symbol are globs; a silence works from its start until its end."""
    assert silenced(KEY, [_silence()], at(10))
    assert silenced(KEY, [_silence(account="desk-*", symbol="ETH:*")], at(10))
    assert not silenced(KEY, [_silence(account="desk-2")], at(10))
    assert not silenced(KEY, [_silence("btc-*")], at(10))
    assert not silenced(KEY, [_silence()], at(3600))  # ended exactly on time
    assert not silenced(KEY, [_silence()], at(-1))


def test_silenced_notice_is_held_back_and_the_alert_marked() -> None:
    """A muted notice is not sent; its alert still changes state and is marked muted."""
    alert = _firing()
    changed = {KEY: alert}
    marked, send = apply([Notice(NoticeKind.FIRING, alert)], {}, changed, [_silence()], at(5))
    assert send == [] and marked[KEY].muted and marked[KEY].state is State.FIRING
    assert not changed[KEY].muted  # a new value: what it was given stays as it was


def test_firing_alert_is_announced_once_when_its_silence_ends() -> None:
    """After the silence, a still-firing muted alert sends one reminder, then nothing."""
    alerts = {KEY: replace(_firing(), muted=True)}
    changed: dict[AlertKey, Alert] = {}
    marked, during = apply([], alerts, changed, [_silence()], at(1800))
    assert during == [] and marked == {}
    marked, after = apply([], alerts, changed, [_silence()], at(3600))
    [notice] = after
    assert notice.kind is NoticeKind.REMINDER and not marked[KEY].muted
    _, again = apply([], {KEY: marked[KEY]}, {}, [_silence()], at(3700))
    assert again == []


def test_unsilenced_alerts_pass_through() -> None:
    """Notices of alerts no silence matches are sent unchanged."""
    other = AlertKey("btc-lev", "desk-1", "BTC:PERP-USDT")
    notice = Notice(NoticeKind.FIRING, _firing(other))
    assert apply([notice], {}, {other: notice.alert}, [_silence()], at(5))[1] == [notice]
