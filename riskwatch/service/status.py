"""The status page's routes and the JSON behind them, read from the state store.

Each request opens its own store connection (the web server's threads must not share
the poll's), so the pages show what the leader last stored, on a standby as well.

- ``/``: alerts, silences, leverage decisions (HTML)
- ``/accounts/NAME``: one account's alerts and charts over 24 hours and 7 days (HTML)
- ``/api/v1/alerts``: alerts, silences and decisions (JSON)
- ``/api/v1/accounts/NAME/history?hours=24``: the account's stored history (JSON)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, unquote

from riskwatch.core.evaluate import CompiledRule
from riskwatch.core.history import FIELDS, Point
from riskwatch.core.lifecycle import Alert
from riskwatch.service import status_page
from riskwatch.service.http import Answer
from riskwatch.service.status_page import Series
from riskwatch.store import Store

# The charts of an account page: (metric, title, shown as a percentage).
CHARTS = (("maint_margin_ratio", "Maintenance margin ratio", True),
          ("liquidation_buffer", "Liquidation buffer", True),
          ("equity", "Equity", False),
          ("effective_leverage", "Effective leverage", False))
MAX_HISTORY_HOURS = 24 * 90


class StatusPages:
    """Answers the status page's paths from a store opened for each request."""

    def __init__(self, open_store: Callable[[], Store],
                 rules: Callable[[], Sequence[CompiledRule]],
                 clock: Callable[[], datetime]) -> None:
        self.open_store = open_store
        self.rules = rules
        self.clock = clock

    def handles(self, path: str) -> bool:
        """Is ``path`` one of the status page's?"""
        return path == "/" or path.startswith(("/accounts/", "/api/v1/"))

    def answer(self, path: str, query: str) -> Answer:
        """The answer for ``path`` (404 for a path it does not know)."""
        now = self.clock()
        with self.open_store() as store:
            if path == "/":
                page = status_page.overview_page(
                    list(store.load_alerts().values()), store.silences(), _recent(store, now),
                    store.history_accounts(now - timedelta(days=7)), now)
                return _html(page)
            if path == "/api/v1/alerts":
                return _json(_alerts_json(store, now))
            if path.startswith("/accounts/"):
                name = unquote(path.removeprefix("/accounts/"))
                account = self._account_page(store, name, now)
                return _html(account) if account else Answer(
                    404, "text/plain", b"no such account in the last 7 days\n")
            if path.startswith("/api/v1/accounts/") and path.endswith("/history"):
                name = unquote(path.removeprefix("/api/v1/accounts/").removesuffix("/history"))
                hours = _hours(query)
                points = store.account_history(name, now - timedelta(hours=hours))
                return _json({"account": name, "hours": hours,
                              "points": [_point_json(point) for point in points]})
        return Answer(404, "text/plain", b"not found\n")

    def _account_page(self, store: Store, name: str, now: datetime) -> str | None:
        """The account's page; None when nothing is known of it (no history, no alert)."""
        alerts = list(store.load_alerts().values())
        points = store.account_history(name, now - timedelta(days=7))
        if not points and not any(alert.key.account == name for alert in alerts):
            return None
        day = [self._series(name, metric, title, percent, points, now - timedelta(hours=24))
               for metric, title, percent in CHARTS]
        week = [self._series(name, metric, title, percent, points, now - timedelta(days=7))
                for metric, title, percent in CHARTS]
        return status_page.account_page(name, alerts, day, week, now)

    def _series(self, account: str, metric: str, title: str, percent: bool,
                points: Sequence[Point], since: datetime) -> Series:
        values = [(p.at, value) for p in points
                  if p.at >= since and (value := getattr(p, metric)) is not None]
        return Series(metric, title, values, _levels(self.rules(), account, metric), percent)


def _levels(rules: Sequence[CompiledRule], account: str, metric: str) -> list[tuple[str, Decimal]]:
    """The levels of the account rules on ``metric`` that apply to ``account``."""
    levels: list[tuple[str, Decimal]] = []
    for compiled in rules:
        rule = compiled.rule
        if rule.scope != "account" or rule.metric != metric or getattr(rule, "change", None):
            continue
        globs = rule.match.account if rule.match is not None else None
        if globs and not any(fnmatchcase(account.lower(), g.lower()) for g in globs):
            continue
        levels.extend(rule.levels.ordered())
    return levels


def _recent(store: Store, now: datetime) -> list[Any]:
    return store.actions(since=now - timedelta(days=7))


def _alerts_json(store: Store, now: datetime) -> dict[str, Any]:
    alerts = sorted(store.load_alerts().values(), key=lambda a: tuple(a.key))
    return {
        "at": now.isoformat(),
        "alerts": [_alert_json(a) for a in alerts],
        "silences": [{"id": s.id, "rule": s.rule, "account": s.account, "symbol": s.symbol,
                      "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
                      "reason": s.reason, "created_by": s.created_by,
                      "active": s.active(now)} for s in store.silences()],
        "actions": [{"at": d.at.isoformat(), "rule": d.rule, "account": d.account,
                     "pair": d.pair, "mode": d.mode, "outcome": d.outcome,
                     "summary": d.summary()} for d in _recent(store, now)],
    }


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {"rule": alert.key.rule, "account": alert.key.account, "symbol": alert.key.symbol,
            "state": alert.state.value, "severity": alert.severity, "metric": alert.metric,
            "value": None if alert.value is None else str(alert.value),
            "threshold": None if alert.threshold is None else str(alert.threshold),
            "since": alert.since.isoformat(), "muted": alert.muted, "action": alert.action}


def _point_json(point: Point) -> dict[str, Any]:
    values = {name: None if (value := getattr(point, name)) is None else str(value)
              for name in FIELDS}
    return {"at": point.at.isoformat(), **values}


def _hours(query: str) -> int:
    try:
        hours = int(parse_qs(query).get("hours", ["24"])[0])
    except ValueError:
        hours = 24
    return min(max(hours, 1), MAX_HISTORY_HOURS)


def _html(page: str) -> Answer:
    return Answer(200, "text/html; charset=utf-8", page.encode())


def _json(body: dict[str, Any]) -> Answer:
    return Answer(200, "application/json", json.dumps(body).encode())
