"""How alerts and notices are written to the state store and the outbox: JSON by msgspec.

The stored shapes are the Structs below; their field names are the JSON keys every
release has written, and each field added after the first has a default, so rows written
by an older release still load. msgspec does the conversions: a ``Decimal`` is written as
its exact string (``"1E-7"``, ``"-0.1400000000000000000000"``) and read back equal, never
through a float; a datetime as ISO 8601 (UTC as ``Z``; the ``+00:00`` of older rows reads
the same); an enum by its value; ``None`` stays ``null``.

The text is written ASCII-only (non-ASCII as ``\\u`` escapes), as it always was: a
PostgreSQL database in a non-UTF-8 encoding still stores every account name.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.rules import Severity


class StoredAlert(msgspec.Struct, kw_only=True):
    """An alert as the ``alerts`` table and outbox notices hold it: the key's parts first.

    Unknown keys are ignored, so a row written by a newer release still reads.
    """

    rule: str
    account: str
    symbol: str
    state: State
    severity: Severity
    exchange: str
    metric: str
    value: Decimal | None
    threshold: Decimal | None
    since: datetime
    firing_since: datetime | None = None
    cleared_at: datetime | None = None
    last_notified_at: datetime | None = None
    description: str = ""
    runbook: str | None = None
    detail: str = ""
    thread: str | None = None
    when: str = "above"
    muted: bool = False
    action: str = ""
    verify_after: datetime | None = None
    scope: str = ""


class StoredNotice(msgspec.Struct, kw_only=True):
    """A notice in an outbox message, with its alert as it was when the notice was made."""

    kind: NoticeKind
    alert: StoredAlert
    previous_severity: Severity | None = None
    channel: str | None = None


# every field of Alert but its key is stored under its own name
_ALERT_FIELDS = tuple(field.name for field in fields(Alert) if field.name != "key")
_alert_decoder = msgspec.json.Decoder(StoredAlert)


def _stored(alert: Alert) -> StoredAlert:
    key = alert.key
    return StoredAlert(rule=key.rule, account=key.account, symbol=key.symbol,
                       **{name: getattr(alert, name) for name in _ALERT_FIELDS})


def _alert(stored: StoredAlert) -> Alert:
    return Alert(key=AlertKey(stored.rule, stored.account, stored.symbol),
                 **{name: getattr(stored, name) for name in _ALERT_FIELDS})


def encode_alert(alert: Alert) -> str:
    """The JSON text of ``alert`` for the ``alerts`` table."""
    return json.dumps(msgspec.to_builtins(_stored(alert)))


def decode_alert(text: str | bytes) -> Alert:
    """The alert of a row of the ``alerts`` table (msgspec.ValidationError, a ValueError,
    on a row that is not one)."""
    return _alert(_alert_decoder.decode(text))


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """A JSON-ready dict of every field of ``alert``."""
    data: dict[str, Any] = msgspec.to_builtins(_stored(alert))
    return data


def alert_from_dict(data: dict[str, Any]) -> Alert:
    """The inverse of :func:`alert_to_dict`."""
    return _alert(msgspec.convert(data, StoredAlert))


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """A JSON-ready dict of a notice (with the alert as it was when the notice was made)."""
    data: dict[str, Any] = msgspec.to_builtins(StoredNotice(
        kind=notice.kind, alert=_stored(notice.alert),
        previous_severity=notice.previous_severity, channel=notice.channel))
    return data


def notice_from_dict(data: dict[str, Any]) -> Notice:
    """The inverse of :func:`notice_to_dict`."""
    stored = msgspec.convert(data, StoredNotice)
    return Notice(stored.kind, _alert(stored.alert), stored.previous_severity, stored.channel)
