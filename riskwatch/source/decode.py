"""Response bytes -> :class:`~riskwatch.core.snapshot.Snapshot`, fast when the body is clean.

A typed msgspec decoder reads a well-formed body straight into the snapshot's rows:
one pass in C, every number an exact Decimal (strings and JSON numbers alike), no
intermediate dicts. That is most of the distance between a poll and the floor of merely
parsing JSON (issue 6).

The typed schema is at least as strict as the row-by-row adapters in
:mod:`riskwatch.core.snapshot`. Whenever a body does not fit it — a bad row, a non-finite
number, an unexpected type anywhere — the whole body goes through those adapters
instead, which report and skip exactly the rows they cannot read. Both paths give equal
snapshots for every body the fast one accepts (tests/fuzz checks this on mutated payloads).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec

from riskwatch.core.snapshot import (
    NUMBER_FIELDS,
    Account,
    AccountProblem,
    Asset,
    NonEmptyText,
    Snapshot,
    Source,
)
from riskwatch.errors import TreadBadResponse
from riskwatch.source import deep
from riskwatch.source.adapters import CachedAsset, api_error_problem, from_cached, from_live


class _Equity(msgspec.Struct, gc=False):
    total_equity: Decimal | None = None


class _CachedBalance(msgspec.Struct, gc=False):
    account_name: NonEmptyText
    exchange_name: NonEmptyText
    assets: list[CachedAsset]
    account_id: str | None = None
    equity: Decimal | None = None
    equities: list[_Equity] | None = None
    timestamp_millis: int | None = None


class _CachedPayload(msgspec.Struct, gc=False):
    balances: list[_CachedBalance]
    errors: Any = None


class _LiveAccount(msgspec.Struct, gc=False):
    exchange: NonEmptyText
    assets: list[Asset]


_CACHED = msgspec.json.Decoder(_CachedPayload, float_hook=Decimal)
_LIVE = msgspec.json.Decoder(dict[str, _LiveAccount], float_hook=Decimal)
_NUMBERS = attrgetter(*NUMBER_FIELDS)


class _NotClean(Exception):
    """The body decoded, but something in it needs the row-by-row adapter."""


def read_snapshot(body: bytes, source: Source, received_at: datetime, what: str) -> Snapshot:
    """Normalise a balance response body (``source`` names the endpoint it came from).

    TreadBadResponse when the body is not JSON or has no usable shape at all.
    """
    try:
        if source == "live":
            return _clean_live(_LIVE.decode(body), received_at)
        return _clean_cached(_CACHED.decode(body), received_at)
    except (msgspec.DecodeError, _NotClean, RecursionError):
        try:
            data = parse_json(body, what)
        except _TooDeep:
            return _read_deep(body, source, received_at, what)
        return from_live(data, received_at) if source == "live" else from_cached(data,
                                                                                  received_at)


class _TooDeep(TreadBadResponse):
    """JSON nested too deeply to decode in one piece."""


def _read_deep(body: bytes, source: Source, received_at: datetime, what: str) -> Snapshot:
    """Read the answer entry by entry: an entry too deep to decode is that entry's
    ``account-error``, and every other account is read as usual (see :mod:`deep`)."""
    try:
        top = deep.read_top_level(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise TreadBadResponse(f"{what}: the API sent JSON nested too deeply to read") from None
    if source == "live":
        too_deep = [AccountProblem(str(name), _DEEP_ENTRY, entry.exchange)
                    for name, entry in top.items() if isinstance(entry, deep.TooDeep)]
        readable = {name: entry for name, entry in top.items()
                    if not isinstance(entry, deep.TooDeep)}
        snapshot = from_live(readable, received_at)
    else:
        balances, deep_balances = deep.split_deep(top.get("balances"), lambda entry: (
            AccountProblem(entry.account or "?", _DEEP_ENTRY, entry.exchange)))
        errors, deep_errors = deep.split_deep(top.get("errors"), lambda entry: (
            AccountProblem(entry.account or "?", "an error entry for it is nested too "
                           "deeply to read", entry.exchange)))
        snapshot = from_cached({"balances": balances, "errors": errors}, received_at)
        too_deep = deep_balances + deep_errors
    return replace(snapshot, problems=(*snapshot.problems, *too_deep))


_DEEP_ENTRY = "its entry is nested too deeply to read"


def parse_json(body: bytes, what: str) -> Any:
    """Decode any JSON body with every non-integer number as an exact Decimal."""
    try:
        return json.loads(body, parse_float=Decimal)
    except RecursionError:
        raise _TooDeep(f"{what}: the API sent JSON nested too deeply to read") from None
    except ValueError:
        start = body[:1].decode("ascii", "replace")
        kind = "an HTML page" if start == "<" else "a body that is not JSON"
        raise TreadBadResponse(f"{what}: the API sent {kind}") from None


def _finite(numbers: Iterable[Decimal | None]) -> bool:
    # None and zero are falsy and finite; what is left must be finite (no NaN, no Infinity).
    return all(map(Decimal.is_finite, filter(None, numbers)))


def _rows_finite(assets: Iterable[Asset]) -> bool:
    return _finite(chain.from_iterable(map(_NUMBERS, assets)))


def _clean_cached(payload: _CachedPayload, received_at: datetime) -> Snapshot:
    accounts = tuple(_cached_account(balance) for balance in payload.balances)
    errors = payload.errors or []
    problems = tuple(api_error_problem(raw) for raw in (errors if isinstance(errors, list)
                                                        else [errors]))
    return Snapshot("cached", received_at, accounts, problems)


def _cached_account(balance: _CachedBalance) -> Account:
    if not _rows_finite(balance.assets):
        raise _NotClean
    return Account(
        name=balance.account_name, exchange=balance.exchange_name,
        assets=tuple(balance.assets), taken_at=_taken_at(balance.timestamp_millis),
        id=balance.account_id, equity=_equity(balance),
    )


def _taken_at(millis: int | None) -> datetime | None:
    if millis is None:
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _NotClean from None


def _equity(balance: _CachedBalance) -> Decimal | None:
    """``equity``, else the sum of ``equities[].total_equity`` when every one is known."""
    totals = [item.total_equity for item in balance.equities or ()]
    if not _finite([balance.equity, *totals]):
        raise _NotClean
    if balance.equity is not None:
        return balance.equity
    known = [total for total in totals if total is not None]
    return sum(known, Decimal(0)) if known and len(known) == len(totals) else None


def _clean_live(payload: dict[str, _LiveAccount], received_at: datetime) -> Snapshot:
    accounts = []
    for name, raw in payload.items():
        if not _rows_finite(raw.assets):
            raise _NotClean
        accounts.append(Account(name=name, exchange=raw.exchange, assets=tuple(raw.assets),
                                taken_at=received_at))
    return Snapshot("live", received_at, tuple(accounts))
