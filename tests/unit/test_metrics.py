"""Every metric of SPEC §3, on the reference payloads and on hand-made rows, unknowns included."""

from __future__ import annotations

from decimal import Decimal

import pytest

from riskwatch.core.measures import (
    ACCOUNT_METRICS,
    ALL_METRICS,
    INFINITY,
    ROW_METRICS,
    AccountFigures,
    ratio,
    scopes_of,
)
from riskwatch.core.snapshot import Asset
from riskwatch.source.adapters import from_cached, from_live
from tests.helpers import T0, account, at, payload, position, token

D = Decimal


def _live() -> dict[str, AccountFigures]:
    snapshot = from_live(payload("reference_live.json"), T0)
    return {a.name: AccountFigures.of(a) for a in snapshot.accounts}


def _cached() -> dict[str, AccountFigures]:
    snapshot = from_cached(payload("reference_cached.json"), T0)
    return {a.name: AccountFigures.of(a) for a in snapshot.accounts}


def test_there_are_fourteen_metric_definitions() -> None:
    """SPEC §3 lists fourteen metric/scope rows; the tables hold exactly those."""
    rows = sum(len(scopes_of(name)) for name in ALL_METRICS)
    assert len(ALL_METRICS) == 13  # the 14 SPEC rows name 13 metrics (one row has 2 scopes)
    assert rows == 18  # every scope each SPEC row lists
    assert set(ACCOUNT_METRICS) == {"maint_margin_ratio", "initial_margin_ratio",
                                    "effective_leverage", "gross_notional", "unrealized_pnl",
                                    "equity", "data_age", "liquidation_buffer"}
    assert scopes_of("drawdown") == ("account",)


def test_margin_balance_fallback_on_live_reference() -> None:
    """Live: position margin_balance first; else non-spot token margin balances."""
    figures = _live()
    assert figures["AccountABC"].margin_balance == D("298.90609459")  # from the position row
    assert figures["Account123"].margin_balance == D("1425.08678423")  # from the perp USDT token
    # no reported equity on the live endpoint: equity falls back to the margin balance
    assert figures["AccountABC"].equity == D("298.90609459")


def test_margin_balance_fallback_on_cached_reference() -> None:
    """Cached: the position's margin balance, else the reported equity."""
    figures = _cached()
    assert figures["acc456"].margin_balance == D("169685.78635621")
    assert figures["acc456"].equity == D("267387.34548772")
    assert figures["acc123"].margin_balance == D(0)  # no rows at all: the equity "0"


def test_margin_balance_skips_spot_tokens_and_takes_smallest_position_value() -> None:
    """Spot tokens are not margin; several position values: the cautious (smallest) one."""
    spot_only = account("a", token("BTC", "spot", margin_balance="5"))
    assert AccountFigures.of(spot_only).margin_balance is None
    two = account("b", position("A", margin_balance="100"), position("B", margin_balance="90"))
    assert AccountFigures.of(two).margin_balance == D(90)


def test_position_metrics_on_live_reference() -> None:
    """Position metrics of AccountABC's ETH position, by their SPEC definitions."""
    figures = _live()["AccountABC"]
    eth = figures.account.assets[0]
    row = {name: ROW_METRICS[name]["position"](figures, eth) for name in ROW_METRICS
           if "position" in ROW_METRICS[name]}
    assert row["maint_margin_ratio"] == D("16.90546734") / D("298.90609459")
    assert row["initial_margin_ratio"] == D("306.80066534") / D("298.90609459")
    assert row["leverage"] == D("10.0")
    assert row["notional"] == D("3051.5284")
    assert row["notional_pct_total"] == D("0.994565")  # as reported
    assert row["unrealized_pnl"] == D("24.6772")
    assert row["roe"] == D("24.6772") / D("306.80066534")


def test_position_without_margin_balance_uses_the_account_one() -> None:
    """Account123's BTC position has margin_balance null: the account's is used."""
    figures = _live()["Account123"]
    btc = figures.account.assets[1]
    value = ROW_METRICS["maint_margin_ratio"]["position"](figures, btc)
    assert value == D("2.29182693") / D("1425.08678423")


def test_account_metrics_on_live_reference() -> None:
    """Account metrics of AccountABC."""
    figures = _live()["AccountABC"]
    values = {name: metric(figures, T0) for name, metric in ACCOUNT_METRICS.items()}
    assert values["maint_margin_ratio"] == D("16.90546734") / D("298.90609459")
    assert values["gross_notional"] == D("3051.5284")
    assert values["effective_leverage"] == D("3051.5284") / D("298.90609459")
    assert values["unrealized_pnl"] == D("24.6772")
    assert values["equity"] == D("298.90609459")
    assert values["data_age"] == D(0)
    assert values["liquidation_buffer"] == (
        (D("298.90609459") - D("16.90546734")) / D("3051.5284"))


