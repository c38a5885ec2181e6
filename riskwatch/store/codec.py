"""How alerts and notices are written to the state store and the outbox: JSON by msgspec.

An alert is stored as a msgspec Struct made from Alert's own fields: the JSON keys are
the field names every release has written, and each field added after the first has a
default, so rows written by an older release still load. msgspec does the conversions:
a ``Decimal`` is written as its exact string (``"1E-7"``, ``"-0.1400000000000000000000"``)
and read back equal, never through a float; a datetime as ISO 8601 (UTC as ``Z``; the
``+00:00`` of older rows reads the same); an enum by its value; ``None`` stays ``null``.

The text is written ASCII-only (non-ASCII as ``\\u`` escapes), as it always was: a
PostgreSQL database in a non-UTF-8 encoding still stores every account name.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any, get_type_hints

import msgspec

from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, SilenceNote
from riskwatch.core.rules import Severity


def _stored_alert_type() -> type[msgspec.Struct]:
    """An alert as the ``alerts`` table and outbox notices hold it: Alert's own fields,
    under their names and with their defaults, the key's three parts first in its place.

    A field added to Alert is stored from then on; its default lets older rows load.
    Unknown keys are ignored, so a row written by a newer release still reads.
    """
    hints = get_type_hints(Alert)
    shape: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("rule", str), ("account", str), ("symbol", str)]
    for field in fields(Alert):
        if field.name == "key":
            continue
        typed = (field.name, hints[field.name])
        shape.append(typed if field.default is MISSING else (*typed, field.default))
    return msgspec.defstruct("StoredAlert", shape, kw_only=True)


StoredAlert = _stored_alert_type()
# a notice in an outbox message, with its alert as it was when the notice was made
StoredNotice = msgspec.defstruct("StoredNotice", [
    ("kind", NoticeKind), ("alert", StoredAlert),
    ("previous_severity", Severity | None, None), ("channel", str | None, None),
    ("silence", SilenceNote | None, None),
], kw_only=True)
_alert_decoder = msgspec.json.Decoder(StoredAlert)


def _stored(alert: Alert) -> msgspec.Struct:
    data = {field.name: getattr(alert, field.name) for field in fields(Alert)}
    key = data.pop("key")
    return StoredAlert(rule=key.rule, account=key.account, symbol=key.symbol, **data)


def _alert(stored: msgspec.Struct) -> Alert:
    data = msgspec.structs.asdict(stored)
    key = AlertKey(data.pop("rule"), data.pop("account"), data.pop("symbol"))
    return Alert(key=key, **data)


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
        previous_severity=notice.previous_severity, channel=notice.channel,
        silence=notice.silence))
    return data


def notice_from_dict(data: dict[str, Any]) -> Notice:
    """The inverse of :func:`notice_to_dict`."""
    stored = msgspec.structs.asdict(msgspec.convert(data, StoredNotice))
    return Notice(stored["kind"], _alert(stored["alert"]), stored["previous_severity"],
                  stored["channel"], stored["silence"])
