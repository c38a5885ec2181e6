"""What the commands print: tables of inert text, and JSON documents of the SPEC's shapes.

JSON goes through msgspec's conversion to plain values (a Decimal as its exact string, an
enum by its value, dataclasses and Structs as objects) and is printed indented and ASCII,
as every release printed it. Times keep Python's ISO 8601 form (``+00:00`` for UTC), which
is what scripts reading ``--format json`` have always seen; msgspec alone would write Z.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import click
import msgspec

from riskwatch.core.evaluate import Breach
from riskwatch.core.leverage import Decision
from riskwatch.core.lifecycle import Alert, State
from riskwatch.core.snapshot import Snapshot
from riskwatch.notify import render

TABLE_CELL_LIMIT = 600  # the detail column holds error texts; names are capped lower upstream


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns of text; every cell one inert, capped line (cells may quote the API)."""
    if not rows:
        click.echo("(none)")
        return
    rows = [[render.plain(str(cell), TABLE_CELL_LIMIT) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column)
              for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width)
                             for cell, width in zip(row, widths, strict=False)))


def number_text(value: Decimal | None) -> str:
    """A number for a table cell: its exact digits, ``null`` when unknown."""
    return "null" if value is None else str(value)


def print_json(value: object) -> None:
    """``value`` as one JSON document on standard output (SPEC §1: nothing else there)."""
    plain = msgspec.to_builtins(value, builtin_types=(datetime,))
    click.echo(json.dumps(plain, default=_isoformat, indent=2))


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)  # pragma: no cover - to_builtins converted the rest


def breach_json(breach: Breach) -> dict[str, Any]:
    """A breach in the shape of SPEC §1; ``detail`` only when it says something."""
    data: dict[str, Any] = msgspec.to_builtins(breach)
    if not breach.detail:
        del data["detail"]
    return data


class AlertRow(msgspec.Struct):
    """An alert in the JSON shape of ``check``, plus ``state``, ``since`` and ``silenced``."""

    rule: str
    severity: str
    scope: str
    account: str | None
    exchange: str | None
    symbol: str | None
    metric: str
    value: Decimal | None
    threshold: Decimal | None
    state: State
    since: datetime
    silenced: bool


def alert_row(alert: Alert, silenced: bool) -> AlertRow:
    """The listed form of a stored alert; empty key parts are null."""
    return AlertRow(alert.key.rule, alert.severity, _scope_of(alert), alert.key.account or None,
                    alert.exchange or None, alert.key.symbol or None, alert.metric,
                    alert.value, alert.threshold, alert.state, alert.since, silenced)


def _scope_of(alert: Alert) -> str:
    """The rule's scope, as stored; guessed from the key for alerts stored without it."""
    if alert.scope:
        return alert.scope
    if not alert.key.account:
        return "source"
    return "account" if not alert.key.symbol else "position"


def action_row(decision: Decision) -> dict[str, Any]:
    """An audit-log row as ``riskwatch actions --format json`` lists it (the API's answer is
    the decision's ``detail``)."""
    d = decision
    return {"time": d.at, "rule": d.rule, "account": d.account, "exchange": d.exchange,
            "pair": d.pair, "from_leverage": d.from_leverage, "to_leverage": d.to_leverage,
            "mode": d.mode, "outcome": d.outcome, "answer": d.detail}


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """The normalised snapshot (SPEC §3) without the raw payload rows of its problems.

    Asset fields go by their names in the snapshot (``size``, ``market_type``), not by the
    cached endpoint's names that the Struct decodes from (``amount``, ``wallet_type``).
    """
    bare = replace(snapshot, problems=tuple(replace(p, raw=None) for p in snapshot.problems))
    data: dict[str, Any] = msgspec.to_builtins(bare, builtin_types=(datetime,))
    for account, shown in zip(snapshot.accounts, data["accounts"], strict=True):
        shown["assets"] = [msgspec.to_builtins(msgspec.structs.asdict(asset))
                           for asset in account.assets]
    for problem in data["problems"]:
        del problem["raw"]
    return data
