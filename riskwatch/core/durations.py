"""Durations as users write them: ``30s``, ``5m``, ``2h``, ``1d`` or a bare number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: object) -> timedelta:
    """Parse ``30s``/``5m``/``2h``/``1d``/``15`` (seconds) into a timedelta; raise ValueError."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use 30s, 5m, 2h, 1d or a number of seconds")
    if isinstance(value, int | Decimal):
        if value < 0:
            raise ValueError(f"invalid duration {value}: must not be negative")
        return timedelta(seconds=float(value))
    if isinstance(value, float):
        raise ValueError(f"invalid duration {value!r}: write it as 30s, 5m, 2h or 1d")
    match = _PATTERN.match(str(value))
    if match is None:
        raise ValueError(f"invalid duration {value!r}: use 30s, 5m, 2h, 1d or a number of seconds")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as error:  # pragma: no cover - the pattern only admits numbers
        raise ValueError(f"invalid duration {value!r}") from error
    return timedelta(seconds=float(number * _UNITS[match.group(2) or "s"]))


def format_duration(value: timedelta) -> str:
    """Render a duration for people: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m" if seconds == 0 else f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" if minutes == 0 else f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d" if hours == 0 else f"{days}d {hours}h"
