"""The leader's history in memory: what the rules look back on, loaded when it takes the
lead, one point per account added after each good poll, trimmed to the rules' horizon.

The store keeps the long history (for the status page and for the next leader); this
keeps only as far back as the rules look (:func:`riskwatch.core.history.horizon`), so its
size follows the rules, not the retention settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from riskwatch.core.evaluate import CompiledRule
from riskwatch.core.history import (
    RAW_KEEP,
    History,
    Point,
    Series,
    append,
    horizon,
    retain,
)
from riskwatch.store import Store

log = structlog.get_logger("riskwatch.daemon")


class HistoryBook:
    """Each account's series, as far back as the rules in force look."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self.need = timedelta(0)
        self.series: dict[str, Series] = {}

    def view(self) -> History:
        """The series to evaluate with (read only)."""
        return self.series

    def load(self, store: Store, rules: Sequence[CompiledRule], now: datetime) -> None:
        """Read what the rules need from the store (on taking the lead, or when a reload
        makes the rules look further back)."""
        self.need = horizon((c.rule for c in rules), self.interval)
        self.series = (store.load_history(now - self.need, self.interval)
                       if self.need > timedelta(0) else {})
        if self.series:
            log.info("history loaded", accounts=len(self.series),
                     hours=round(self.need.total_seconds() / 3600, 2))

    def follow(self, store: Store, rules: Sequence[CompiledRule], now: datetime) -> None:
        """After a rule reload: load again if the rules now look further back."""
        if horizon((c.rule for c in rules), self.interval) > self.need:
            self.load(store, rules, now)

    def add(self, points: Mapping[str, Point]) -> None:
        """One good poll's point per account."""
        if self.need <= timedelta(0):
            return
        empty = Series(interval=self.interval)
        for name, point in points.items():
            self.series[name] = append(self.series.get(name, empty), point)

    def trim(self, now: datetime) -> None:
        """Drop what the rules no longer look at."""
        self.series = {name: retain(series, now, raw_for=RAW_KEEP, keep_for=self.need)
                       for name, series in self.series.items()}
