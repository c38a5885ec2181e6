"""Leverage action decisions: table tests and properties over random inputs (SPEC §6)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from riskwatch.config.settings import Settings, load_settings
from riskwatch.core.evaluate import CompiledRule, compile_rules, decide
from riskwatch.core.finish import finish
from riskwatch.core.leverage import (
    COUNTED,
    Decision,
    leverage_after_call,
    plan,
    still_high,
)
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.core.rules import Action, Rule
from riskwatch.core.silences import Silence
from riskwatch.core.snapshot import Snapshot
from riskwatch.errors import (
    StoreError,
    TreadBadResponse,
    TreadClientError,
    TreadError,
    TreadServerError,
    TreadUnreachable,
)
from riskwatch.service.leverage_actor import Actor
from riskwatch.service.leverage_call import execute
from riskwatch.service.telemetry import Telemetry
from riskwatch.store import SqliteStore, Store
from tests.helpers import DEEP, T0, account, at, position, scratch_folder

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


def test_an_ok_answer_that_cannot_be_read_is_unknown_and_not_retried() -> None:
    """A 2xx whose body cannot be read may have worked: one call, outcome unknown."""
    [decision] = _plan(_alert())
    api = _Api([TreadBadResponse("POST /api/set_leverage/: the answer is not JSON")])
    done = asyncio.run(execute(decision, api, backoff=0))
    assert (done.outcome, api.calls) == ("unknown", 1)
    assert done.summary() == (
        "called set_leverage to lower SOL:PERP-USDT on desk-1 from 25x to 5x; outcome "
        "unknown, not retried: POST /api/set_leverage/: the answer is not JSON")


def test_a_call_whose_outcome_was_never_recorded_says_so() -> None:
    """A row left at calling reads as a call made with no outcome recorded."""
    [decision] = _plan(_alert())
    assert replace(decision, outcome="calling").summary().endswith(
        "from 25x to 5x; no outcome recorded (riskwatch stopped, or its store failed, "
        "during or right after the call)")


def test_leverage_after_call_reads_only_newer_data() -> None:
    """The check waits for data taken after the data the call was decided on."""
    waiting = replace(_alert(), verify_after=T0)
    assert leverage_after_call(_alert(), _snapshot("25"), at(5)) is None  # nothing to check
    assert leverage_after_call(waiting, _snapshot("25"), at(5)) is None  # taken at T0: not newer
    newer = replace(_snapshot("25"), accounts=tuple(
        replace(a, taken_at=at(2)) for a in _snapshot("25").accounts))
    assert leverage_after_call(waiting, newer, at(5)) == Decimal(25)
    assert leverage_after_call(waiting, None, at(5)) is None
    assert still_high("lowered X", Decimal(25)) == (
        "lowered X; set_leverage answered OK but leverage is still 25x")


leverages = st.one_of(st.none(), st.decimals(min_value=1, max_value=125, places=1))
modes = st.sampled_from(["off", "dry-run", "enforce"])


@pytest.mark.no_cover  # a property of many runs: the table tests above measure coverage
@settings(max_examples=1_000 if DEEP else 100, deadline=None)
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
    action = Action(set_leverage=target, at=at_level)
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


# ------------------------------------------------------------------ two replicas, faults everywhere

LEVER_RULE = {"name": "lev", "scope": "position", "metric": "leverage",
              "levels": {"warning": 10, "critical": 20}}
ANSWERS = ["ok", "ok-unapplied", "500", "down", "422", "recursion", "bad-json", "value-error"]


class _FaultyStore(SqliteStore):
    """A real SQLite store whose reads and writes fail when the shared script says so."""

    def __init__(self, path: Path, faults: _Faults) -> None:
        super().__init__(path)
        self.faults = faults

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.faults.next_store():
            raise StoreError("state store: disk I/O error (injected)")
        return super()._query(sql, args)

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]],
               fence: int | None = None) -> None:
        if self.faults.next_store():
            raise StoreError("state store: disk I/O error (injected)")
        super()._write(statements, fence)


@functools.cache
def _settings(mode: str, limit: int) -> Settings:
    """Settings with these actions and cap, made once: building them reads the environment."""
    return load_settings(actions=mode, max_actions_per_hour=limit)


class _Faults:
    """What goes wrong, step by step, shared by both replicas and the fake API."""

    def __init__(self, store: set[int], answers: list[str], ids: list[bool]) -> None:
        self.store, self.answers, self.ids = store, list(answers), list(ids)
        self.store_calls = 0
        self.armed = False  # set up and final checks run without faults

    def next_store(self) -> bool:
        """Does this read or write of the store fail? (the n-th ones in ``store`` do)"""
        if not self.armed:
            return False
        self.store_calls += 1
        return self.store_calls in self.store

    def next_answer(self) -> str:
        return self.answers.pop(0) if self.answers else "ok"

    def next_ids_fail(self) -> bool:
        return bool(self.ids) and self.ids.pop(0)


class _Exchange:
    """The fake API: positions with a leverage, set_leverage, account ids, and a witness that
    reads the audit log (without faults) as each call arrives."""

    def __init__(self, leverages: dict[str, Decimal], opens: dict[str, int], faults: _Faults,
                 audit: SqliteStore) -> None:
        self.leverages = leverages
        self.opens = opens  # the poll at which each position is opened
        self.faults = faults
        self.audit = audit
        self.poll = 0
        self.calls: list[tuple[int, str, Decimal, Decimal]] = []  # poll, pair, from, to
        self.unaudited: list[str] = []

    async def set_leverage(self, leverage: str, pair: str, account_ids: list[str]) -> str:
        self.calls.append((self.poll, pair, self.leverages[pair], Decimal(leverage)))
        if not any(row.pair == pair and row.outcome == "calling" for row in self.audit.actions()):
            self.unaudited.append(pair)
        answer = self.faults.next_answer()
        errors: dict[str, Exception] = {
            "500": TreadServerError("HTTP 500"), "down": TreadUnreachable("reset"),
            "422": TreadClientError("HTTP 422 (Failed to set leverage)", 422),
            "recursion": RecursionError("maximum recursion depth exceeded"),
            "bad-json": TreadBadResponse("POST /api/set_leverage/: not JSON"),
            "value-error": ValueError("Expecting value: line 1 column 1"),
        }
        if answer in errors:
            raise errors[answer]
        if answer == "ok":
            self.leverages[pair] = Decimal(leverage)
        return "Leverage changed successfully."

    async def account_ids(self) -> dict[str, str]:
        if self.faults.next_ids_fail():
            raise RecursionError("maximum recursion depth exceeded")
        return {"desk-1": "uuid-1"}

    def snapshot(self, now: datetime, with_id: bool) -> Snapshot:
        rows = [position(pair, leverage=str(lev)) for pair, lev in self.leverages.items()
                if self.opens[pair] <= self.poll]
        desk = replace(account("desk-1", *rows, taken_at=now), id="uuid-1" if with_id else None)
        return Snapshot("cached", now, (desk,))


class _Replica:
    """What one daemon holds: its actor and its alerts in memory."""

    def __init__(self, settings: Settings, store: Store, api: _Exchange) -> None:
        self.store = store
        self.actor = Actor(settings, store, api, Telemetry(), backoff=0)  # type: ignore[arg-type]
        self.alerts: dict[AlertKey, Alert] = {}
        self.must_reload = True

    async def poll(self, rules: list[CompiledRule], snapshot: Snapshot, now: datetime,
                   crash: bool) -> None:
        """One poll as the daemon runs it: decide, act, save. A store error aborts it and the
        alerts are read again from the store; a crash after acting (``crash``) aborts it and
        the daemon goes on with the alerts it has in memory."""
        try:
            if self.must_reload:  # taking the lead, or back after a store error
                self.alerts = self.store.load_alerts()
                self.must_reload = False
            decided = decide(rules, snapshot, self.alerts, now)
            acted = await self.actor.act(rules, decided, self.alerts, snapshot, [], now)
            later = [acted.limit] if acted.limit is not None else []
            decisions = finish(decided, self.alerts, acted.updates, later, [], now)
            if crash:
                return  # as if a later step raised: "poll crashed", nothing saved
            self.store.save_poll(decisions.changed, decisions.dropped, [], now)
        except StoreError:
            self.must_reload = True
            return
        for key in decisions.dropped:
            self.alerts.pop(key, None)
        self.alerts.update(decisions.changed)


def _case(**changes: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """An explicit example: one position at 25x, target 5x, enforce, cap 5, no faults."""
    base: dict[str, Any] = {
        "leverages": [Decimal(25)], "target": Decimal(5), "at_level": "critical",
        "mode": "enforce", "used": 0, "limit": 5, "leaders": [0, 0, 0], "opened": [],
        "crashes": set(), "answers": [], "store_faults": set(), "id_faults": [],
        "with_id": True}
    decorate: Callable[[Callable[..., None]], Callable[..., None]] = example(
        **{**base, **changes})
    return decorate


# store operations of replica 0's first poll: 1 load alerts, 2 look up the due alert,
# 3 read the last hour of the audit log, 4 write the intent, 5 write the outcome, 6 save
@pytest.mark.no_cover  # a property of many runs: the table tests above measure coverage
@_case(crashes={0}, answers=["ok-unapplied"])  # a later step crashed: memory is stale
@_case(crashes={0}, answers=["recursion"], leaders=[0, 1, 0])
@_case(store_faults={5, 6}, answers=["recursion"], leaders=[0, 1, 0])  # outcome, save fail
@_case(store_faults={4}, answers=["down", "ok"])  # no intent written: no call, later one
@_case(answers=["bad-json", "value-error"], leverages=[Decimal(25), Decimal(30)])
@_case(answers=["recursion"], leverages=[Decimal(25), Decimal(30)], opened=[0, 1], limit=1)
@pytest.mark.timeout(180)  # generous: a loaded machine, and coverage tracing every step
@settings(max_examples=1_000 if DEEP else 100, deadline=None)
@given(
    leverages=st.lists(st.decimals(min_value=1, max_value=60, places=0), min_size=1,
                       max_size=5),
    target=st.decimals(min_value=1, max_value=30, places=0),
    at_level=st.sampled_from(["warning", "critical"]),
    mode=st.sampled_from(["off", "dry-run", "enforce", "enforce"]),
    used=st.integers(0, 6), limit=st.integers(0, 6),
    leaders=st.lists(st.integers(0, 1), min_size=1, max_size=10),
    opened=st.lists(st.integers(0, 3), max_size=5),
    crashes=st.sets(st.integers(0, 4), max_size=3),
    answers=st.lists(st.sampled_from(ANSWERS), max_size=30),
    store_faults=st.sets(st.integers(1, 60), max_size=4),
    id_faults=st.lists(st.booleans(), max_size=5),
    with_id=st.booleans(),
)
def test_two_replicas_with_faults_at_every_step_never_run_away(
    leverages: list[Decimal], target: Decimal, at_level: str, mode: str, used: int,
    limit: int, leaders: list[int], opened: list[int], crashes: set[int],
    answers: list[str], store_faults: set[int], id_faults: list[bool], with_id: bool,
) -> None:
    """Network errors, unreadable answers, store failures and crashes anywhere, two replicas
    sharing one store: no call raises leverage or happens outside enforce, at most one per
    firing, never over the cap, each call's audit row written before it, every decision
    audited."""
    rule = Rule.model_validate({**LEVER_RULE, "action": {"set_leverage": int(target),
                                                         "at": at_level}})
    faults = _Faults(store_faults, answers, id_faults)
    pairs = [f"P{i}:PERP-USDT" for i in range(len(leverages))]
    opens = {pair: opened[i] if i < len(opened) else 0 for i, pair in enumerate(pairs)}
    with scratch_folder() as folder:
        path = Path(folder) / "state.db"
        clean = SqliteStore(path)
        clean.record_actions([Decision(T0, "old", "desk-0", "Bybit", "X:PERP-USDT", Decimal(9),
                                       Decimal(3), "enforce", "acted")] * used)
        api = _Exchange(dict(zip(pairs, leverages, strict=True)), opens, faults, clean)
        config = _settings(mode, limit)
        replicas = [_Replica(config, _FaultyStore(path, faults), api) for _ in range(2)]
        asyncio.run(_run_polls(replicas, compile_rules([rule]), api, leaders, crashes, with_id))
        audit, stored = clean.actions(), clean.load_alerts()
        for store in (clean, *(replica.store for replica in replicas)):
            store.close()
    if mode != "enforce":
        assert api.calls == []
    for _, pair, before, after in api.calls:
        assert after < before and after == target, (pair, before, after)
    polls_with_call: dict[str, set[int]] = {}
    for poll, pair, _, _ in api.calls:
        polls_with_call.setdefault(pair, set()).add(poll)
    assert all(len(polls) == 1 for polls in polls_with_call.values()), polls_with_call
    assert api.unaudited == []
    assert sum(1 for row in audit if row.outcome != "skipped") <= max(used, limit)
    _every_decision_audited(audit, [stored, *(replica.alerts for replica in replicas)])


async def _run_polls(replicas: list[_Replica], rules: list[CompiledRule], api: _Exchange,
                     leaders: list[int], crashes: set[int], with_id: bool) -> None:
    """One poll a minute by the leader of the moment; a new leader reads the store first."""
    api.faults.armed = True
    leader = None
    for index, number in enumerate(leaders):
        now = at(60 * (index + 1))
        api.poll = index
        if number != leader:
            replicas[number].must_reload = True
            leader = number
        await replicas[number].poll(rules, api.snapshot(now, with_id), now, index in crashes)
    api.faults.armed = False


def _every_decision_audited(audit: list[Decision],
                            holders: list[dict[AlertKey, Alert]]) -> None:
    """Every alert marked as decided, in the store or in a replica, has its audit row."""
    audited = {(row.rule, row.account, row.pair) for row in audit}
    for alerts in holders:
        decided = [key for key, alert in alerts.items() if alert.action]
        assert all(tuple(key) in audited for key in decided), (decided, audited)
    for row in audit:
        if row.audit_id is not None:  # a call: its outcome, or still "calling" if unrecorded
            assert row.outcome in {"calling", "acted", "failed", "unknown"}
