"""Time never goes backwards for an account, and never runs ahead of the clock (SPEC §5).

A cache can answer with data older than an answer already seen for an account (a
lagging replica of the cache, a retried request). Evaluated, such an answer would
resolve alerts for positions that did not exist yet, then announce them firing again
when fresh data returns. :class:`Timeline` keeps the newest data time seen per account:
an older answer for that account observes nothing this poll, and a timestamp in the
future counts as "now" so it cannot pass for freshness that lasts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from riskwatch.core.snapshot import Account, Snapshot

# Clocks differ by a few seconds; further ahead than this is worth a line in the log.
FUTURE_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Admitted:
    """What :meth:`Timeline.admit` let through, and what it held back."""

    snapshot: Snapshot
    older: tuple[str, ...] = ()  # accounts whose answer was older than one already seen
    future: tuple[str, ...] = ()  # accounts first seen stamped well ahead of the clock


@dataclass
class Timeline:
    """The newest data time seen for each account."""

    newest: dict[str, datetime] = field(default_factory=dict)
    _warned_future: set[str] = field(default_factory=set)

    def admit(self, snapshot: Snapshot, now: datetime) -> Admitted:
        """The snapshot without accounts older than already seen, future times set to ``now``."""
        kept: list[Account] = []
        older: list[str] = []
        future: list[str] = []
        clamped = False
        for account in snapshot.accounts:
            taken = account.taken_at
            if taken is not None and taken > now:
                if taken > now + FUTURE_TOLERANCE and account.name not in self._warned_future:
                    self._warned_future.add(account.name)
                    future.append(account.name)
                account = replace(account, taken_at=now)  # every time, not only when told
                taken = now
                clamped = True
            seen = self.newest.get(account.name)
            if taken is not None and seen is not None and taken < seen:
                older.append(account.name)
                continue
            if taken is not None:
                self.newest[account.name] = taken
            kept.append(account)
        if not older and not clamped:
            return Admitted(snapshot)
        return Admitted(replace(snapshot, accounts=tuple(kept)), tuple(older), tuple(future))
