"""What /healthz and /readyz say: is the loop alive, and can this process be trusted now.

Only reads what the other parts last wrote, so it answers while a poll runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from riskwatch.config.settings import Settings
from riskwatch.notify.outbox import Deliverer
from riskwatch.service.leadership import Leadership
from riskwatch.service.poll import Clock, Monotonic, Poll
from riskwatch.service.rule_source import RuleSource

STALL_INTERVALS = 3  # /healthz fails when the loop has not ticked for this many intervals
# /readyz fails when a message has waited this long for Slack (at least; see ServiceHealth)
DELIVERY_STUCK_AFTER = timedelta(minutes=5)


@dataclass
class Watch:
    """What the service loop last saw outside the poll: its own tick, the store, the outbox."""

    last_tick: float  # monotonic time the loop last ticked
    store_error: str | None = None
    oldest_waiting: float = 0.0  # seconds the oldest message has waited for Slack


@dataclass
class ServiceHealth:
    """The answers of the health endpoints, from the parts of the running service."""

    settings: Settings
    poll: Poll
    rules: RuleSource
    leadership: Leadership
    deliverer: Deliverer
    watch: Watch
    clock: Clock
    monotonic: Monotonic
    delivery_stuck_after: timedelta = field(init=False)

    def __post_init__(self) -> None:
        self.delivery_stuck_after = max(DELIVERY_STUCK_AFTER, self.settings.stale_limit)

    def alive(self) -> tuple[bool, str]:
        """The loop ticked within the last three poll intervals."""
        silent = self.monotonic() - self.watch.last_tick
        limit = STALL_INTERVALS * self.settings.poll_interval.total_seconds()
        if silent > limit:
            return False, f"the poll loop has not run for {silent:.0f}s"
        return True, ""

    def role(self) -> str:
        """``leader`` or ``standby``, for /readyz."""
        return self.leadership.role()

    def warnings(self) -> list[str]:
        """What is wrong with the data but not with this process (on /readyz, status 200)."""
        missing = self.poll.missing
        if not self.leadership.leading or not missing:
            return []
        shown = ", ".join(missing[:10]) + (" …" if len(missing) > 10 else "")
        return [f"{len(missing)} account(s) missing from the API's answer: {shown}"]

    def not_ready(self) -> list[str]:
        """Why this process is not ready to be trusted (empty when it is).

        A standby whose store works is ready: it can take over, and a rolling update
        must be able to finish with one leader and several standbys.
        """
        reasons = []
        if self.watch.store_error:
            reasons.append(f"state store failed: {self.watch.store_error}")
        elif self.leadership.leading:
            reasons.extend(self._leader_problems())
        if self.rules.error:
            reasons.append(f"rules invalid (previous rules in force): {self.rules.error}")
        if not self.rules.rules:
            reasons.append("no rules loaded")
        return reasons

    def _leader_problems(self) -> list[str]:
        poll, stale = self.poll, self.settings.stale_limit.total_seconds()
        reasons = []
        if poll.last_error:
            reasons.append(f"last poll failed: {poll.last_error}")
        silent = (self.clock() - (poll.last_success or poll.started_at)).total_seconds()
        if silent > stale:
            reasons.append(f"no successful poll for {silent:.0f}s")
        if poll.fetch_started is not None:
            running = self.monotonic() - poll.fetch_started
            if running > self.settings.poll_interval.total_seconds():
                reasons.append(f"the current poll has run for {running:.0f}s "
                               "(the API is slow or hung)")
        if poll.last_good_data is not None:
            age = (self.clock() - poll.last_good_data).total_seconds()
            if age > stale:
                reasons.append(f"the newest data is {age:.0f}s old")
        if self.deliverer.permanent_error:
            reasons.append(f"Slack refuses delivery: {self.deliverer.permanent_error}")
        if self.watch.oldest_waiting > self.delivery_stuck_after.total_seconds():
            reasons.append(f"Slack delivery stuck: the oldest message has waited "
                           f"{self.watch.oldest_waiting:.0f}s")
        return reasons