def test_liquidation_buffer_by_hand() -> None:
    """Balance 1000, maintenance 100 + 50, gross notional |4000| + |-6000|: (1000-150)/10000."""
    figures = AccountFigures.of(account(
        "a", position("A", notional="4000", maint_margin="100", margin_balance="1000"),
        position("B", notional="-6000", maint_margin="50", margin_balance="1000")))
    assert ACCOUNT_METRICS["liquidation_buffer"](figures, T0) == D("0.085")


def test_liquidation_buffer_is_negative_past_maintenance() -> None:
    """Maintenance above the balance: the account is already past it, the buffer negative."""
    figures = AccountFigures.of(account(
        "a", position("A", notional="1000", maint_margin="300", margin_balance="200")))
    assert ACCOUNT_METRICS["liquidation_buffer"](figures, T0) == D("-0.1")


@pytest.mark.parametrize("rows", [
    (position("A", notional="1000", maint_margin=None, margin_balance="200"),),  # maint unknown
    (position("A", notional=None, maint_margin="10", margin_balance="200"),),  # notional unknown
    (position("A", notional="0", maint_margin="0", margin_balance="200"),),  # zero notional
    (),  # no positions: no buffer to speak of (no margin balance either)
    (token("USDT", "perp", margin_balance="100"),),  # no positions, a known balance
])
def test_liquidation_buffer_unknown_without_its_inputs(rows: tuple[Asset, ...]) -> None:
    """Unknown inputs, and a zero gross notional, give an unknown buffer, never zero."""
    figures = AccountFigures.of(account("a", *rows))
    assert ACCOUNT_METRICS["liquidation_buffer"](figures, T0) is None


def test_notional_pct_total_computed_when_absent() -> None:
    """Cached rows lack notional_pct_total: |notional| / Σ|notional| of the same market type."""
    figures = _cached()["acc456"]
    eth = figures.account.assets[1]
    expected = D("420.343") / (D("420.343") + D("0.015296464"))
    assert ROW_METRICS["notional_pct_total"]["position"](figures, eth) == expected


def test_data_age_counts_from_the_cached_timestamp() -> None:
    """data_age is seconds since the cached endpoint took the data."""
    one = account("a", taken_at=T0)
    assert ACCOUNT_METRICS["data_age"](AccountFigures.of(one), at(95.5)) == D("95.500")


@pytest.mark.parametrize(("name", "scope"), [
    ("maint_margin_ratio", "position"), ("initial_margin_ratio", "position"),
    ("leverage", "position"), ("notional", "position"), ("notional_pct_total", "position"),
    ("unrealized_pnl", "position"), ("roe", "position"),
])
def test_unknown_inputs_make_row_metrics_unknown(name: str, scope: str) -> None:
    """A row with every number null yields None: unknown, never zero."""
    blank = position("X")
    figures = AccountFigures.of(account("a", blank))
    assert ROW_METRICS[name][scope](figures, blank) is None  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(set(ACCOUNT_METRICS) - {"data_age", "gross_notional",
                                                                 "unrealized_pnl"}))
def test_unknown_inputs_make_account_metrics_unknown(name: str) -> None:
    """An account whose numbers are unknown yields None for metrics that need them."""
    figures = AccountFigures.of(account("a", position("X", notional=None, maint_margin=None)))
    assert ACCOUNT_METRICS[name](figures, T0) is None


def test_sums_with_an_unknown_term_are_unknown() -> None:
    """Σ over positions is unknown if one term is: a partial sum would understate risk."""
    figures = AccountFigures.of(account("a", position("A", notional="10", unrealized_profit="1"),
                                        position("B", notional=None, unrealized_profit=None)))
    assert ACCOUNT_METRICS["gross_notional"](figures, T0) is None
    assert ACCOUNT_METRICS["unrealized_pnl"](figures, T0) is None


def test_no_positions_means_zero_exposure() -> None:
    """An account with no positions has zero gross notional and zero maintenance ratio."""
    figures = AccountFigures.of(account("a", token("USDT", "perp", margin_balance="100"),
                                        equity="100"))
    assert ACCOUNT_METRICS["gross_notional"](figures, T0) == D(0)
    assert ACCOUNT_METRICS["maint_margin_ratio"](figures, T0) == D(0)
    assert ACCOUNT_METRICS["effective_leverage"](figures, T0) == D(0)


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    (D(1), D(4), D("0.25")), (D(1), D(0), INFINITY), (D(1), D(-5), INFINITY),
    (D(0), D(0), D(0)), (None, D(1), None), (D(1), None, None), (D(-1), D(0), None),
])
def test_ratio_treats_no_balance_as_infinite_risk(
    numerator: Decimal | None, denominator: Decimal | None, expected: Decimal | None,
) -> None:
    """A margin requirement against a zero or negative balance is an infinite ratio."""
    assert ratio(numerator, denominator) == expected


def test_roe_needs_a_positive_initial_margin() -> None:
    """roe is unknown when initial margin is zero (it would otherwise divide by zero)."""
    row = position("X", unrealized_profit="5", initial_margin="0")
    assert ROW_METRICS["roe"]["position"](AccountFigures.of(account("a", row)), row) is None
