"""Both balance endpoints normalise into one Decimal snapshot; bad rows are reported and skipped."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from riskwatch.core.snapshot import only_accounts
from riskwatch.errors import TreadBadResponse
from riskwatch.source.adapters import from_cached, from_live, to_decimal
from tests.helpers import T0, payload


def test_live_reference_payload_normalises_every_field() -> None:
    """The /api/balances/ example becomes accounts with exact Decimals and nulls kept."""
    snapshot = from_live(payload("reference_live.json"), T0)
    assert [a.name for a in snapshot.accounts] == ["AccountABC", "Account123"]
    abc = snapshot.accounts[0]
    assert abc.exchange == "Bybit" and abc.taken_at == T0 and abc.equity is None
    eth = abc.assets[0]
    assert eth.symbol == "ETH:PERP-USDT" and eth.asset_type == "position"
    assert eth.market_type == "perp"
    assert eth.size == Decimal("1.69") and eth.notional == Decimal("3051.5284")
    assert eth.leverage == Decimal("10.0") and eth.notional_pct_total == Decimal("0.994565")
    usdt = abc.assets[1]
    assert usdt.leverage is None and usdt.asset_type == "token"
    btc = snapshot.accounts[1].assets[1]
    assert btc.margin_balance is None  # null stays unknown, never zero
    assert snapshot.problems == ()


def test_cached_reference_payload_normalises_every_field() -> None:
    """The cached example: amount is size, wallet_type is market type, strings are Decimals."""
    snapshot = from_cached(payload("reference_cached.json"), T0)
    empty, full = snapshot.accounts
    assert empty.name == "acc123" and empty.exchange == "OKXDEX" and empty.assets == ()
    assert empty.equity == Decimal(0)
    assert empty.id == "b82512b5-450f-4329-9943-0e037d0782b2"
    assert full.taken_at == datetime.fromtimestamp(1769078266.235, tz=UTC)
    btc, eth = full.assets
    assert btc.size == Decimal("1.7E-7") and btc.market_type == "unified"
    assert eth.size == Decimal("-0.1400000000000000000000")
    assert eth.notional == Decimal("-420.343") and eth.leverage == Decimal(10)
    assert eth.funding_fee == Decimal("0.18134707")
    assert eth.notional_pct_total is None  # the cached endpoint does not report it
    assert full.equity == Decimal("267387.34548772")


def test_malformed_row_is_reported_and_the_rest_is_kept() -> None:
    """A row with a non-number is skipped with a problem naming account and symbol."""
    data = copy.deepcopy(payload("reference_cached.json"))
    data["balances"][1]["assets"][0]["notional"] = "lots"
    snapshot = from_cached(data, T0)
    full = snapshot.accounts[1]
    assert [a.symbol for a in full.assets] == ["ETH:PERP-USDT"]
    assert not full.complete
    [problem] = snapshot.problems
    assert problem.account == "acc456" and problem.symbol == "BTC"
    assert "notional is not a number" in problem.message


@pytest.mark.parametrize("row", [
    "not an object",
    {"symbol": "X", "asset_type": "future", "amount": "1", "wallet_type": "spot"},
    {"asset_type": "token", "amount": "1", "wallet_type": "spot"},
    {"symbol": "X", "asset_type": "token", "amount": True, "wallet_type": "spot"},
    {"symbol": "X", "asset_type": "token", "amount": "NaN", "wallet_type": "spot"},
    {"symbol": "X", "asset_type": "token", "amount": [1], "wallet_type": "spot"},
])
def test_each_kind_of_bad_row_is_one_problem(row: object) -> None:
    """Wrong types, unknown asset types, missing symbols and NaN are each a reported problem."""
    data = copy.deepcopy(payload("reference_cached.json"))
    data["balances"][1]["assets"].append(row)
    snapshot = from_cached(data, T0)
    assert len(snapshot.accounts[1].assets) == 2
    assert len(snapshot.problems) == 1


def test_cached_errors_become_account_problems_whatever_their_shape() -> None:
    """Undocumented error objects: the account and message are read from any known key."""
    data = copy.deepcopy(payload("reference_cached.json"))
    data["errors"] = [
        {"account_name": "desk-9", "message": "exchange timeout"},
        {"account_id": "uuid-1", "error": "bad key"},
        {"name": "desk-8"},
        "plain text error",
    ]
    problems = from_cached(data, T0).problems
    assert [(p.account, p.message) for p in problems] == [
        ("desk-9", "exchange timeout"), ("uuid-1", "bad key"),
        ("desk-8", "the API could not fetch it"), ("?", "plain text error"),
    ]
    assert problems[0].raw == {"account_name": "desk-9", "message": "exchange timeout"}


def test_payloads_without_shape_are_bad_responses() -> None:
    """A body that is not the endpoint's shape at all is an error, not an empty snapshot."""
    with pytest.raises(TreadBadResponse):
        from_cached({"unexpected": 1}, T0)
    with pytest.raises(TreadBadResponse):
        from_live(["a", "list"], T0)


def test_live_account_without_exchange_is_a_problem() -> None:
    """A live account entry that lacks its exchange is reported, the other accounts kept."""
    data = copy.deepcopy(payload("reference_live.json"))
    data["Broken"] = {"assets": []}
    snapshot = from_live(data, T0)
    assert len(snapshot.accounts) == 2
    assert snapshot.problems[0].account == "Broken"


@pytest.mark.parametrize(("raw", "expected"), [
    ("1.7E-7", Decimal("1.7E-7")), (3, Decimal(3)), (Decimal("0.5"), Decimal("0.5")),
    (0.1, Decimal("0.1")), (None, None), ("  42 ", Decimal(42)),
])
def test_to_decimal_reads_numbers_exactly(raw: object, expected: Decimal | None) -> None:
    """JSON numbers and decimal strings become exact Decimals; a float keeps its written digits."""
    assert to_decimal(raw, "x") == expected


def test_only_accounts_keeps_watched_accounts_and_their_problems() -> None:
    """RISKWATCH_ACCOUNTS filters accounts and problems alike."""
    data = copy.deepcopy(payload("reference_cached.json"))
    data["errors"] = [{"account_name": "acc123", "message": "x"},
                      {"account_name": "other", "message": "y"}]
    snapshot = only_accounts(from_cached(data, T0), frozenset({"acc123"}))
    assert [a.name for a in snapshot.accounts] == ["acc123"]
    assert [p.account for p in snapshot.problems] == ["acc123"]
