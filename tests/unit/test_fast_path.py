"""The fast evaluation gives the same decisions as a plain one that steps every row (issue 6)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskwatch.core import lifecycle as lifecycle
from riskwatch.core.evaluate import CompiledRule, compile_rules, decide, labelled_rows
from riskwatch.core.lifecycle import Alert, AlertKey, Observation
from riskwatch.core.measures import AccountFigures
from riskwatch.core.rules import Rule
from riskwatch.core.snapshot import Account, Asset, Snapshot
from tests.helpers import DEEP, T0, at

numbers = st.one_of(st.none(), st.decimals(min_value=-10, max_value=200, places=2))


# Strategies are built once, here: a strategy built inside a draw is validated again on
# every draw, which cost more than the evaluation under test.
SYMBOLS = st.sampled_from(["BTC:PERP-USDT", "ETH:PERP-USDT", "USDT", "SOL"])
ASSET_TYPES: st.SearchStrategy[Literal["token", "position"]] = st.sampled_from(
    ["token", "position"])
MARKET_TYPES = st.sampled_from(["spot", "perp", "unified", None])
SHARES = st.one_of(st.none(), st.decimals(0, 1, places=3))
EXCHANGES = st.sampled_from(["Bybit", "OKX"])


@st.composite
def assets(draw: st.DrawFn) -> Asset:
    """A random row."""
    return Asset(
        symbol=draw(SYMBOLS), asset_type=draw(ASSET_TYPES), market_type=draw(MARKET_TYPES),
        notional=draw(numbers), maint_margin=draw(numbers), initial_margin=draw(numbers),
        margin_balance=draw(numbers), leverage=draw(numbers),
        notional_pct_total=draw(SHARES), unrealized_profit=draw(numbers),
    )


ROWS = st.lists(assets(), max_size=6)
ACCOUNT_COUNTS = st.integers(1, 3)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """A random snapshot of up to three accounts."""
    accounts = tuple(
        Account(name=f"desk-{i}", exchange=draw(EXCHANGES), assets=tuple(draw(ROWS)),
                taken_at=T0, equity=draw(numbers), complete=draw(st.booleans()))
        for i in range(draw(ACCOUNT_COUNTS))
    )
    return Snapshot("cached", T0, accounts)


METRICS = {"position": ["maint_margin_ratio", "leverage", "notional", "notional_pct_total",
                        "roe", "unrealized_pnl"],
           "asset": ["notional", "notional_pct_total"],
           "account": ["maint_margin_ratio", "effective_leverage", "equity", "gross_notional"]}


@st.composite
def rules(draw: st.DrawFn) -> list[CompiledRule]:
    """A few random valid rules."""
    made = []
    for index in range(draw(st.integers(1, 4))):
        scope = draw(st.sampled_from(["position", "asset", "account"]))
        low = draw(st.decimals(0, 50, places=1))
        high = low + draw(st.decimals(Decimal("0.1"), 50, places=1))
        when = draw(st.sampled_from(["above", "below"]))
        levels = {"warning": low, "critical": high} if when == "above" else {
            "warning": high, "critical": low}
        globs = [None, {"exchange": ["By*"]}, {"account": ["desk-1", "desk-2"]}]
        if scope != "account":
            globs += [{"symbol": ["*PERP*"]}, {"market_type": ["perp", "unified"]},
                      {"symbol": ["ETH*", "USDT"], "exchange": ["OKX"]}]
        match = draw(st.sampled_from(globs))
        made.append(Rule.model_validate({
            "name": f"r{index}", "scope": scope, "metric": draw(st.sampled_from(METRICS[scope])),
            "when": when, "levels": levels, "match": match,
            "hysteresis": draw(st.sampled_from([0, Decimal("0.5")])),
            "for": draw(st.sampled_from([0, 30])),
        }))
    return compile_rules(made)


def plain_decide(compiled: list[CompiledRule], snapshot: Snapshot,
                 alerts: dict[AlertKey, Alert], now: object) -> dict[AlertKey, Alert | None]:
    """Step every row of every rule, the obvious way; the alert states that result."""
    result: dict[AlertKey, Alert | None] = dict(alerts)
    seen = set()
    for account in snapshot.accounts:
        figures = AccountFigures.of(account)
        all_rows, positions = labelled_rows(account)
        for rule in compiled:
            if not rule.fits_account(account):
                continue
            if rule.account_metric is not None:
                observed = [(AlertKey(rule.rule.name, account.name),
                             rule.account_metric(figures, now))]  # type: ignore[arg-type]
            else:
                rows = positions if rule.rule.scope == "position" else all_rows
                observed = [(AlertKey(rule.rule.name, account.name, label),
                             rule.row_metric(figures, asset))  # type: ignore[misc]
                            for asset, label in rows if rule.fits_asset(asset)]
            for key, value in observed:
                seen.add(key)
                new, _ = lifecycle.step(rule.policy, result.get(key),
                                        Observation(key, account.exchange, value), now)  # type: ignore[arg-type]
                result[key] = new
    fresh = {a.name: a for a in snapshot.accounts}
    names = {r.rule.name: r.policy for r in compiled}
    for key, alert in alerts.items():
        found = fresh.get(key.account)
        if (key in seen or found is None or not found.complete or key.rule not in names
                or not alert.active):  # a resolved alert stays listed, row or no row
            continue
        new, _ = lifecycle.step(names[key.rule], alert,
                                Observation(key, alert.exchange, None, gone=True), now)  # type: ignore[arg-type]
        result[key] = new
    return result


@pytest.mark.no_cover  # a property of many runs: the table tests above measure coverage
@pytest.mark.timeout(180)  # generous: a loaded machine, and coverage tracing every step
@settings(max_examples=1_000 if DEEP else 60, deadline=None)
@given(compiled=rules(), first=snapshots(), second=snapshots())
def test_fast_decisions_equal_plain_decisions(
    compiled: list[CompiledRule], first: Snapshot, second: Snapshot,
) -> None:
    """Over four polls, the fast path and stepping every row leave the same alert states."""
    state: dict[AlertKey, Alert] = {}
    # the second snapshot again (firing alerts hold), then two hours on (reminders fall due)
    polls = ((at(0), first), (at(60), second), (at(120), second), (at(7320), second))
    for now, snapshot in polls:
        expected = {k: v for k, v in plain_decide(compiled, snapshot, state, now).items()
                    if v is not None}
        decisions = decide(compiled, snapshot, state, now)
        fast = {**state, **decisions.changed}
        for key in decisions.dropped:
            fast.pop(key, None)
        assert fast == expected
        state = fast
