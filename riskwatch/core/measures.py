"""Every metric a rule can name: its scopes and its formula, in one table.

A formula returns ``None`` when an input it needs is unknown; the evaluator then skips
that row for that rule, so a missing number can neither trip nor clear an alert.

Account margin balance (first that is known):
  1. the smallest ``margin_balance`` on the account's position rows (both endpoints repeat
     the cross/unified margin balance there; the smallest is the cautious reading),
  2. the sum of ``margin_balance`` over token rows whose market type is not ``spot``,
  3. the account's equity as the cached endpoint reports it (``equity``, else the sum of
     ``equities[].total_equity``).
Account equity: the reported equity (cached endpoint), else the account margin balance.

Liquidation buffer: (account margin balance - sum of position maintenance margins) / gross
notional, the adverse move (a fraction of notional) that brings the account to its
maintenance margin. Unknown when any input is, and when the gross notional is zero: an
account without positions has no buffer to speak of (not an infinite one).

Drawdown needs stored history, so its formula is in :mod:`riskwatch.core.history`; it is
named here (``HISTORY_METRICS``) so that rules can be checked against every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Literal

from riskwatch.core.snapshot import Account, Asset

Scope = Literal["account", "asset", "position"]
INFINITY = Decimal("Infinity")
ZERO = Decimal(0)


def _sum_known(values: Iterable[Decimal | None]) -> Decimal | None:
    """Sum, or None when any term is unknown (a partial sum would understate risk)."""
    total = ZERO
    for value in values:
        if value is None:
            return None
        total += value
    return total


def ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    """numerator / denominator; a requirement against no (or negative) balance is infinite."""
    if numerator is None or denominator is None:
        return None
    if denominator > 0:
        return numerator / denominator
    if numerator > 0:
        return INFINITY
    return ZERO if numerator == 0 else None


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """Per-account sums that several metrics share, computed once per account and poll."""

    account: Account
    positions: tuple[Asset, ...]
    margin_balance: Decimal | None
    equity: Decimal | None
    gross_notional: Decimal | None
    notional_by_market: dict[str | None, Decimal | None]

    @classmethod
    def of(cls, account: Account) -> AccountFigures:
        """Compute the shared figures of ``account``."""
        positions = tuple(asset for asset in account.assets if asset.asset_type == "position")
        margin_balance = account_margin_balance(account, positions)
        by_market: dict[str | None, Decimal | None] = {}
        for asset in account.assets:
            market, notional = asset.market_type, asset.notional
            running = by_market.get(market, ZERO)
            by_market[market] = (
                None if running is None or notional is None else running + abs(notional)
            )
        return cls(
            account=account,
            positions=positions,
            margin_balance=margin_balance,
            equity=account.equity if account.equity is not None else margin_balance,
            gross_notional=_gross([p.notional for p in positions]),
            notional_by_market=by_market,
        )


def _gross(notionals: list[Decimal | None]) -> Decimal | None:
    """Sum of |notional|, or None when any is unknown."""
    try:
        return sum(map(abs, notionals), ZERO)  # type: ignore[arg-type]
    except TypeError:  # abs(None): an unknown notional
        return None


def account_margin_balance(account: Account, positions: tuple[Asset, ...]) -> Decimal | None:
    """The account's margin balance, by the fallback order in this module's docstring."""
    on_positions = [p.margin_balance for p in positions if p.margin_balance is not None]
    if on_positions:
        return min(on_positions)
    on_tokens = [
        asset.margin_balance
        for asset in account.assets
        if asset.asset_type == "token"
        and asset.margin_balance is not None
        and (asset.market_type or "").lower() != "spot"
    ]
    if on_tokens:
        return sum(on_tokens, ZERO)
    return account.equity


RowMetric = Callable[[AccountFigures, Asset], Decimal | None]
AccountMetric = Callable[[AccountFigures, datetime], Decimal | None]
# A row metric over many rows at once: rows, and for each row the figures of its account.
# The evaluator computes whole columns with comprehensions (issue 6: a Python call per
# row and rule cost more than the rest of a poll); RowMetric is one row of the same formula.
RowColumn = Callable[[Sequence[Asset], Sequence[AccountFigures]], list[Decimal | None]]


def _ratios(numerators: Iterable[Decimal | None],
            denominators: Iterable[Decimal | None]) -> list[Decimal | None]:
    """:func:`ratio` pairwise; the usual case (both known, positive denominator) inline."""
    return [n / d if n is not None and d is not None and d > 0 else ratio(n, d)
            for n, d in zip(numerators, denominators, strict=True)]


def _row_balances(assets: Sequence[Asset], figures: Sequence[AccountFigures]) -> list[
        Decimal | None]:
    """Each row's own margin balance, else its account's."""
    return [a.margin_balance if a.margin_balance is not None else f.margin_balance
            for a, f in zip(assets, figures, strict=True)]


def _margin_ratio(field: str) -> RowColumn:
    margin = attrgetter(field)

    def column(assets: Sequence[Asset], figures: Sequence[AccountFigures]) -> list[
            Decimal | None]:
        return _ratios(map(margin, assets), _row_balances(assets, figures))

    return column


def _field(field: str) -> RowColumn:
    read = attrgetter(field)

    def column(assets: Sequence[Asset], _figures: Sequence[AccountFigures]) -> list[
            Decimal | None]:
        return list(map(read, assets))

    return column


def _abs_notional(assets: Sequence[Asset], _figures: Sequence[AccountFigures]) -> list[
        Decimal | None]:
    return [None if a.notional is None else abs(a.notional) for a in assets]


def _notional_pct_total(assets: Sequence[Asset], figures: Sequence[AccountFigures]) -> list[
        Decimal | None]:
    """Reported ``notional_pct_total``, else |notional| over the account's gross notional
    in the row's market type."""
    return [a.notional_pct_total if a.notional_pct_total is not None
            else _share_of_market(f, a) for a, f in zip(assets, figures, strict=True)]


