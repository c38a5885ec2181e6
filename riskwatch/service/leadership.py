"""Who polls, acts and delivers: with a shared store only the leader does, fenced by epoch.

The store decides (:meth:`riskwatch.store.Store.lead`); this records the answer, tells the
deliverer and /metrics, and says when the lead was just gained, so that the new leader
starts from the stored alert states.
"""

from __future__ import annotations

import structlog

from riskwatch.notify.outbox import Deliverer
from riskwatch.service.telemetry import Telemetry
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.daemon")


class Leadership:
    """Whether this process leads, as the store last said."""

    def __init__(self, store: Store, deliverer: Deliverer, telemetry: Telemetry) -> None:
        self.store = store
        self.deliverer = deliverer
        self.telemetry = telemetry
        self.leading = False

    def claim(self) -> bool:
        """Ask the store for the lead; True when this process has just gained it."""
        leading = self.store.lead()
        gained = leading and not self.leading
        if self.leading and not leading:
            log.warning("lost the lead; standing by")
        self._set(leading)
        return gained

    def step_down(self) -> None:
        """Stop leading at once (fenced, or the store failed); the next claim starts afresh."""
        self._set(False)

    def role(self) -> str:
        """``leader`` or ``standby``, for /readyz."""
        return "leader" if self.leading else "standby"

    def _set(self, leading: bool) -> None:
        self.leading = self.deliverer.active = leading
        self.telemetry.leader.set(1 if leading else 0)
