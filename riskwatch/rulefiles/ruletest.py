"""``riskwatch rules test``: unit tests for rules, in the spirit of ``promtool test rules``.

A test file names rule files and, per test, a series of snapshots at given times and the
alerts expected at given times. The runner evaluates the rules every ``interval`` (as
the daemon polls) on the latest snapshot, through the real lifecycle, and compares the
alerts that are pending, firing, or resolved at that moment with the expectation.
Each evaluation also records every account's figures in a history that starts empty, as
the daemon records each successful poll, so ``drawdown`` and ``change`` rules see the
earlier steps of the test (and nothing before its start).

```yaml
rule_files: [../default.yaml]        # relative to this file
tests:
  - name: margin fires and resolves
    interval: 15s                    # optional (default 15s)
    snapshots:
      - at: 0s
        accounts:                    # the normalised shape (riskwatch snapshot --format json)
          - name: desk-1
            exchange: Bybit
            assets:
              - {symbol: ETH:PERP-USDT, asset_type: position, maint_margin: 60,
                 margin_balance: 100}
      - at: 1m
        cached: {balances: [...], errors: []}   # or the raw cached payload; `live:` for the other
    expect:
      - at: 0s
        alerts:
          - {rule: position-maint-margin, account: desk-1, symbol: ETH:PERP-USDT,
             severity: warning, state: firing}
      - at: 2m
        alerts: []                   # nothing pending or firing
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from riskwatch.core.evaluate import CompiledRule, compile_rules, decide
from riskwatch.core.history import Series, append, points_of
from riskwatch.core.lifecycle import Alert, AlertKey, State
from riskwatch.core.rules import Duration, Severity
from riskwatch.core.snapshot import NUMBER_FIELDS, Account, Asset, Snapshot
from riskwatch.errors import RuleProblem, RulesError
from riskwatch.rulefiles.loader import load_rules, locate_problem, read_yaml
from riskwatch.source.adapters import from_cached, from_live

START = datetime(2026, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _asset_row_model() -> type[BaseModel]:
    """The snapshot's asset fields as a strict model, with the defaults a row written by
    hand wants (a perp position); made from the snapshot's own list of number fields, so
    a new field of :class:`~riskwatch.core.snapshot.Asset` is one here too."""
    fields: dict[str, Any] = {
        "symbol": (str, ...), "asset_type": (Literal["token", "position"], "position"),
        "market_type": (str | None, "perp"),
        **{name: (Decimal | None, None) for name in NUMBER_FIELDS}}
    model: type[BaseModel] = create_model(
        "AssetRow", __base__=_Strict, __doc__="An asset in the normalised shape.", **fields)
    return model


if TYPE_CHECKING:
    AssetRow = BaseModel
else:
    AssetRow = _asset_row_model()


class AccountRow(_Strict):
    """An account in the normalised shape.

    Its data counts as taken at each evaluation (the API keeps answering fresh data)
    unless ``taken_at`` fixes when it was taken, to test ``data_age``.
    """

    name: str
    exchange: str = "Bybit"
    id: str | None = None
    equity: Decimal | None = None
    taken_at: Duration | None = None
    assets: list[AssetRow] = []


class SnapshotAt(_Strict):
    """The API's answer from ``at`` on: normalised ``accounts``, or a raw payload."""

    at: Duration
    accounts: list[AccountRow] | None = None
    cached: Any = None
    live: Any = None

    @model_validator(mode="after")
    def _one_shape(self) -> SnapshotAt:
        given = [self.accounts is not None, self.cached is not None, self.live is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of accounts, cached or live")
        return self


class ExpectedAlert(_Strict):
    """An alert expected at a time."""

    rule: str
    account: str = ""
    symbol: str = ""
    severity: Severity
    state: Literal["pending", "firing", "resolved"] = "firing"


class Expectation(_Strict):
    """The alerts expected at ``at`` (an empty list: nothing pending or firing)."""

    at: Duration
    alerts: list[ExpectedAlert]


class RuleTest(_Strict):
    """One scenario."""

    name: str
    interval: Duration = timedelta(seconds=15)
    snapshots: Annotated[list[SnapshotAt], Field(min_length=1)]
    expect: list[Expectation]


class TestFile(_Strict):
    """A rule test file."""

    rule_files: Annotated[list[str], Field(min_length=1)]
    tests: list[RuleTest]


@dataclass
class Outcome:
    """The result of one test: failures as readable lines (empty when it passed)."""

    file: str
    name: str
    failures: list[str]


def load_test_file(path: Path) -> tuple[TestFile, list[CompiledRule]]:
    """Parse a test file and load the rules it names; RulesError (file:line:col) if bad."""
    located = read_yaml(path)
    try:
        parsed = TestFile.model_validate(located.value)
    except ValidationError as error:
        raise RulesError([locate_problem(str(path), located, detail, document=TestFile)
                          for detail in error.errors()]) from None
    rule_paths = [(path.parent / name) for name in parsed.rule_files]
    missing = [p for p in rule_paths if not p.exists()]
    if missing:
        where = located.position(("rule_files",))
        raise RulesError([RuleProblem(str(path), where.line, where.column,
                                      f"rule file {p} does not exist") for p in missing])
    return parsed, compile_rules(load_rules(rule_paths))


def run_file(path: Path) -> list[Outcome]:
    """Run every test of a file."""
    parsed, rules = load_test_file(path)
    return [Outcome(str(path), test.name, run_test(test, rules)) for test in parsed.tests]


def run_test(test: RuleTest, rules: list[CompiledRule]) -> list[str]:
    """Evaluate the scenario; return a failure line for every expectation not met."""
    failures: list[str] = []
    snapshots = sorted(test.snapshots, key=lambda s: s.at)
    expectations = {e.at: e for e in test.expect}
    end = max([s.at for s in snapshots] + [e.at for e in test.expect])
    times = _timeline(test.interval, end, set(expectations))
    alerts: dict[AlertKey, Alert] = {}
    history: dict[str, Series] = {}
    for offset in times:
        now = START + offset
        current = [s for s in snapshots if s.at <= offset]
        snapshot = _snapshot(current[-1], now) if current else None
        decisions = decide(rules, snapshot, alerts, now, history=history)
        if snapshot is not None:  # recorded after the poll is decided, as the daemon does
            for name, point in points_of(snapshot, now).items():
                history[name] = append(history.get(name, Series(interval=test.interval)),
                                       point)
        for key in decisions.dropped:
            alerts.pop(key, None)
        alerts.update(decisions.changed)
        if offset in expectations:
            failures.extend(_compare(expectations[offset], alerts, now))
    return failures


def _timeline(interval: timedelta, end: timedelta, extra: set[timedelta]) -> list[timedelta]:
    step = interval if interval > timedelta(0) else timedelta(seconds=15)
    times = set(extra)
    current = timedelta(0)
    while current <= end:
        times.add(current)
        current += step
    return sorted(times)


def _snapshot(given: SnapshotAt, now: datetime) -> Snapshot:
    if given.cached is not None:
        return _fill_times(from_cached(given.cached, now), now)
    if given.live is not None:
        return from_live(given.live, now)
    accounts = tuple(
        Account(name=a.name, exchange=a.exchange, id=a.id, equity=a.equity,
                taken_at=now if a.taken_at is None else START + a.taken_at,
                assets=tuple(Asset(**row.model_dump()) for row in a.assets))
        for a in given.accounts or []
    )
    return Snapshot("cached", now, accounts)


def _fill_times(snapshot: Snapshot, taken_at: datetime) -> Snapshot:
    """A raw cached payload without timestamp_millis counts as taken at the evaluation."""
    accounts = tuple(a if a.taken_at is not None else replace(a, taken_at=taken_at)
                     for a in snapshot.accounts)
    return replace(snapshot, accounts=accounts)


def _describe(state: str, severity: str, rule: str, account: str, symbol: str) -> str:
    return " ".join(part for part in (state, severity, rule, account, symbol) if part)


def _compare(expectation: Expectation, alerts: dict[AlertKey, Alert], now: datetime) -> list[str]:
    expected = sorted(_describe(e.state, e.severity, e.rule, e.account, e.symbol)
                      for e in expectation.alerts)
    actual = sorted(
        _describe(a.state.value, a.severity, a.key.rule, a.key.account, a.key.symbol)
        for a in alerts.values() if a.active or (a.state is State.RESOLVED and a.since == now)
    )
    if expected == actual:
        return []
    at = int(expectation.at.total_seconds())
    return [f"at {at}s:\n    expected: {', '.join(expected) or '(nothing)'}\n"
            f"    got:      {', '.join(actual) or '(nothing)'}"]
