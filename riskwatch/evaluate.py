"""Pure evaluation: rules over a snapshot, then every alert one step through its lifecycle.

``decide(rules, snapshot, alerts, now)`` is the whole functional core of a poll: no I/O,
no clock, no globals. The daemon persists and delivers what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fnmatch import translate

from riskwatch import alerts as lifecycle
from riskwatch.alerts import Alert, AlertKey, Notice, Observation, Policy
from riskwatch.metrics import ACCOUNT_METRICS, ROW_METRICS, AccountFigures, AccountMetric, RowMetric
from riskwatch.rules import BUILTIN_RULES, Rule
from riskwatch.snapshot import Account, Asset, Snapshot


def _globs(patterns: list[str] | None) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns), re.IGNORECASE)


def _fits(pattern: re.Pattern[str] | None, value: str | None) -> bool:
    return pattern is None or (value is not None and pattern.match(value) is not None)


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to evaluate: its policy, its metric function and its compiled globs."""

    rule: Rule
    policy: Policy
    row_metric: RowMetric | None
    account_metric: AccountMetric | None
    exchange: re.Pattern[str] | None = None
    account: re.Pattern[str] | None = None
    symbol: re.Pattern[str] | None = None
    market_type: re.Pattern[str] | None = None

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        """Compile a validated rule."""
        match = rule.match
        return cls(
            rule=rule,
            policy=Policy.of(rule),
            row_metric=ROW_METRICS[rule.metric].get(rule.scope) if rule.scope != "account"
            else None,
            account_metric=ACCOUNT_METRICS[rule.metric] if rule.scope == "account" else None,
            exchange=_globs(match.exchange) if match else None,
            account=_globs(match.account) if match else None,
            symbol=_globs(match.symbol) if match else None,
            market_type=_globs(match.market_type) if match else None,
        )

    def fits_account(self, account: Account) -> bool:
        """Does the rule apply to this account at all (exchange and account globs)?"""
        return _fits(self.exchange, account.exchange) and _fits(self.account, account.name)

    def fits_asset(self, asset: Asset) -> bool:
        """Does the rule apply to this row (scope, symbol and market-type globs)?"""
        if self.rule.scope == "position" and asset.asset_type != "position":
            return False
        return _fits(self.symbol, asset.symbol) and _fits(self.market_type, asset.market_type)

    @property
    def filters_rows(self) -> bool:
        """Does the rule have symbol or market-type globs (else every row of its scope fits)?"""
        return self.symbol is not None or self.market_type is not None

    def safe_without_alert(self, value: Decimal) -> bool:
        """On the safe side of the lowest level: with no alert held, nothing can happen."""
        lowest = self.policy.levels[0][1]
        return value < lowest if self.policy.when == "above" else value > lowest


def compile_rules(rules: Iterable[Rule]) -> list[CompiledRule]:
    """Compile every rule once per load, not once per poll."""
    return [CompiledRule.of(rule) for rule in rules]


@dataclass(frozen=True, slots=True)
class Skip:
    """A rule that could not be evaluated for a row because an input was unknown."""

    rule: str
    account: str
    symbol: str


