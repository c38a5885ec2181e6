"""The two adapters that build a :class:`~riskwatch.core.snapshot.Snapshot` row by row.

Both ``GET /api/sor/get_cached_account_balance`` and ``GET /api/balances/`` become one
snapshot. A row that cannot be read is reported as an
:class:`~riskwatch.core.snapshot.AccountProblem` and skipped; the rest of the payload is
still used. :mod:`riskwatch.source.decode` takes the fast typed path when a body is clean
and falls back to these adapters when it is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from riskwatch.core.snapshot import (
    Account,
    AccountProblem,
    Asset,
    AssetType,
    NonEmptyText,
    Snapshot,
)
from riskwatch.errors import TreadBadResponse


class CachedAsset(Asset, frozen=True, kw_only=True, gc=False):
    """A row of the cached endpoint, which calls ``size`` ``amount`` and ``market_type``
    ``wallet_type``; everything else is :class:`Asset`."""

    market_type: NonEmptyText | None = msgspec.field(default=None, name="wallet_type")
    size: Decimal | None = msgspec.field(default=None, name="amount")


class RowError(ValueError):
    """A row or field of a payload that cannot be read."""


def to_decimal(value: object, name: str) -> Decimal | None:
    """Read a JSON number or decimal string as Decimal; ``None`` stays unknown."""
    kind = type(value)
    if kind is str:  # the cached endpoint's usual case first: this runs for every number
        try:
            number = Decimal(value)  # type: ignore[arg-type]
        except InvalidOperation:
            number = _slow_decimal(value, name)
    elif value is None:
        return None
    elif kind is Decimal:
        number = value  # type: ignore[assignment]
    else:
        number = _slow_decimal(value, name)
    if not number.is_finite():
        raise RowError(f"{name} is not a finite number: {value!r}")
    return number


def _slow_decimal(value: object, name: str) -> Decimal:
    if isinstance(value, bool):
        raise RowError(f"{name} is a boolean, expected a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest repr is the number the JSON text held
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise RowError(f"{name} is not a number: {value[:40]!r}") from None
    raise RowError(f"{name} has type {type(value).__name__}, expected a number")


def _text(row: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = row.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RowError(f"{name} is missing or not a string")
    return value


def _asset_type(row: Mapping[str, Any]) -> AssetType:
    kind = row.get("asset_type")
    if kind == "token":
        return "token"
    if kind == "position":
        return "position"
    raise RowError(f"asset_type {kind!r} is neither 'token' nor 'position'")


def _asset(row: object, *, size_field: str, market_field: str) -> Asset:
    if not isinstance(row, Mapping):
        raise RowError(f"asset is a {type(row).__name__}, expected an object")
    kind = CachedAsset if size_field == "amount" else Asset
    return kind(
        symbol=_text(row, "symbol") or "",
        asset_type=_asset_type(row),
        market_type=_text(row, market_field, required=False),
        size=to_decimal(row.get(size_field), size_field),
        notional=to_decimal(row.get("notional"), "notional"),
        unrealized_profit=to_decimal(row.get("unrealized_profit"), "unrealized_profit"),
        initial_margin=to_decimal(row.get("initial_margin"), "initial_margin"),
        maint_margin=to_decimal(row.get("maint_margin"), "maint_margin"),
        margin_balance=to_decimal(row.get("margin_balance"), "margin_balance"),
        leverage=to_decimal(row.get("leverage"), "leverage"),
        notional_pct_total=to_decimal(row.get("notional_pct_total"), "notional_pct_total"),
        funding_fee=to_decimal(row.get("funding_fee"), "funding_fee"),
    )


def _symbol_of(row: object) -> str | None:
    if isinstance(row, Mapping) and isinstance(row.get("symbol"), str):
        return str(row["symbol"])
    return None


def _read_assets(
    rows: object, account: str, exchange: str, *, size_field: str, market_field: str
) -> tuple[list[Asset], list[AccountProblem]]:
    """Read every asset row, reporting and skipping the ones that cannot be read."""
    if not isinstance(rows, list):
        problem = AccountProblem(account, "assets is not a list", exchange, raw=rows)
        return [], [problem]
    assets: list[Asset] = []
    problems: list[AccountProblem] = []
    for index, row in enumerate(rows):
        try:
            assets.append(_asset(row, size_field=size_field, market_field=market_field))
        except RowError as error:
            message = f"asset #{index} unreadable: {error}"
            problems.append(AccountProblem(account, message, exchange, _symbol_of(row), row))
    return assets, problems


def _first_text(raw: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = raw.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def api_error_problem(raw: object) -> AccountProblem:
    """Turn one entry of the cached endpoint's undocumented ``errors`` into a problem."""
    if isinstance(raw, Mapping):
        account = _first_text(raw, ("account_name", "account_id", "name")) or "?"
        message = _first_text(raw, ("message", "error", "detail")) or "the API could not fetch it"
        exchange = _first_text(raw, ("exchange_name", "exchange"))
        return AccountProblem(account, message, exchange, raw=raw)
    if isinstance(raw, str):
        return AccountProblem("?", raw[:200], raw=raw)
    return AccountProblem("?", "the API reported an error it did not describe", raw=raw)


