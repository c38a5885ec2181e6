"""Reading a balance answer element by element, when part of it nests too deeply to decode.

No real answer nests more than a few levels, but one entry nested thousands of levels
deep (in ``errors``, or in one account) makes every JSON decoder give up on the whole
body. Here the body's top level is read by hand, each entry decoded on its own, and an
entry too deep to decode is skipped by counting brackets (strings stepped over), so that
it becomes an ``account-error`` for that entry while every other account is read as
usual. This runs only after the whole body failed that way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_DECODER = json.JSONDecoder(parse_float=Decimal)
_SPACE = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_NAMES = {name: re.compile(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.){{1,200}})"')
          for name in ("account_name", "account_id", "name", "exchange_name", "exchange")}


@dataclass(frozen=True)
class TooDeep:
    """An entry too deeply nested to decode, with the names found in its text, if any."""

    account: str | None
    exchange: str | None


def read_top_level(text: str) -> dict[str, Any]:
    """The top-level object: arrays as lists of entries, other values decoded whole.

    An entry (or value) too deep to decode is a :class:`TooDeep`. ValueError when the
    top level itself is not a JSON object.
    """
    position = _skip_space(text, 0)
    _expect(text, position, "{")
    members: dict[str, Any] = {}
    position = _skip_space(text, position + 1)
    if text.startswith("}", position):
        return members
    while True:
        name, position = _DECODER.raw_decode(text, position)
        position = _skip_space(text, position)
        _expect(text, position, ":")
        position = _skip_space(text, position + 1)
        reader = _entries if text.startswith("[", position) else _value
        members[str(name)], position = reader(text, position)
        position = _skip_space(text, position)
        if text.startswith("}", position):
            return members
        _expect(text, position, ",")
        position = _skip_space(text, position + 1)


def _entries(text: str, position: int) -> tuple[list[Any], int]:
    """The entries of the array at ``position`` (its ``[``), each decoded on its own."""
    entries: list[Any] = []
    position = _skip_space(text, position + 1)
    if text.startswith("]", position):
        return entries, position + 1
    while True:
        entry, position = _value(text, position)
        entries.append(entry)
        position = _skip_space(text, position)
        if text.startswith("]", position):
            return entries, position + 1
        _expect(text, position, ",")
        position = _skip_space(text, position + 1)


def _value(text: str, position: int) -> tuple[Any, int]:
    try:
        value, end = _DECODER.raw_decode(text, position)
        return value, end
    except RecursionError:
        end = _end_of(text, position)
        span = text[position:end]
        account = (_name(span, "account_name") or _name(span, "account_id")
                   or _name(span, "name"))  # the fields an errors[] entry names it by
        return TooDeep(account, _name(span, "exchange_name") or _name(span, "exchange")), end


def _end_of(text: str, position: int) -> int:
    """Where the array or object at ``position`` ends, by counting its brackets."""
    depth = 0
    for token in _TOKEN.finditer(text, position):
        mark = token.group()
        if mark in ("[", "{"):
            depth += 1
        elif mark in ("]", "}"):
            depth -= 1
            if depth == 0:
                return token.end()
    raise ValueError("an unterminated array or object")


def _name(span: str, field: str) -> str | None:
    found = _NAMES[field].search(span)
    return found.group(1) if found else None


def _skip_space(text: str, position: int) -> int:
    match = _SPACE.match(text, position)
    return match.end() if match else position


def _expect(text: str, position: int, mark: str) -> None:
    if not text.startswith(mark, position):
        raise ValueError(f"expected {mark!r} at character {position}")


def split_deep(entries: Any, describe: Callable[[TooDeep], Any]) -> tuple[Any, list[Any]]:
    """``entries`` without its TooDeep parts (a list stays a list), and what each became."""
    if isinstance(entries, TooDeep):
        return None, [describe(entries)]
    if isinstance(entries, list):
        kept = [entry for entry in entries if not isinstance(entry, TooDeep)]
        return kept, [describe(entry) for entry in entries if isinstance(entry, TooDeep)]
    if isinstance(entries, dict):
        kept_map = {k: v for k, v in entries.items() if not isinstance(v, TooDeep)}
        return kept_map, [describe(v) for v in entries.values() if isinstance(v, TooDeep)]
    return entries, []