@dataclass
class Evaluation:
    """What the rules saw: an observation per alert key, and the rows they had to skip."""

    observations: list[tuple[Policy, Observation]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


Row = tuple[Asset, str]  # an asset and the symbol its alerts are keyed by


def labelled_rows(account: Account) -> tuple[list[Row], list[Row]]:
    """Every row and the position rows, each with its alert symbol, unique in the account.

    A symbol held in two market types (USDT in spot and in perp) is told apart as
    ``USDT (perp)`` from its second row on, and a further repeat by a number.
    """
    used: set[str] = set()
    rows: list[Row] = []
    for asset in account.assets:
        label = asset.symbol
        if label in used:
            label = f"{asset.symbol} ({asset.market_type})"
        number = 2
        while label in used:
            label = f"{asset.symbol} ({asset.market_type} #{number})"
            number += 1
        used.add(label)
        rows.append((asset, label))
    return rows, [row for row in rows if row[0].asset_type == "position"]


def evaluate(
    rules: Sequence[CompiledRule], snapshot: Snapshot, alerts: Mapping[AlertKey, Alert],
    now: datetime,
) -> Evaluation:
    """Evaluate every rule on every account of the snapshot.

    Only rows that matter become observations: a breach, or a row that has an alert.
    A safe row without an alert would step from nothing to nothing, so it is skipped at
    the cost of one comparison (tests/unit/test_fast_path.py checks this equals the
    plain evaluation of every row). Active alerts whose row is no longer in a complete,
    fresh account (a closed position, or a row the rule no longer matches) are observed
    as gone, so they resolve.
    """
    result = Evaluation()
    seen: set[tuple[str, str, str]] = set()  # keys of existing alerts met in this snapshot
    fresh_accounts = {account.name: account for account in snapshot.accounts}
    for account in snapshot.accounts:
        figures = AccountFigures.of(account)
        rows = labelled_rows(account)
        for compiled in rules:
            if compiled.fits_account(account):
                _observe(compiled, figures, rows, now, alerts, result, seen)
    by_name = {compiled.rule.name: compiled.policy for compiled in rules}
    for key, alert in alerts.items():
        policy = by_name.get(key.rule)
        fresh = fresh_accounts.get(key.account)
        if (policy is None or fresh is None or key in seen or not alert.active
                or not fresh.complete):
            continue
        result.observations.append(
            (policy, Observation(key, alert.exchange, None, gone=True))
        )
    return result


def _observe(
    compiled: CompiledRule, figures: AccountFigures, rows: tuple[list[Row], list[Row]],
    now: datetime, alerts: Mapping[AlertKey, Alert], result: Evaluation,
    seen: set[tuple[str, str, str]],
) -> None:
    account = figures.account
    name = compiled.rule.name
    if compiled.account_metric is not None:
        value = compiled.account_metric(figures, now)
        _record(compiled, (name, account.name, ""), account.exchange, value, alerts,
                result, seen)
        return
    row_metric = compiled.row_metric
    if row_metric is None:  # pragma: no cover - validation guarantees a metric for the scope
        return
    candidates = rows[1] if compiled.rule.scope == "position" else rows[0]
    filtered = compiled.filters_rows
    for asset, label in candidates:
        if filtered and not compiled.fits_asset(asset):
            continue
        _record(compiled, (name, account.name, label), account.exchange,
                row_metric(figures, asset), alerts, result, seen)


def _record(
    compiled: CompiledRule, key: tuple[str, str, str], exchange: str, value: Decimal | None,
    alerts: Mapping[AlertKey, Alert], result: Evaluation, seen: set[tuple[str, str, str]],
) -> None:
    previous = alerts.get(key)  # type: ignore[call-overload]  # a plain tuple equals its AlertKey
    if previous is not None:
        seen.add(key)
    if value is None:
        result.skipped.append(Skip(*key))
        return  # unknown: the alert, if any, stays exactly as it is
    if (previous is None or not previous.active) and compiled.safe_without_alert(value):
        return  # safe, and no alert to advance
    result.observations.append((compiled.policy, Observation(AlertKey(*key), exchange, value)))


@dataclass
class Decisions:
    """What a poll decided: alerts to store or drop, notices to send, rows skipped."""

    changed: dict[AlertKey, Alert] = field(default_factory=dict)
    dropped: set[AlertKey] = field(default_factory=set)
    notices: list[Notice] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def decide(
    rules: Sequence[CompiledRule],
    snapshot: Snapshot | None,
    alerts: Mapping[AlertKey, Alert],
    now: datetime,
    builtin: Sequence[tuple[Policy, Observation]] = (),
) -> Decisions:
    """One poll's decisions. ``snapshot`` is None when the poll failed: rule alerts stay."""
    evaluation = evaluate(rules, snapshot, alerts, now) if snapshot else Evaluation()
    decisions = Decisions(skipped=evaluation.skipped)
    for policy, observation in [*builtin, *evaluation.observations]:
        previous = decisions.changed.get(observation.key) or alerts.get(observation.key)
        _apply(decisions, observation.key, previous,
               lifecycle.step(policy, previous, observation, now))
    _resolve_removed_rules(rules, alerts, now, decisions)
    for key, alert in alerts.items():
        if lifecycle.expired(alert, now) and key not in decisions.changed:
            decisions.dropped.add(key)
    return decisions


def step_into(decisions: Decisions, policy: Policy, observation: Observation,
              alerts: Mapping[AlertKey, Alert], now: datetime) -> None:
    """Step one more alert (observed after the rules, like the action limit) into ``decisions``."""
    key = observation.key
    previous = decisions.changed.get(key) or alerts.get(key)
    _apply(decisions, key, previous, lifecycle.step(policy, previous, observation, now))


def _resolve_removed_rules(
    rules: Sequence[CompiledRule], alerts: Mapping[AlertKey, Alert], now: datetime,
    decisions: Decisions,
) -> None:
    names = {compiled.rule.name for compiled in rules} | BUILTIN_RULES
    for key, alert in alerts.items():
        if key.rule not in names and alert.active:
            _apply(decisions, key, alert, lifecycle.resolve_removed(alert, now))


def _apply(
    decisions: Decisions, key: AlertKey, previous: Alert | None,
    outcome: tuple[Alert | None, Notice | None],
) -> None:
    alert, notice = outcome
    if alert is None:
        if previous is not None:
            decisions.dropped.add(key)
    elif alert is not previous:
        decisions.changed[key] = alert
    if notice is not None:
        decisions.notices.append(notice)


@dataclass(frozen=True, slots=True)
class Breach:
    """A rule level crossed right now, regardless of ``for`` and of alert state (``check``)."""

    rule: str
    severity: str
    scope: str
    account: str
    exchange: str
    symbol: str | None
    metric: str
    value: Decimal
    threshold: Decimal
    detail: str = ""


def breaches(rules: Sequence[CompiledRule], snapshot: Snapshot, now: datetime) -> list[Breach]:
    """Every breach in the snapshot, and every account problem as an ``account-error``."""
    found: list[Breach] = []
    for policy, seen in evaluate(rules, snapshot, {}, now).observations:
        hit = policy.breached(seen.value, None) if seen.value is not None else None
        if hit is not None and seen.value is not None:
            found.append(Breach(policy.name, hit[0], policy.scope, seen.key.account,
                                seen.exchange, seen.key.symbol or None, policy.metric,
                                seen.value, hit[1]))
    for problem in snapshot.problems:
        found.append(Breach("account-error", "warning", "account", problem.account,
                            problem.exchange or "", problem.symbol, "account_error",
                            Decimal(1), Decimal(1), problem.message))
    return found
