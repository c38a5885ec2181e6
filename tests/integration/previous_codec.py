"""The store codec of the release before msgspec, kept verbatim to prove that it reads rows
the current codec writes (replicas of both releases share one store during an upgrade)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _number(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _parse_number(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """A JSON-ready dict of every field of ``alert``."""
    return {
        "rule": alert.key.rule, "account": alert.key.account, "symbol": alert.key.symbol,
        "state": alert.state.value, "severity": alert.severity, "exchange": alert.exchange,
        "metric": alert.metric, "value": _number(alert.value),
        "threshold": _number(alert.threshold), "since": _time(alert.since),
        "firing_since": _time(alert.firing_since), "cleared_at": _time(alert.cleared_at),
        "last_notified_at": _time(alert.last_notified_at), "description": alert.description,
        "runbook": alert.runbook, "detail": alert.detail, "thread": alert.thread,
        "when": alert.when, "muted": alert.muted,
        "action": alert.action, "verify_after": _time(alert.verify_after),
        "scope": alert.scope,
    }


def alert_from_dict(data: dict[str, Any]) -> Alert:
    """The inverse of :func:`alert_to_dict`."""
    since = _parse_time(data["since"])
    if since is None:  # pragma: no cover - always written
        raise ValueError("alert without 'since'")
    return Alert(
        key=AlertKey(data["rule"], data["account"], data["symbol"]),
        state=State(data["state"]), severity=data["severity"], exchange=data["exchange"],
        metric=data["metric"], value=_parse_number(data["value"]),
        threshold=_parse_number(data["threshold"]), since=since,
        firing_since=_parse_time(data["firing_since"]),
        cleared_at=_parse_time(data.get("cleared_at")),
        last_notified_at=_parse_time(data["last_notified_at"]),
        description=data.get("description", ""), runbook=data.get("runbook"),
        detail=data.get("detail", ""), thread=data.get("thread"),
        when=data.get("when", "above"), muted=bool(data.get("muted", False)),
        action=data.get("action", ""), verify_after=_parse_time(data.get("verify_after")),
        scope=data.get("scope", ""),
    )


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """A JSON-ready dict of a notice (with the alert as it was when the notice was made)."""
    return {"kind": notice.kind.value, "alert": alert_to_dict(notice.alert),
            "previous_severity": notice.previous_severity, "channel": notice.channel}


def notice_from_dict(data: dict[str, Any]) -> Notice:
    """The inverse of :func:`notice_to_dict`."""
    return Notice(NoticeKind(data["kind"]), alert_from_dict(data["alert"]),
                  data.get("previous_severity"), data.get("channel"))
