"""The built-in alerts (SPEC §5), observed from how a poll went rather than from a rule.

They go through the same lifecycle as rule alerts: ``observe`` turns a poll's outcome
into observations, and :func:`riskwatch.core.evaluate.decide` steps them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, Observation, Policy, State
from riskwatch.core.snapshot import AccountProblem, Snapshot

ONE = Decimal(1)
ZERO = Decimal(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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

ACCOUNT_MISSING = Policy(
    name="account-missing", metric="account_missing", scope="account",
    levels=(("critical", ONE),),
    description="This account is watched, or has alerts, but the API's answer does not "
                "include it: nothing about it is being checked. Its alerts stay as they were.",
)
STORE_FAILED = Policy(
    name="store-failed", metric="store", scope="source", levels=(("critical", ONE),),
    description="The state store cannot be written: riskwatch cannot record alerts or send "
                "through its outbox until it can.",
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
    answered: frozenset[str] = frozenset()  # accounts the answer named, read or not
    expected: frozenset[str] = frozenset()  # accounts that must be in the answer
    missing_before: frozenset[str] = frozenset()  # accounts whose account-missing is active


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
        observations.extend(_missing(outcome))
    return observations


def expected_accounts(watched: frozenset[str] | None,
                      with_alerts: Iterable[str]) -> frozenset[str]:
    """The accounts a fresh answer must name: the watched ones, and those with alerts."""
    return frozenset(with_alerts) if watched is None else watched


def answered_accounts(snapshot: Snapshot) -> frozenset[str]:
    """Every account the answer named: readable, unreadable, or in its ``errors``."""
    return frozenset(account.name for account in snapshot.accounts) | frozenset(
        problem.account for problem in snapshot.problems)


def missing_accounts(outcome: PollOutcome) -> list[str]:
    """The expected accounts a fresh answer left out, sorted."""
    return sorted(outcome.expected - outcome.answered)


def _missing(outcome: PollOutcome) -> list[tuple[Policy, Observation]]:
    """``account-missing``: 1 for each expected account the answer left out, 0 for each
    whose alert is active and that the answer names again (the others need no step)."""
    missing = missing_accounts(outcome)
    back = sorted(outcome.missing_before - set(missing))
    return [
        (ACCOUNT_MISSING, Observation(AlertKey("account-missing", name), "", ONE,
                                      detail="not in the API's answer"))
        for name in missing
    ] + [(ACCOUNT_MISSING, Observation(AlertKey("account-missing", name), "", ZERO))
         for name in back]


def store_failed_notice(error: str, since: datetime, now: datetime, *,
                        resolved: bool = False) -> Notice:
    """The ``store-failed`` notice, made outside the lifecycle: it cannot wait in the store."""
    alert = Alert(
        key=AlertKey("store-failed", ""), state=State.RESOLVED if resolved else State.FIRING,
        severity="critical", exchange="", metric="store", value=None, threshold=None,
        since=since if not resolved else now, firing_since=since,
        description=STORE_FAILED.description, detail=error[:500],
    )
    return Notice(NoticeKind.RESOLVED if resolved else NoticeKind.FIRING, alert)


def _account_errors(snapshot: Snapshot) -> list[tuple[Policy, Observation]]:
    messages: dict[str, list[str]] = defaultdict(list)
    exchanges: dict[str, str] = {}
    for problem in snapshot.problems:
        where = f"{problem.symbol}: " if problem.symbol else ""
        messages[problem.account].append(where + problem.message)
        exchanges[problem.account] = problem.exchange or exchanges.get(problem.account, "")
    observations = [
        (ACCOUNT_ERROR, Observation(AlertKey("account-error", name), exchanges[name], ONE,
                                    detail="; ".join(dict.fromkeys(found))[:500]))
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
    problems = "; ".join(line for line in (error or "").splitlines() if line.strip())
    return RULES_INVALID, Observation(AlertKey("rules-invalid", ""), "", value,
                                      detail=problems)


def with_problems(
    observations: Sequence[tuple[Policy, Observation]], problems: Sequence[AccountProblem],
) -> Sequence[tuple[Policy, Observation]]:
    """``observations`` with an ``account-error`` for each account in ``problems``.

    Evaluation finds these (numbers that could not be computed) after the poll's own
    observations were made: each replaces that account's "no error" observation, so the
    alert never resolves and fires again within one poll.
    """
    if not problems:
        return observations  # the usual poll: nothing to copy
    found = _account_errors(Snapshot("cached", _EPOCH, (), tuple(problems)))
    keys = {observation.key for _, observation in found}
    kept = [(policy, seen) for policy, seen in observations
            if seen.key not in keys or (seen.value is not None and seen.value > 0)]
    already = {seen.key for _, seen in kept if seen.key in keys}
    return kept + [(policy, seen) for policy, seen in found if seen.key not in already]
