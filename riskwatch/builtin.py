"""The built-in alerts (SPEC §5), observed from how a poll went rather than from a rule.

They go through the same lifecycle as rule alerts: ``observe`` turns a poll's outcome
into observations, and :func:`riskwatch.evaluate.decide` steps them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from riskwatch.alerts import AlertKey, Observation, Policy
from riskwatch.snapshot import Snapshot

ONE = Decimal(1)
ZERO = Decimal(0)

AUTH_FAILED = Policy(
    name="auth-failed", metric="auth", scope="source", levels=(("critical", ONE),),
    description="The Tread.fi API refuses the token (401): nothing is being watched.",
)
ACCOUNT_ERROR = Policy(
    name="account-error", metric="account_error", scope="account", levels=(("warning", ONE),),
    description="The API could not fetch this account, or a row of it could not be read.",
)
RULES_INVALID = Policy(
    name="rules-invalid", metric="rules", scope="source", levels=(("critical", ONE),),
    description="The rule files changed and no longer load; the previous rules stay in force.",
)


def action_limit_policy(limit: int) -> Policy:
    """``action-limit`` fires once when the hourly cap of leverage actions is reached."""
    return Policy(
        name="action-limit", metric="actions", scope="source",
        levels=(("critical", Decimal(limit)),), repeat=timedelta(0),
        description="The hourly limit of leverage actions is reached: riskwatch stops "
                    "lowering leverage until the hour has room (RISKWATCH_MAX_ACTIONS_PER_HOUR).",
    )


def action_limit(used: int, limit: int) -> tuple[Policy, Observation]:
    """The ``action-limit`` observation: the actions of the last hour against the cap."""
    return action_limit_policy(limit), Observation(AlertKey("action-limit", ""), "",
                                                   Decimal(used))


def source_down_policy(stale_after: timedelta) -> Policy:
    """``source-down`` fires when the newest good data is older than ``stale_after``."""
    return Policy(
        name="source-down", metric="data_age", scope="source",
        levels=(("critical", Decimal(int(stale_after.total_seconds()))),),
        description="No fresh balances from Tread.fi: alerts are frozen as they were.",
    )


@dataclass(frozen=True)
class PollOutcome:
    """How one poll went, as the built-in alerts need to know it."""

    snapshot: Snapshot | None
    error: str | None = None  # one line, for the alert text
    auth_failed: bool = False
    last_good_data: datetime | None = None  # newest data time of the last successful poll


def observe(
    outcome: PollOutcome, now: datetime, stale_after: timedelta
) -> list[tuple[Policy, Observation]]:
    """The built-in observations of one poll."""
    observations: list[tuple[Policy, Observation]] = []
    age = None if outcome.last_good_data is None else Decimal(
        int(max((now - outcome.last_good_data).total_seconds(), 0)))
    detail = outcome.error or ""
    observations.append((source_down_policy(stale_after),
                         Observation(AlertKey("source-down", ""), "", age, detail=detail)))
    auth = ONE if outcome.auth_failed else (ZERO if outcome.snapshot is not None else None)
    observations.append((AUTH_FAILED, Observation(AlertKey("auth-failed", ""), "", auth,
                                                  detail=detail if outcome.auth_failed else "")))
    if outcome.snapshot is not None:
        observations.extend(_account_errors(outcome.snapshot))
    return observations


def _account_errors(snapshot: Snapshot) -> list[tuple[Policy, Observation]]:
    messages: dict[str, list[str]] = defaultdict(list)
    exchanges: dict[str, str] = {}
    for problem in snapshot.problems:
        where = f"{problem.symbol}: " if problem.symbol else ""
        messages[problem.account].append(where + problem.message)
        exchanges[problem.account] = problem.exchange or exchanges.get(problem.account, "")
    observations = [
        (ACCOUNT_ERROR, Observation(AlertKey("account-error", name), exchanges[name], ONE,
                                    detail="; ".join(found)[:500]))
        for name, found in messages.items()
    ]
    observations.extend(
        (ACCOUNT_ERROR, Observation(AlertKey("account-error", account.name), account.exchange,
                                    ZERO))
        for account in snapshot.accounts if account.name not in messages
    )
    return observations


def rules_invalid(error: str | None) -> tuple[Policy, Observation]:
    """The ``rules-invalid`` observation: 1 while a reload fails, 0 once rules load."""
    value = ONE if error else ZERO
    return RULES_INVALID, Observation(AlertKey("rules-invalid", ""), "", value,
                                      detail=error or "")
