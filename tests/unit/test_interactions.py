"""The pure side of Slack clicks and silence notices: decide, acknowledgements, stages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from riskwatch.core.evaluate import Decisions, compile_rules
from riskwatch.core.history import Point
from riskwatch.core.interactions import (
    ACK,
    SILENCE_1H,
    SILENCE_4H,
    UNSILENCE,
    Acknowledgement,
    Click,
    Verdict,
    acknowledged,
    decide,
    in_force,
    mention,
)
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.rules import Rule
from riskwatch.core.silences import Silence, Stage, due_stages, exact, silence_notices
from riskwatch.service.interactions import nearest, status_text

NOW = datetime(2026, 1, 5, 14, 2, tzinfo=UTC)
FIRED = NOW - timedelta(minutes=5)
KEY = AlertKey("eth*margin", "desk-1", "ETH:PERP-USDT")
ALERT = Alert(KEY, State.FIRING, "warning", "Bybit", "maint_margin_ratio", Decimal("0.6"),
              Decimal("0.5"), FIRED, firing_since=FIRED, thread="parent")


def _click(action: str, user: str = "U0OPS", since: datetime = FIRED) -> Click:
    return Click(user, "ops", action, "a" * 24, int(since.timestamp()), "C0RISK",
                 "1700000000.000001", "1700000100.000001")


def _ack(at: datetime = NOW) -> Acknowledgement:
    return Acknowledgement(KEY, FIRED, "slack:<@U0OPS|ops>", at, "warning")


OWN = Silence("slack-1", exact(KEY.rule), exact(KEY.account), exact(KEY.symbol),
              NOW - timedelta(minutes=1), NOW + timedelta(hours=1), "", NOW, "slack:<@U0OPS|ops>")
WIDE = replace(OWN, id="wide", rule="*", account=None, symbol=None)


@pytest.mark.parametrize(("click", "alert", "silences", "acks", "verdict"), [
    (_click(ACK, user="U0NOPE"), ALERT, [], [], Verdict.REFUSED),
    (_click(SILENCE_1H, user="U0NOPE"), ALERT, [], [], Verdict.REFUSED),
    (_click(ACK), None, [], [], Verdict.UNKNOWN),
    (_click(ACK), ALERT, [], [], Verdict.ACKNOWLEDGED),
    (_click(ACK), ALERT, [], [_ack()], Verdict.ALREADY),
    (_click(ACK, since=FIRED - timedelta(hours=1)), ALERT, [], [], Verdict.STALE),
    (_click(ACK), replace(ALERT, state=State.RESOLVED), [], [], Verdict.STALE),
    (_click(SILENCE_1H), ALERT, [], [], Verdict.SILENCED),
    (_click(SILENCE_4H), ALERT, [], [], Verdict.SILENCED),
    (_click(UNSILENCE), ALERT, [OWN], [], Verdict.UNSILENCED),
    (_click(UNSILENCE), ALERT, [WIDE], [], Verdict.NOT_SILENCED),
    (_click(UNSILENCE), ALERT, [], [], Verdict.NOT_SILENCED),
])
def test_decide(click: Click, alert: Alert | None, silences: list[Silence],
                acks: list[Acknowledgement], verdict: Verdict) -> None:
    """Each click's verdict: operators only, acks per firing, silences of this alert."""
    outcome = decide(click, alert, {"U0OPS"}, silences, acks, NOW)
    assert outcome.verdict is verdict
    assert bool(outcome.reply) is (verdict in {Verdict.REFUSED, Verdict.UNKNOWN, Verdict.STALE,
                                               Verdict.ALREADY, Verdict.NOT_SILENCED})


def test_a_slack_silence_covers_exactly_its_alert_for_the_chosen_time() -> None:
    """The silence escapes glob characters in the key, lasts 1h or 4h, names its author."""
    silence = decide(_click(SILENCE_4H), ALERT, {"U0OPS"}, [], [], NOW).silence
    assert silence is not None and silence.ends_at - silence.starts_at == timedelta(hours=4)
    assert silence.covers(KEY) and not silence.covers(KEY._replace(rule="ethXmargin"))
    assert silence.created_by == "slack:<@U0OPS|ops>" and mention(silence.created_by) == "<@U0OPS>"
    assert mention("alice") is None and mention("slack:<@U0OPS|a>b>") is None