def _share_of_market(figures: AccountFigures, asset: Asset) -> Decimal | None:
    if asset.notional is None:
        return None
    total = figures.notional_by_market.get(asset.market_type)
    if total is None or total == 0:
        return None
    return abs(asset.notional) / total


def _roe(assets: Sequence[Asset], _figures: Sequence[AccountFigures]) -> list[Decimal | None]:
    return [ratio_or_none(a.unrealized_profit, a.initial_margin) for a in assets]


def _account_margin_ratio(margin: Callable[[Asset], Decimal | None]) -> AccountMetric:
    def metric(figures: AccountFigures, _now: datetime) -> Decimal | None:
        return ratio(_sum_known(margin(p) for p in figures.positions), figures.margin_balance)

    return metric


def _liquidation_buffer(figures: AccountFigures, _now: datetime) -> Decimal | None:
    """(margin balance - sum of maintenance margins) / gross notional; see the docstring."""
    maint = _sum_known(p.maint_margin for p in figures.positions)
    balance, gross = figures.margin_balance, figures.gross_notional
    if maint is None or balance is None or gross is None or gross <= 0:
        return None
    return (balance - maint) / gross


def _data_age(figures: AccountFigures, now: datetime) -> Decimal | None:
    taken_at = figures.account.taken_at
    if taken_at is None:
        return None
    return Decimal(max(0, round((now - taken_at).total_seconds(), 3))).quantize(Decimal("0.001"))


ROW_COLUMNS: dict[str, dict[Scope, RowColumn]] = {
    "maint_margin_ratio": {"position": _margin_ratio("maint_margin")},
    "initial_margin_ratio": {"position": _margin_ratio("initial_margin")},
    "leverage": {"position": _field("leverage")},
    "notional": {"position": _abs_notional, "asset": _abs_notional},
    "notional_pct_total": {"position": _notional_pct_total, "asset": _notional_pct_total},
    "unrealized_pnl": {"position": _field("unrealized_profit")},
    "roe": {"position": _roe},
}


def _one_row(column: RowColumn) -> RowMetric:
    def metric(figures: AccountFigures, asset: Asset) -> Decimal | None:
        return column([asset], [figures])[0]

    return metric


ROW_METRICS: dict[str, dict[Scope, RowMetric]] = {
    name: {scope: _one_row(column) for scope, column in scopes.items()}
    for name, scopes in ROW_COLUMNS.items()
}

ACCOUNT_METRICS: dict[str, AccountMetric] = {
    "maint_margin_ratio": _account_margin_ratio(lambda a: a.maint_margin),
    "initial_margin_ratio": _account_margin_ratio(lambda a: a.initial_margin),
    "effective_leverage": lambda f, _now: ratio(f.gross_notional, f.equity),
    "gross_notional": lambda f, _now: f.gross_notional,
    "unrealized_pnl": lambda f, _now: _sum_known(p.unrealized_profit for p in f.positions),
    "equity": lambda f, _now: f.equity,
    "data_age": _data_age,
    "liquidation_buffer": _liquidation_buffer,
}

# Account metrics computed from the stored history of the account as well as the snapshot.
HISTORY_METRICS: frozenset[str] = frozenset({"drawdown"})


def ratio_or_none(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    """numerator / denominator, unknown unless the denominator is positive (used by ``roe``)."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def scopes_of(metric: str) -> tuple[Scope, ...]:
    """The scopes a metric can be evaluated in; empty for an unknown metric."""
    scopes: list[Scope] = list(ROW_METRICS.get(metric, {}))
    if metric in ACCOUNT_METRICS or metric in HISTORY_METRICS:
        scopes.append("account")
    return tuple(scopes)


ALL_METRICS: tuple[str, ...] = tuple(sorted(set(ROW_METRICS) | set(ACCOUNT_METRICS)
                                            | HISTORY_METRICS))

# How values are shown to people (Slack, CLI): ratios as percentages, money with units.
RATIO_METRICS = frozenset({"maint_margin_ratio", "initial_margin_ratio", "notional_pct_total",
                           "roe", "liquidation_buffer", "drawdown"})
MONEY_METRICS = frozenset({"notional", "gross_notional", "unrealized_pnl", "equity"})
LEVERAGE_METRICS = frozenset({"leverage", "effective_leverage"})
