"""Fuzzed payloads of both endpoints: no unhandled exception; every unreadable row is
reported and the rest is still evaluated; the fast typed decoder and the row-by-row
adapters agree on every body."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskwatch.core.evaluate import compile_rules, decide
from riskwatch.core.snapshot import Snapshot, Source
from riskwatch.errors import TreadBadResponse
from riskwatch.rulefiles.loader import load_rules, shipped_rules_dir
from riskwatch.source.adapters import from_cached, from_live
from riskwatch.source.decode import parse_json, read_snapshot
from tests.fuzz.conftest import PAYLOAD_EXAMPLES
from tests.helpers import DEEP, T0, at, raw_payload

RULES = compile_rules(load_rules([shipped_rules_dir()]))
HALF = PAYLOAD_EXAMPLES // 2

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["1.7E-7", "-0.1400000000000000000000", "NaN", "Infinity", "1e999999",
                     "", " 3 ", "0x10", "--1", "1_000"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)

CACHED_FIELDS = ["symbol", "amount", "margin_balance", "unrealized_profit", "notional",
                 "wallet_type", "asset_type", "funding_fee", "initial_margin", "maint_margin",
                 "leverage"]
LIVE_FIELDS = ["symbol", "size", "notional", "market_type", "asset_type", "unrealized_profit",
               "initial_margin", "maint_margin", "margin_balance", "leverage",
               "notional_pct_total"]


@st.composite
def mutated(draw: st.DrawFn, base: Any, fields: list[str], rows: Any) -> Any:
    """The reference payload with random fields of random rows replaced or removed."""
    data = copy.deepcopy(base)
    targets = rows(data)
    for _ in range(draw(st.integers(1, 6))):
        if not targets:
            break
        row = draw(st.sampled_from(targets))
        if not isinstance(row, dict):
            continue
        field = draw(st.sampled_from(fields))
        if draw(st.booleans()):
            row[field] = draw(json_values)
        else:
            row.pop(field, None)
    return data


def _cached_rows(data: Any) -> list[Any]:
    rows: list[Any] = [asset for balance in data["balances"] for asset in balance["assets"]]
    return rows + list(data["balances"])


def _live_rows(data: Any) -> list[Any]:
    return [asset for account in data.values() for asset in account["assets"]] + \
        list(data.values())


def _evaluate_all(snapshot: Snapshot) -> None:
    state = decide(RULES, snapshot, {}, at(0)).changed
    decide(RULES, snapshot, state, at(60))


def _check(snapshot: Snapshot, total_rows: int) -> None:
    """Every row is either read or reported; evaluation runs on what was read."""
    read = sum(len(account.assets) for account in snapshot.accounts)
    reported = sum(1 for p in snapshot.problems if p.message.startswith("asset #"))
    whole = sum(1 for p in snapshot.problems if not p.message.startswith("asset #"))
    assert read + reported <= total_rows
    assert read + reported == total_rows or whole > 0
    for account in snapshot.accounts:
        for asset in account.assets:
            for value in (asset.notional, asset.leverage, asset.maint_margin):
                assert value is None or (isinstance(value, Decimal) and value.is_finite())
    _evaluate_all(snapshot)


def _read_both_ways(body: bytes, source: Source) -> Snapshot:
    """The daemon's reading of ``body``, after checking the row-by-row adapter agrees."""
    adapter = from_live if source == "live" else from_cached
    try:
        slow = adapter(parse_json(body, "fuzz"), T0)
    except TreadBadResponse:
        slow = None
    try:
        fast = read_snapshot(body, source, T0, "fuzz")
    except TreadBadResponse:
        assert slow is None
        raise
    assert fast == slow
    return fast


@settings(max_examples=HALF, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated(json.loads(raw_payload("reference_cached.json")), CACHED_FIELDS, _cached_rows))
def test_mutated_cached_payloads(data: Any) -> None:
    """Mutated cached payloads: rows are read or reported, never crash evaluation."""
    total = sum(len(b["assets"]) for b in data["balances"]
                if isinstance(b, dict) and isinstance(b.get("assets"), list))
    body = json.dumps(data).encode()
    _check(_read_both_ways(body, "cached"), total)


@settings(max_examples=HALF, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated(json.loads(raw_payload("reference_live.json")), LIVE_FIELDS, _live_rows))
def test_mutated_live_payloads(data: Any) -> None:
    """Mutated live payloads: rows are read or reported, never crash evaluation."""
    total = sum(len(a["assets"]) for a in data.values()
                if isinstance(a, dict) and isinstance(a.get("assets"), list))
    body = json.dumps(data).encode()
    _check(_read_both_ways(body, "live"), total)


@settings(max_examples=1_000 if DEEP else 150, deadline=None,  # cheap: 150 in under a second
          suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_random_bodies_are_read_or_refused_cleanly(body: bytes) -> None:
    """Random bytes or JSON: a snapshot, or TreadBadResponse — nothing else escapes."""
    for source in ("cached", "live"):
        try:
            snapshot = _read_both_ways(body, source)
        except TreadBadResponse:
            continue
        _evaluate_all(snapshot)
