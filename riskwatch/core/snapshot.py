"""The normalised snapshot: what one poll learned, whichever balance endpoint it read.

Accounts holding assets, every number a :class:`~decimal.Decimal`, ``None`` meaning
"unknown" (never zero), and the problems met on the way (an account the API could not
fetch, a row that could not be read). :mod:`riskwatch.source` builds it from the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

AssetType = Literal["token", "position"]
Source = Literal["cached", "live"]


NonEmptyText = Annotated[str, msgspec.Meta(min_length=1)]


class Asset(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One token balance or position of an account.

    A msgspec Struct, so the cached endpoint's rows decode straight into it (see
    :mod:`riskwatch.source.decode`); field names are the live endpoint's. ``gc=False``: a row
    holds only strings and numbers, so the cyclic collector need never visit it.
    """

    symbol: NonEmptyText
    asset_type: AssetType
    market_type: NonEmptyText | None = None
    size: Decimal | None = None
    notional: Decimal | None = None
    unrealized_profit: Decimal | None = None
    initial_margin: Decimal | None = None
    maint_margin: Decimal | None = None
    margin_balance: Decimal | None = None
    leverage: Decimal | None = None
    notional_pct_total: Decimal | None = None
    funding_fee: Decimal | None = None


NUMBER_FIELDS: tuple[str, ...] = (
    "size", "notional", "unrealized_profit", "initial_margin", "maint_margin",
    "margin_balance", "leverage", "notional_pct_total", "funding_fee",
)


@dataclass(frozen=True, slots=True)
class Account:
    """One exchange account as the API reported it at ``taken_at``.

    ``complete`` is False when some of its rows could not be read: a position missing
    from an incomplete account may only be unreadable, so it must not count as closed.
    """

    name: str
    exchange: str
    assets: tuple[Asset, ...]
    taken_at: datetime | None
    id: str | None = None
    equity: Decimal | None = None
    complete: bool = True


@dataclass(frozen=True, slots=True)
class AccountProblem:
    """An account the API could not fetch (its ``errors``), or a row riskwatch could not read."""

    account: str
    message: str
    exchange: str | None = None
    symbol: str | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one poll learned: readable accounts and the problems met on the way."""

    source: Source
    received_at: datetime
    accounts: tuple[Account, ...]
    problems: tuple[AccountProblem, ...] = field(default=())

    def account(self, name: str) -> Account | None:
        """The account called ``name``, or None when the snapshot lacks it."""
        return next((account for account in self.accounts if account.name == name), None)


def only_accounts(snapshot: Snapshot, names: frozenset[str] | None) -> Snapshot:
    """Keep only the watched accounts (and their problems); ``None`` watches all."""
    if names is None:
        return snapshot
    accounts = tuple(account for account in snapshot.accounts if account.name in names)
    problems = tuple(problem for problem in snapshot.problems
                     if problem.account in names or problem.account == "?")
    return Snapshot(snapshot.source, snapshot.received_at, accounts, problems)


def iter_positions(account: Account) -> Iterator[Asset]:
    """The account's position rows."""
    return (asset for asset in account.assets if asset.asset_type == "position")
