"""Leverage action decisions: table tests and properties over random inputs (SPEC §6)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.actions import COUNTED, Decision, execute, plan
from riskwatch.alerts import Alert, AlertKey, State
from riskwatch.errors import TreadClientError, TreadError, TreadServerError, TreadUnreachable
from riskwatch.rules import Action
from riskwatch.silences import Silence
from riskwatch.snapshot import Snapshot
from tests.helpers import T0, account, at, position

ACTION = Action(set_leverage=Decimal(5), at="critical")


def _alert(symbol: str = "SOL:PERP-USDT", severity: str = "critical",
           state: State = State.FIRING, acted: str = "", rule: str = "lev") -> Alert:
    return Alert(key=AlertKey(rule, "desk-1", symbol), state=state,
                 severity=severity, exchange="Bybit", metric="leverage",  # type: ignore[arg-type]
                 value=None, threshold=None, since=T0, firing_since=T0, action=acted)


def _snapshot(leverage: str | None) -> Snapshot:
    row = position("SOL:PERP-USDT", leverage=leverage)
    return Snapshot("cached", T0, (replace(account("desk-1", row), id="uuid-1"),))


def _plan(alert: Alert, leverage: str | None = "25", mode: str = "enforce", used: int = 0,
          limit: int = 10, silences: list[Silence] | None = None) -> list[Decision]:
    return plan([alert], {"lev": ACTION}, _snapshot(leverage), mode,  # type: ignore[arg-type]
                silences or [], used, limit, at(1))


def test_enforce_calls_with_the_account_id_and_pair() -> None:
    """A critical firing with 25x and a target of 5x is a call for uuid-1's SOL:PERP-USDT."""
    [decision] = _plan(_alert())
    assert decision.outcome == "call" and decision.account_id == "uuid-1"
    assert (decision.pair, decision.from_leverage, decision.to_leverage) == (
        "SOL:PERP-USDT", Decimal(25), Decimal(5))


def test_dry_run_reports_what_it_would_do() -> None:
    """dry-run: no call, and the summary says what would be done."""
    [decision] = _plan(_alert(), mode="dry-run")
    assert decision.outcome == "dry-run"
    assert decision.summary().startswith("would lower SOL:PERP-USDT on desk-1 from 25x to 5x")


def test_reasons_to_skip() -> None:
    """Off, silenced, unknown or already-low leverage and the hourly cap are skips with reasons."""
    silence = Silence("s", "lev", None, None, T0, at(60), "x", T0)
    cases = {
        "actions are off": _plan(_alert(), mode="off"),
        "silenced": _plan(_alert(), silences=[silence]),
        "current leverage is unknown": _plan(_alert(), leverage=None),
        "not below the current 5x": _plan(_alert(), leverage="5"),
        "not below the current 3x": _plan(_alert(), leverage="3"),
        "hourly limit": _plan(_alert(), used=10),
    }
    for reason, [decision] in cases.items():
        assert decision.outcome == "skipped" and reason in decision.detail, (reason, decision)


def test_only_at_the_action_level_and_once_per_firing() -> None:
    """Warning does not trigger a critical action; an alert already decided is not again."""
    assert _plan(_alert(severity="warning")) == []
    assert _plan(_alert(acted="lowered ...")) == []
    assert _plan(_alert(state=State.PENDING)) == []


class _Api:
    def __init__(self, errors: list[TreadError]) -> None:
        self.errors = errors
        self.calls = 0

    async def set_leverage(self, leverage: str, pair: str, account_ids: list[str]) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"ok {leverage} {pair} {account_ids}"


def test_execute_retries_5xx_three_times_and_not_400() -> None:
    """5xx and network errors: three retries; a 400/422 fails at once with the API's message."""
    [decision] = _plan(_alert())
    api = _Api([TreadServerError("HTTP 502"), TreadUnreachable("reset")])
    done = asyncio.run(execute(decision, api, backoff=0))
    assert done.outcome == "acted" and api.calls == 3
    assert done.detail == "ok 5 SOL:PERP-USDT ['uuid-1']"
    api = _Api([TreadServerError("HTTP 500")] * 10)
    done = asyncio.run(execute(decision, api, backoff=0))
    assert done.outcome == "failed" and api.calls == 4
    api = _Api([TreadClientError("HTTP 422 (Failed to set leverage)", 422)])
    done = asyncio.run(execute(decision, api, backoff=0))
    assert done.outcome == "failed" and api.calls == 1 and "Failed to set leverage" in done.detail


leverages = st.one_of(st.none(), st.decimals(min_value=1, max_value=125, places=1))
modes = st.sampled_from(["off", "dry-run", "enforce"])


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(leverages, st.sampled_from(["info", "warning", "critical"]),
                            st.booleans()), min_size=0, max_size=12),
    target=st.decimals(min_value=1, max_value=50, places=1),
    at_level=st.sampled_from(["warning", "critical"]),
    mode=modes, used=st.integers(0, 12), limit=st.integers(0, 12),
    answers=st.lists(st.sampled_from(["ok", "500", "422", "down"]), max_size=30),
)
def test_properties_of_every_decision(
    rows: list[tuple[Decimal | None, str, bool]], target: Decimal, at_level: str, mode: str,
    used: int, limit: int, answers: list[str],
) -> None:
    """No call raises leverage, no call outside enforce, the cap holds, every decision is logged."""
    action = Action(set_leverage=target, at=at_level)  # type: ignore[arg-type]
    assets = tuple(position(f"P{i}:PERP-USDT", leverage=None if lev is None else str(lev))
                   for i, (lev, _, _) in enumerate(rows))
    snap = Snapshot("cached", T0, (replace(account("desk-1", *assets), id="uuid-1"),))
    alerts = [_alert(f"P{i}:PERP-USDT", severity, acted="" if fresh else "done")
              for i, (_, severity, fresh) in enumerate(rows)]
    decisions = plan(alerts, {"lev": action}, snap, mode, [], used, limit,  # type: ignore[arg-type]
                     at(1))
    script = {"ok": None, "500": TreadServerError("HTTP 500"), "down": TreadUnreachable("x"),
              "422": TreadClientError("HTTP 422", 422)}
    api = _Api([script[a] for a in answers if script[a] is not None])  # type: ignore[misc]
    audit = [asyncio.run(execute(d, api, backoff=0)) if d.outcome == "call" else d
             for d in decisions]
    calls = [d for d in decisions if d.outcome == "call"]
    for decision in calls:
        assert mode == "enforce"
        assert decision.from_leverage is not None and decision.to_leverage < decision.from_leverage
    assert used + sum(1 for d in decisions if d.outcome in {"call", "dry-run"}) <= max(used, limit)
    due_alerts = [a for a in alerts if not a.action and
                  ["info", "warning", "critical"].index(a.severity)
                  >= ["info", "warning", "critical"].index(at_level)]
    assert len(audit) == len(due_alerts)  # every due alert has exactly one logged decision
    assert all(d.outcome in {"acted", "failed", "dry-run", "skipped"} for d in audit)
    assert {d.outcome for d in audit} <= COUNTED | {"skipped"}