def test_an_escalation_clears_the_acknowledgement_and_reminders_return() -> None:
    """An ack holds for its firing; one given before the last escalation does not; while
    it holds, reminders are held back and other notices go out."""
    assert in_force(ALERT, [_ack()]) == _ack()
    assert in_force(replace(ALERT, firing_since=NOW), [_ack()]) is None
    escalated = replace(ALERT, escalated_at=NOW + timedelta(seconds=1))
    assert in_force(escalated, [_ack()]) is None
    reminder = Notice(NoticeKind.REMINDER, ALERT)
    held = acknowledged(Decisions({KEY: ALERT}, set(), [reminder]), {KEY: ALERT}, [_ack()])
    assert held.notices == [] and held.changed[KEY].acked_by == "slack:<@U0OPS|ops>"
    told = acknowledged(Decisions({KEY: escalated}, set(), [reminder]), {KEY: ALERT}, [_ack()])
    assert len(told.notices) == 1 and told.changed[KEY].acked_by == ""


END = NOW + timedelta(minutes=30)
CLI = Silence("s", "eth*", None, None, NOW - timedelta(hours=1), END, "why", NOW, "alice")


@pytest.mark.parametrize(("now", "told", "due"), [
    (NOW, set(), [Stage.CREATED]),
    (NOW, {Stage.CREATED}, []),
    (END - timedelta(minutes=10), {Stage.CREATED}, [Stage.ENDING]),
    (END - timedelta(minutes=5), set(), [Stage.CREATED, Stage.ENDING]),
    (END, {Stage.CREATED, Stage.ENDING}, [Stage.ENDED]),
    (END, set(), [Stage.CREATED, Stage.ENDING, Stage.ENDED]),
    (END, set(Stage), []),
])
def test_silence_stages(now: datetime, told: set[Stage], due: list[Stage]) -> None:
    """Made, ends soon (its last ten minutes) and ended each come due once."""
    assert due_stages(CLI, told, now) == due


@pytest.mark.parametrize(("now", "told", "kinds"), [
    (NOW, {}, [NoticeKind.SILENCED]),
    (END - timedelta(minutes=5), {}, [NoticeKind.SILENCED]),  # its end time says enough
    (END - timedelta(minutes=5), {"s": frozenset({Stage.CREATED})}, [NoticeKind.SILENCE_ENDING]),
    (END, {"s": frozenset({Stage.CREATED, Stage.ENDING})}, [NoticeKind.SILENCE_ENDED]),
    (END, {}, []),  # came and went unseen: nothing to say
])
def test_silence_notices_go_to_the_threads_of_firing_alerts_it_covers(
    now: datetime, told: dict[str, frozenset[Stage]], kinds: list[NoticeKind],
) -> None:
    """Only alerts that fire and have a thread are told; what is due is marked told."""
    alerts = {KEY: ALERT, KEY._replace(account="no-thread"): replace(ALERT, thread=None),
              KEY._replace(account="other-rule", rule="btc"): ALERT}
    notices, marked = silence_notices([CLI], told, alerts, now)
    assert [notice.kind for notice in notices] == kinds
    assert all(notice.alert.thread == "parent" and notice.silence is not None
               for notice in notices)
    assert {stage for _, stage in marked} == set(due_stages(CLI, told.get("s", ()), now))


def test_status_names_the_accounts_nearest_the_levels_they_do_not_alert_on() -> None:
    """`/riskwatch status` ranks accounts by how much of the way to an account rule's
    lowest level is left, from their newest figures; an account alerting on that rule, a
    value past the level, an unknown value and a change rule are left out."""
    margin = Rule.model_validate({"name": "margin", "scope": "account",
                                  "metric": "maint_margin_ratio",
                                  "levels": {"warning": 0.5, "critical": 0.8}})
    buffer = Rule.model_validate({"name": "buffer", "scope": "account",
                                  "metric": "liquidation_buffer", "when": "below",
                                  "levels": {"warning": 0.05}})
    jump = Rule.model_validate({"name": "jump", "scope": "account", "metric":
                                "maint_margin_ratio", "change": "15m", "levels": {"warning": 0.2}})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    d = Decimal
    points = {"a": Point(now, maint_margin_ratio=d("0.45"), liquidation_buffer=d("0.2")),
              "b": Point(now, maint_margin_ratio=d("0.25"), liquidation_buffer=d("0.06")),
              "c": Point(now, maint_margin_ratio=Decimal("0.49")),
              "d": Point(now, maint_margin_ratio=Decimal("0.7"))}
    firing = Alert(AlertKey("margin", "c", ""), State.FIRING, "warning", "X",
                   "maint_margin_ratio", Decimal("0.49"), Decimal("0.5"), now)
    found = nearest(points, compile_rules([margin, buffer, jump]), {firing.key: firing})
    assert [(n.account, n.rule, n.headroom) for n in found] == [
        ("a", "margin", d("0.1")), ("b", "buffer", d("0.2")), ("b", "margin", d("0.5")),
        ("a", "buffer", d("3"))]
    text = status_text({}, now, found)
    assert "*Nearest their levels:*" in text and "`a` `margin`" in text
    assert "10.0% of the way left" in text
