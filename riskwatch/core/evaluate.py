"""Pure evaluation: rules over a snapshot, then every alert one step through its lifecycle.

``decide(rules, snapshot, alerts, now, builtin, history)`` is the whole functional core of
a poll: no I/O, no clock, no globals. The daemon persists and delivers what it returns.
Rules on ``drawdown`` or with ``change`` also read each account's recorded history
(:mod:`riskwatch.core.history`); the other rules never look at it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fnmatch import translate

from riskwatch.core import builtin_alerts as builtins
from riskwatch.core import lifecycle as lifecycle
from riskwatch.core.history import History, Reading, SeriesView, change, drawdown
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, Observation, Policy
from riskwatch.core.measures import (
    ACCOUNT_METRICS,
    ROW_COLUMNS,
    ROW_METRICS,
    AccountFigures,
    AccountMetric,
    RowColumn,
    RowMetric,
)
from riskwatch.core.rules import BUILTIN_RULES, Rule
from riskwatch.core.snapshot import Account, AccountProblem, Asset, Snapshot


def _globs(patterns: list[str] | None) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns), re.IGNORECASE)


def _fits(pattern: re.Pattern[str] | None, value: str | None) -> bool:
    return pattern is None or (value is not None and pattern.match(value) is not None)


# An account metric that reads the account's history as well as its figures.
HistoryMetric = Callable[[AccountFigures, SeriesView | None, datetime], Reading]
NO_HISTORY: History = {}


def _history_metric(rule: Rule) -> HistoryMetric | None:
    """The history metric of an account rule on ``drawdown`` or with ``change``, else None."""
    if rule.scope != "account":
        return None
    if rule.metric == "drawdown":
        window = rule.window
        assert window is not None  # the loader requires it

        def fall(figures: AccountFigures, series: SeriesView | None, now: datetime) -> Reading:
            return drawdown(series, figures.equity, now, window)

        return fall
    duration = rule.change
    if duration is None:
        return None
    name, metric = rule.metric, ACCOUNT_METRICS[rule.metric]

    def moved(figures: AccountFigures, series: SeriesView | None, now: datetime) -> Reading:
        return Reading(change(series, name, metric(figures, now), now, duration))

    return moved


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to evaluate: its policy, its metric function and its compiled globs."""

    rule: Rule
    policy: Policy
    row_metric: RowMetric | None
    row_column: RowColumn | None
    account_metric: AccountMetric | None
    history_metric: HistoryMetric | None = None
    exchange: re.Pattern[str] | None = None
    account: re.Pattern[str] | None = None
    symbol: re.Pattern[str] | None = None
    market_type: re.Pattern[str] | None = None

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        """Compile a validated rule."""
        match = rule.match
        history_metric = _history_metric(rule)
        return cls(
            rule=rule,
            policy=Policy.of(rule),
            row_metric=ROW_METRICS[rule.metric].get(rule.scope) if rule.scope != "account"
            else None,
            row_column=ROW_COLUMNS[rule.metric].get(rule.scope) if rule.scope != "account"
            else None,
            account_metric=ACCOUNT_METRICS[rule.metric]
            if rule.scope == "account" and history_metric is None else None,
            history_metric=history_metric,
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
    def filters_accounts(self) -> bool:
        """Does the rule have exchange or account globs (else every account fits)?"""
        return self.exchange is not None or self.account is not None

    @property
    def filters_rows(self) -> bool:
        """Does the rule have symbol or market-type globs (else every row of its scope fits)?"""
        return self.symbol is not None or self.market_type is not None

    def value_of(self, reading: Reading) -> Decimal | None:
        """A history metric's value as the rule may use it: a lower bound counts only when it
        already breaches the lowest level of an ``above`` rule (it cannot show safety)."""
        value = reading.value
        if reading.lower_bound and value is not None and (
                self.policy.when != "above" or value < self.policy.levels[0][1]):
            return None
        return value

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
    unreadable: list[AccountProblem] = field(default_factory=list)  # could not be computed

    def merge(self, other: Evaluation) -> None:
        """Add what ``other`` (a chunk's evaluation) found."""
        self.observations.extend(other.observations)
        self.skipped.extend(other.skipped)
        self.unreadable.extend(other.unreadable)


Row = tuple[Asset, str]  # an asset and the symbol its alerts are keyed by
Key = tuple[str, str, str]  # an AlertKey as a plain tuple (it hashes and compares equal)


def row_labels(assets: Sequence[Asset]) -> list[str]:
    """Each row's alert symbol, unique in the account.

    A symbol held in two market types (USDT in spot and in perp) is told apart as
    ``USDT (perp)`` from its second row on, and a further repeat by a number.
    """
    labels = [asset.symbol for asset in assets]
    if len(set(labels)) == len(labels):
        return labels  # the usual case: every symbol once
    used: set[str] = set()
    for index, asset in enumerate(assets):
        label = asset.symbol
        if label in used:
            label = f"{asset.symbol} ({asset.market_type})"
        number = 2
        while label in used:
            label = f"{asset.symbol} ({asset.market_type} #{number})"
            number += 1
        used.add(label)
        labels[index] = label
    return labels


def labelled_rows(account: Account) -> tuple[list[Row], list[Row]]:
    """Every row and the position rows, each with its alert symbol (see :func:`row_labels`)."""
    rows = list(zip(account.assets, row_labels(account.assets), strict=True))
    return rows, [row for row in rows if row[0].asset_type == "position"]


class _Table:
    """A few accounts laid out for evaluation a column at a time: every row of every
    account in one list, with the account and the alert symbol of each row."""

    def __init__(self, accounts: Sequence[Account], history: History = NO_HISTORY) -> None:
        self.accounts = accounts
        self.history = history
        self.figures = [AccountFigures.of(account) for account in self.accounts]
        self.rows: list[Asset] = []
        self.owner: list[int] = []  # the account (index) of each row
        self.labels: list[str] = []
        self.start: list[int] = []  # each account's first row
        for index, account in enumerate(self.accounts):
            self.start.append(len(self.rows))
            self.rows.extend(account.assets)
            self.owner.extend([index] * len(account.assets))
            self.labels.extend(row_labels(account.assets))
        self.symbols: list[str | None] = [row.symbol for row in self.rows]
        self.markets: list[str | None] = [row.market_type for row in self.rows]
        self._scopes: dict[str, tuple[list[int], list[Asset], list[AccountFigures]]] = {}
        self._columns: dict[tuple[str, str], list[Decimal | None]] = {}
        self._by_label: dict[int, dict[str, int]] = {}

    def scope(self, scope: str) -> tuple[list[int], list[Asset], list[AccountFigures]]:
        """The rows of a scope (``position`` or ``asset``): indexes, rows, account figures."""
        if scope not in self._scopes:
            rows = (range(len(self.rows)) if scope != "position" else
                    [r for r, row in enumerate(self.rows) if row.asset_type == "position"])
            self._scopes[scope] = (list(rows), [self.rows[r] for r in rows],
                                   [self.figures[self.owner[r]] for r in rows])
        return self._scopes[scope]

    def forget_columns(self) -> None:
        """Drop the rule columns once every rule has run over this chunk.

        Only the rows are needed afterwards (for alerts the scans did not meet); the
        columns hold a Decimal per row and ratio metric, and keeping them for every chunk
        until the end of the poll raised the daemon's peak memory by about 8 MB at
        1,000 accounts.
        """
        self._scopes.clear()
        self._columns.clear()

    def find(self, account: int, label: str) -> int | None:
        """The row of ``account`` whose alert symbol is ``label``, if it is still there."""
        places = self._by_label.get(account)
        if places is None:
            first = self.start[account]
            rows = range(first, first + len(self.accounts[account].assets))
            places = self._by_label[account] = {self.labels[row]: row for row in rows}
        return places.get(label)

    def values(self, compiled: CompiledRule) -> tuple[list[int], list[Decimal | None]]:
        """The rows a row rule applies to, and its metric on each.

        A rule without globs sees every row of its scope, and shares the column with the
        other such rules of its metric; a rule with globs computes it on its rows only.
        """
        column = compiled.row_column
        assert column is not None
        rows, assets, figures = self.scope(compiled.rule.scope)
        if not compiled.filters_accounts and not compiled.filters_rows:
            key = (compiled.rule.metric, compiled.rule.scope)
            if key not in self._columns:
                self._columns[key] = column(assets, figures)
            return rows, self._columns[key]
        rows = self._matching(compiled, rows)
        return rows, column([self.rows[r] for r in rows],
                            [self.figures[self.owner[r]] for r in rows])

    def _matching(self, compiled: CompiledRule, rows: list[int]) -> list[int]:
        if compiled.filters_accounts:
            fits = [compiled.fits_account(account) for account in self.accounts]
            rows = [r for r in rows if fits[self.owner[r]]]
        for pattern, texts in ((compiled.symbol, self.symbols),
                               (compiled.market_type, self.markets)):
            if pattern is not None:  # one glob match per distinct symbol, not per row
                verdicts = {text: _fits(pattern, text) for text in set(texts)}
                rows = [r for r in rows if verdicts[texts[r]]]
        return rows


# Accounts evaluated together. Every rule runs over a chunk's rows while they are still in
# the CPU cache (about 1 MB for 50 accounts of 20 rows); at 10,000 accounts, one table of
# all rows made each rule a trip through main memory and evaluation twice as slow.
CHUNK = 50


def evaluate(
    rules: Sequence[CompiledRule], snapshot: Snapshot, alerts: Mapping[AlertKey, Alert],
    now: datetime, history: History = NO_HISTORY,
) -> Evaluation:
    """Evaluate every rule on every account of the snapshot.

    Only what can change an alert becomes an observation: a value beyond the rule's
    lowest level (unless its firing alert :func:`~riskwatch.core.lifecycle.holds`), or a row
    that has an active alert. Each rule's metric is computed as one column over all
    the rows it applies to, and only the rows past the lowest level are looked at one
    by one (tests/unit/test_fast_path.py checks this equals stepping every row).
    Active alerts whose row is no longer in a complete account (a closed position, or
    a row the rule no longer matches) are observed as gone, so they resolve.
    """
    result = Evaluation()
    # The stored alerts met on the way, by id: comparing ints is cheaper than comparing
    # 300,000 keys of three strings each, and ``alerts`` holds them all for the whole call.
    seen: set[int] = set()
    tables = []
    for start in range(0, len(snapshot.accounts), CHUNK):
        chunk = snapshot.accounts[start:start + CHUNK]
        try:
            tables.append(_evaluate_chunk(rules, _Table(chunk, history), now, alerts, result,
                                          seen))
        except Exception:  # one account's numbers broke the arithmetic: find which
            for account in chunk:
                table = _evaluate_alone(rules, _Table([account], history), now, alerts, result,
                                        seen)
                if table is not None:
                    tables.append(table)
    _observe_unmet(rules, tables, now, alerts, result, seen)
    return result


def _evaluate_chunk(rules: Sequence[CompiledRule], table: _Table, now: datetime,
                    alerts: Mapping[AlertKey, Alert], result: Evaluation,
                    seen: set[int]) -> _Table:
    """Every rule over a few accounts; ``result`` and ``seen`` change only on success."""
    found = Evaluation()
    met: set[int] = set()
    for compiled in rules:
        if compiled.row_column is None:
            _account_rule(compiled, table, now, alerts, found, met)
        else:
            _row_rule(compiled, table, now, alerts, found, met)
    table.forget_columns()
    result.merge(found)
    seen.update(met)
    return table


def _evaluate_alone(rules: Sequence[CompiledRule], table: _Table, now: datetime,
                    alerts: Mapping[AlertKey, Alert], result: Evaluation,
                    seen: set[int]) -> _Table | None:
    """One account on its own; if it cannot be computed, an ``account-error`` for it alone.

    Its alerts are then not met and not in any table, so they stay exactly as they were.
    """
    account = table.accounts[0]
    try:
        return _evaluate_chunk(rules, table, now, alerts, result, seen)
    except Exception as error:
        message = f"its numbers could not be computed ({type(error).__name__})"
        result.unreadable.append(AccountProblem(account.name, message, account.exchange))
        return None


def _row_rule(compiled: CompiledRule, table: _Table, now: datetime,
              alerts: Mapping[AlertKey, Alert], result: Evaluation, seen: set[int]) -> None:
    rows, values = table.values(compiled)
    name = compiled.rule.name
    accounts, owner, labels = table.accounts, table.owner, table.labels
    for index in _unknown(values):
        row = rows[index]
        _record_unknown(result, seen, alerts, (name, accounts[owner[row]].name, labels[row]))
    hits = _past_lowest(compiled, values)
    keys = [(name, accounts[owner[rows[index]]].name, labels[rows[index]]) for index, _ in hits]
    _record_hits(compiled, keys, [accounts[owner[rows[index]]].exchange for index, _ in hits],
                 [value for _, value in hits], now, alerts, result, seen)


def _account_rule(compiled: CompiledRule, table: _Table, now: datetime,
                  alerts: Mapping[AlertKey, Alert], result: Evaluation, seen: set[int]) -> None:
    metric = compiled.account_metric
    fitting = [a for a, account in enumerate(table.accounts) if compiled.fits_account(account)]
    if metric is not None:
        values = [metric(table.figures[a], now) for a in fitting]
    else:
        values = [_history_value(compiled, table, a, now) for a in fitting]
    name = compiled.rule.name
    for index in _unknown(values):
        _record_unknown(result, seen, alerts, (name, table.accounts[fitting[index]].name, ""))
    hits = [(table.accounts[fitting[index]], value)
            for index, value in _past_lowest(compiled, values)]
    _record_hits(compiled, [(name, account.name, "") for account, _ in hits],
                 [account.exchange for account, _ in hits], [value for _, value in hits],
                 now, alerts, result, seen)


def _history_value(compiled: CompiledRule, table: _Table, account: int,
                   now: datetime) -> Decimal | None:
    """A history rule's value for one account of the table."""
    metric = compiled.history_metric
    assert metric is not None
    series = table.history.get(table.accounts[account].name)
    return compiled.value_of(metric(table.figures[account], series, now))


def _unknown(values: list[Decimal | None]) -> list[int]:
    return [index for index, value in enumerate(values) if value is None]


def _past_lowest(compiled: CompiledRule,
                 values: list[Decimal | None]) -> list[tuple[int, Decimal]]:
    """Where a value breaches the rule's lowest level: the only rows that can start an alert."""
    lowest = compiled.policy.levels[0][1]
    if compiled.policy.when == "above":
        return [(i, value) for i, value in enumerate(values)
                if value is not None and value >= lowest]
    return [(i, value) for i, value in enumerate(values) if value is not None and value <= lowest]


def _record_unknown(result: Evaluation, seen: set[int], alerts: Mapping[AlertKey, Alert],
                    key: Key) -> None:
    """An unknown input: the alert, if any, stays exactly as it is."""
    previous = alerts.get(key)  # type: ignore[call-overload]  # a tuple equals its AlertKey
    if previous is not None:
        seen.add(id(previous))
    result.skipped.append(Skip(*key))


def _record_hits(compiled: CompiledRule, keys: list[Key], exchanges: list[str],
                 values: list[Decimal], now: datetime, alerts: Mapping[AlertKey, Alert],
                 result: Evaluation, seen: set[int]) -> None:
    """Rows past the lowest level: observe each, unless its firing alert simply holds."""
    previous = list(map(alerts.get, keys))  # type: ignore[arg-type]  # a tuple equals its AlertKey
    seen.update(id(alert) for alert in previous if alert is not None)
    steady = lifecycle.Steady(compiled.policy, now)
    for key, exchange, value, alert in zip(keys, exchanges, values, previous, strict=True):
        if alert is None or not steady.holds(alert, value):
            result.observations.append(
                (compiled.policy, Observation(AlertKey(*key), exchange, value)))


def _observe_unmet(rules: Sequence[CompiledRule], tables: list[_Table], now: datetime,
                   alerts: Mapping[AlertKey, Alert], result: Evaluation, seen: set[int]) -> None:
    """Active alerts the scans did not meet: back on the safe side, or gone."""
    by_name = {compiled.rule.name: compiled for compiled in rules}
    where = {account.name: (table, index)
             for table in tables for index, account in enumerate(table.accounts)}
    for key, alert in alerts.items():
        if id(alert) in seen or not alert.active:
            continue
        compiled = by_name.get(key.rule)
        found = where.get(key.account)
        if compiled is None or found is None:
            continue  # a removed rule resolves elsewhere; a missing account proves nothing
        table, account = found
        try:
            value = _current_value(compiled, table, account, key.symbol, now)
        except Exception as error:  # the alert stays as it is; the account is reported
            found_account = table.accounts[account]
            result.unreadable.append(AccountProblem(
                found_account.name, f"its numbers could not be computed ({type(error).__name__})",
                found_account.exchange))
            continue
        if value is not None:
            result.observations.append(
                (compiled.policy, Observation(key, table.accounts[account].exchange, value)))
        elif table.accounts[account].complete:
            result.observations.append(
                (compiled.policy, Observation(key, alert.exchange, None, gone=True)))


def _current_value(compiled: CompiledRule, table: _Table, account: int, label: str,
                   now: datetime) -> Decimal | None:
    """The rule's value for one alert's row now; None when the row is gone or no longer fits.

    (An unknown value was met by the scans, so None here always means gone.)
    """
    if not compiled.fits_account(table.accounts[account]):
        return None
    figures = table.figures[account]
    if compiled.account_metric is not None:
        return compiled.account_metric(figures, now)
    if compiled.history_metric is not None:
        return _history_value(compiled, table, account, now)
    row = table.find(account, label)
    if row is None or not compiled.fits_asset(table.rows[row]):
        return None
    metric = compiled.row_metric
    assert metric is not None
    return metric(figures, table.rows[row])


@dataclass
class Decisions:
    """What a poll decided: alerts to store or drop, notices to send, rows skipped."""

    changed: dict[AlertKey, Alert] = field(default_factory=dict)
    dropped: set[AlertKey] = field(default_factory=set)
    notices: list[Notice] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def copy(self) -> Decisions:
        """A copy whose collections can change without changing these decisions."""
        return Decisions(dict(self.changed), set(self.dropped), list(self.notices),
                         list(self.skipped))


def decide(
    rules: Sequence[CompiledRule],
    snapshot: Snapshot | None,
    alerts: Mapping[AlertKey, Alert],
    now: datetime,
    builtin: Sequence[tuple[Policy, Observation]] = (),
    history: History = NO_HISTORY,
) -> Decisions:
    """One poll's decisions. ``snapshot`` is None when the poll failed: rule alerts stay.

    ``history`` is each account's recorded series (account name -> series), read only by
    rules on ``drawdown`` or with ``change``; an account without one has no history yet.
    """
    evaluation = evaluate(rules, snapshot, alerts, now, history) if snapshot else Evaluation()
    decisions = Decisions(skipped=evaluation.skipped)
    builtin = builtins.with_problems(builtin, evaluation.unreadable)
    for policy, observation in [*builtin, *evaluation.observations]:
        previous = decisions.changed.get(observation.key) or alerts.get(observation.key)
        _apply(decisions, observation.key, previous,
               lifecycle.step(policy, previous, observation, now))
    _resolve_removed_rules_and_expire(rules, alerts, now, decisions)
    return decisions


def stepped(decisions: Decisions, policy: Policy, observation: Observation,
            alerts: Mapping[AlertKey, Alert], now: datetime) -> Decisions:
    """``decisions`` with one more alert stepped (one observed after the rules, like the
    action limit); a new value, ``decisions`` is left as it was."""
    key = observation.key
    previous = decisions.changed.get(key) or alerts.get(key)
    result = decisions.copy()
    _apply(result, key, previous, lifecycle.step(policy, previous, observation, now))
    return result


def _resolve_removed_rules_and_expire(
    rules: Sequence[CompiledRule], alerts: Mapping[AlertKey, Alert], now: datetime,
    decisions: Decisions,
) -> None:
    """Resolve the alerts of rules that are gone; drop resolved alerts kept long enough."""
    names = {compiled.rule.name for compiled in rules} | BUILTIN_RULES
    for key, alert in alerts.items():  # one pass: this runs over every stored alert
        if alert.state is lifecycle.State.RESOLVED:
            if lifecycle.expired(alert, now) and key not in decisions.changed:
                decisions.dropped.add(key)
        elif key[0] not in names:
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


def breaches(rules: Sequence[CompiledRule], snapshot: Snapshot, now: datetime,
             history: History = NO_HISTORY) -> list[Breach]:
    """Every breach in the snapshot, and every account problem as an ``account-error``."""
    found: list[Breach] = []
    evaluation = evaluate(rules, snapshot, {}, now, history)
    for policy, seen in evaluation.observations:
        hit = policy.breached(seen.value, None) if seen.value is not None else None
        if hit is not None and seen.value is not None:
            found.append(Breach(policy.name, hit[0], policy.scope, seen.key.account,
                                seen.exchange, seen.key.symbol or None, policy.metric,
                                seen.value, hit[1]))
    for problem in [*snapshot.problems, *evaluation.unreadable]:
        found.append(Breach("account-error", "warning", "account", problem.account,
                            problem.exchange or "", problem.symbol, "account_error",
                            Decimal(1), Decimal(1), problem.message))
    return found
