"""The fast typed decoder: taken for clean bodies, equal to the row-by-row adapters, and
stepping aside for anything they must report (issue 6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import riskwatch.source.decode as decode
from benchmarks.generate import cached_payload, live_payload
from riskwatch.core.snapshot import Snapshot, Source
from riskwatch.errors import TreadBadResponse
from riskwatch.source.adapters import from_cached, from_live
from riskwatch.source.decode import parse_json, read_snapshot
from tests.helpers import T0, raw_payload


def _row_by_row(body: bytes, source: Source) -> Snapshot:
    adapter = from_live if source == "live" else from_cached
    return adapter(parse_json(body, "test"), T0)


def _without_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the row-by-row path fail loudly, to prove a body took the typed path."""
    def refuse(*_args: Any) -> Snapshot:
        raise AssertionError("the typed decoder gave up on a clean body")

    monkeypatch.setattr(decode, "from_cached", refuse)
    monkeypatch.setattr(decode, "from_live", refuse)


@pytest.mark.parametrize(("name", "source"), [("reference_cached.json", "cached"),
                                              ("reference_live.json", "live")])
def test_reference_payloads_take_the_typed_path_and_read_the_same(
        monkeypatch: pytest.MonkeyPatch, name: str, source: Source) -> None:
    """The reference examples decode typed, into exactly what the adapters make of them."""
    body = raw_payload(name)
    expected = _row_by_row(body, source)
    _without_fallback(monkeypatch)
    assert read_snapshot(body, source, T0, "test") == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("source", ["cached", "live"])
def test_generated_payloads_read_the_same_both_ways(
        monkeypatch: pytest.MonkeyPatch, seed: int, source: Source) -> None:
    """Benchmark-shaped payloads (exponents, long tails, nulls, shorts): equal snapshots."""
    data = cached_payload(30, seed=seed) if source == "cached" else live_payload(30, seed=seed)
    body = json.dumps(data).encode()
    expected = _row_by_row(body, source)
    assert sum(len(account.assets) for account in expected.accounts) == 600
    _without_fallback(monkeypatch)
    assert read_snapshot(body, source, T0, "test") == expected


@pytest.mark.parametrize("bad", ['"NaN"', '"-Infinity"', '"sNaN"', "true", '"1,5"', '""'])
def test_a_bad_number_falls_back_and_only_its_row_is_reported(bad: str) -> None:
    """One unreadable number: the typed path steps aside, that row alone is reported."""
    data = cached_payload(3, seed=4)
    data["balances"][1]["assets"][2]["leverage"] = "__BAD__"
    body = json.dumps(data).encode().replace(b'"__BAD__"', bad.encode())
    snapshot = read_snapshot(body, "cached", T0, "test")
    assert [(p.account, p.message.split(":")[0]) for p in snapshot.problems] == [
        ("desk-00001", "asset #2 unreadable")]
    assert sum(len(account.assets) for account in snapshot.accounts) == 59
    assert snapshot == _row_by_row(body, "cached")


def test_a_non_finite_equity_falls_back_to_the_account_problem() -> None:
    """Equity is checked like the rows: Infinity makes the account unreadable, as before."""
    data = cached_payload(2, seed=5)
    data["balances"][0]["equity"] = "Infinity"
    body = json.dumps(data).encode()
    snapshot = read_snapshot(body, "cached", T0, "test")
    assert [account.name for account in snapshot.accounts] == ["desk-00001"]
    assert snapshot.problems[0].account == "desk-00000"


def test_a_body_that_is_not_json_is_refused() -> None:
    """Not JSON at all: the same TreadBadResponse as ever."""
    with pytest.raises(TreadBadResponse, match="HTML page"):
        read_snapshot(b"<html>502</html>", "cached", T0, "GET /x")