def _millis(value: object) -> datetime | None:
    number = to_decimal(value, "timestamp_millis")
    if number is None:
        return None
    try:
        return datetime.fromtimestamp(float(number) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise RowError(f"timestamp_millis is out of range: {value!r}") from None


def _cached_equity(raw: Mapping[str, Any]) -> Decimal | None:
    """``equity``, else the sum of ``equities[].total_equity`` when every one is known."""
    equity = to_decimal(raw.get("equity"), "equity")
    if equity is not None:
        return equity
    equities = raw.get("equities")
    if not isinstance(equities, list) or not equities:
        return None
    totals = [
        to_decimal(item.get("total_equity"), "total_equity") if isinstance(item, Mapping) else None
        for item in equities
    ]
    known = [total for total in totals if total is not None]
    return sum(known, Decimal(0)) if len(known) == len(totals) else None


def _cached_account(raw: object) -> tuple[Account | None, list[AccountProblem]]:
    if not isinstance(raw, Mapping):
        return None, [AccountProblem("?", "balance entry is not an object", raw=raw)]
    name = _first_text(raw, ("account_name",))
    exchange = _first_text(raw, ("exchange_name",))
    if name is None or exchange is None:
        who = name or _first_text(raw, ("account_id",)) or "?"
        return None, [AccountProblem(who, "balance entry lacks account_name or exchange_name",
                                     exchange, raw=raw)]
    try:
        taken_at = _millis(raw.get("timestamp_millis"))
        equity = _cached_equity(raw)
    except RowError as error:
        return None, [AccountProblem(name, f"account unreadable: {error}", exchange, raw=raw)]
    assets, problems = _read_assets(raw.get("assets"), name, exchange,
                                    size_field="amount", market_field="wallet_type")
    account_id = raw.get("account_id")
    account = Account(
        name=name, exchange=exchange, assets=tuple(assets), taken_at=taken_at,
        id=account_id if isinstance(account_id, str) else None, equity=equity,
        complete=not problems,
    )
    return account, problems


def from_cached(payload: object, received_at: datetime) -> Snapshot:
    """Normalise a ``get_cached_account_balance`` body; TreadBadResponse if it has no shape."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("balances"), list):
        raise TreadBadResponse("cached balances: expected an object with a 'balances' list")
    accounts: list[Account] = []
    problems: list[AccountProblem] = []
    for raw in payload["balances"]:
        account, found = _cached_account(raw)
        problems.extend(found)
        if account is not None:
            accounts.append(account)
    errors = payload.get("errors") or []
    problems.extend(api_error_problem(raw) for raw in (errors if isinstance(errors, list)
                                                       else [errors]))
    return Snapshot("cached", received_at, tuple(accounts), tuple(problems))


def from_live(payload: object, received_at: datetime) -> Snapshot:
    """Normalise a ``GET /api/balances/`` body (account name -> exchange and assets)."""
    if not isinstance(payload, Mapping):
        raise TreadBadResponse("balances: expected an object keyed by account name")
    accounts: list[Account] = []
    problems: list[AccountProblem] = []
    for name, raw in payload.items():
        if not isinstance(raw, Mapping) or not _first_text(raw, ("exchange",)):
            problems.append(AccountProblem(str(name), "account entry lacks an exchange", raw=raw))
            continue
        exchange = str(raw["exchange"])
        assets, found = _read_assets(raw.get("assets"), str(name), exchange,
                                     size_field="size", market_field="market_type")
        problems.extend(found)
        accounts.append(Account(name=str(name), exchange=exchange, assets=tuple(assets),
                                taken_at=received_at, complete=not found))
    return Snapshot("live", received_at, tuple(accounts), tuple(problems))
