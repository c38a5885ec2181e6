"""YAML loading that remembers where every key and value stood, for ``file:line:col`` errors.

PyYAML's composer gives a node tree with marks; we build plain Python values from it and
a map from each path (keys and list indexes) to its position. Floats become ``Decimal``
straight from their text, so a threshold written ``0.8`` is exactly 0.8.

Parsing is bounded, so that a hostile file is answered at once instead of hanging:

* a document may hold at most ``MAX_NODES`` values, nested at most ``MAX_DEPTH`` levels
  (checked while composing, before any recursion could run deep, and again after
  aliases are expanded);
* an alias (``*name``) may not refer to a value that contains it;
* aliases may copy at most ``MAX_ALIAS_VALUES`` values in all, so a "billion laughs"
  file stops after a few thousand steps;
* a number may have at most ``MAX_NUMBER_CHARS`` characters.

The caller (``riskwatch.rulefiles.loader.read_yaml``) bounds the file's size. Events come from
libyaml when PyYAML has it (about 20 times faster than its pure-Python parser), which
also refuses flow nesting past 1,000 levels on its own while scanning ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

Path = tuple[str | int, ...]
FLOAT_TAG = "tag:yaml.org,2002:float"
INT_TAG = "tag:yaml.org,2002:int"
MERGE_TAG = "tag:yaml.org,2002:merge"
COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
MAX_DEPTH = 64
MAX_NODES = 20_000
MAX_ALIAS_VALUES = 10_000
MAX_NUMBER_CHARS = 400


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class Located:
    """A YAML document's value with the position of every value and key under it."""

    value: Any
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)
    containers: set[Path] = field(default_factory=set)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Where ``path`` stands, else its nearest known ancestor.

        The key is shown instead of the value when ``key`` is set or the value is a
        mapping or list (whose own position is the line after, or a bracket).
        """
        if (key or path in self.containers) and path in self.keys:
            return self.keys[path]
        probe = path
        while probe not in self.values and probe:
            probe = probe[:-1]
        return self.values.get(probe, Position(1, 1))


class InputError(ValueError):
    """The document is valid YAML but not one riskwatch reads; ``position`` says where."""

    def __init__(self, message: str, position: Position) -> None:
        self.position = position
        super().__init__(message)


class DuplicateKeyError(InputError):
    """A mapping names the same key twice."""

    def __init__(self, key: str, position: Position) -> None:
        super().__init__(f"duplicate key {key!r}", position)


def _mark(node_or_event: yaml.Node | yaml.Event) -> Position:
    mark: Any = node_or_event.start_mark
    return Position(mark.line + 1, mark.column + 1) if mark is not None else Position(1, 1)


class _Alias(yaml.Node):
    """A use of an anchor (``*name``), kept apart from the node it names so that the
    builder can see where it was used, refuse cycles and count what it copies."""

    id = "alias"

    def __init__(self, anchor: str, target: yaml.Node, event: Any) -> None:
        super().__init__("alias", target, event.start_mark, event.end_mark)
        self.anchor = anchor
        self.target = target


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's composer, refusing more than ``MAX_NODES`` values or ``MAX_DEPTH`` levels.

    PyYAML's scanner and parser (and libyaml's) are not recursive, its composer is:
    refusing to go deeper before composing a node keeps a 5,000-level ``[[[[...`` from
    ever reaching Python's recursion limit. Aliases are kept as ``_Alias`` nodes.
    """

    _depth = 0
    _nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, wrapping aliases and refusing to nest too deep."""
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            target: Any = super().compose_node(parent, index)
            return _Alias(str(event.anchor), target, event)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise InputError(f"more than {MAX_NODES:,} values in one file", _mark(event))
        if self._depth >= MAX_DEPTH:
            raise InputError(f"nested more than {MAX_DEPTH} levels deep", _mark(event))
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[return-value]
        finally:
            self._depth -= 1


class _PyLoader(_BoundedComposer, yaml.SafeLoader):
    """The bounded composer over PyYAML's pure-Python parser."""


if yaml.__with_libyaml__:
    class _CLoader(_BoundedComposer, yaml.CSafeLoader):
        """The bounded composer over libyaml's parser (the same events, many times faster)."""

        def __init__(self, text: str) -> None:
            yaml.CSafeLoader.__init__(self, text)
            yaml.composer.Composer.__init__(self)

    _Loader: Any = _CLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _Loader = _PyLoader


class _Builder:
    def __init__(self) -> None:
        self.located = Located(None)
        self._scalars = yaml.SafeLoader("")  # only its constructor is used
        self._open: set[int] = set()  # collection nodes being built (to refuse cycles)
        self._alias: _Alias | None = None  # the outermost alias being expanded
        self._copied = 0  # values built through aliases

    def build(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, _Alias):
            return self._expand(node, path)
        if len(path) > MAX_DEPTH:
            raise InputError(f"nested more than {MAX_DEPTH} levels deep (through aliases)",
                             _mark(self._alias or node))
        if self._alias is not None:
            self._copied += 1
            if self._copied > MAX_ALIAS_VALUES:
                raise InputError(
                    f"aliases copy more than {MAX_ALIAS_VALUES:,} values; anchors and aliases "
                    "are for small repeated parts only", _mark(self._alias))
        self.located.values.setdefault(path, _mark(node))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if node.tag not in COLLECTION_TAGS:
                raise InputError(f"tag {node.tag[:60]!r} is not allowed in rule files",
                                 _mark(node))
            self.located.containers.add(path)
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        return self._scalar(node)

    def _expand(self, alias: _Alias, path: Path) -> Any:
        if id(alias.target) in self._open:
            raise InputError(f"alias *{alias.anchor} refers to a value that contains it",
                             _mark(alias))
        self.located.values.setdefault(path, _mark(alias))
        outermost = self._alias is None
        if outermost:
            self._alias = alias
        try:
            return self.build(alias.target, path)
        finally:
            if outermost:
                self._alias = None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_target = key_node.target if isinstance(key_node, _Alias) else key_node
            if not isinstance(key_target, yaml.ScalarNode):
                raise InputError("a key must be plain text, not a list or mapping",
                                 _mark(key_node))
            if key_target.tag == MERGE_TAG:
                raise InputError("merge keys (<<) are not supported; put shared values "
                                 "under 'defaults:'", _mark(key_node))
            key = self._scalar(key_target)
            key = key if isinstance(key, str | int) else str(key)
            if key in result:
                raise DuplicateKeyError(str(key), _mark(key_node))
            self.located.keys[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in (FLOAT_TAG, INT_TAG) and len(str(node.value)) > MAX_NUMBER_CHARS:
            raise InputError(f"number longer than {MAX_NUMBER_CHARS} characters", _mark(node))
        if node.tag == FLOAT_TAG:
            try:
                number = Decimal(str(node.value).replace("_", ""))
            except InvalidOperation:
                number = None
            if number is not None and number.is_finite():
                return number
            # .inf / .nan: let the constructor make a float, which validation rejects
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as error:  # e.g. a timestamp like 2026-02-30, or !!bool maybe
            kind = str(node.tag).rsplit(":", 1)[-1]
            reason = f": {error}" if isinstance(error, ValueError) else ""
            raise InputError(f"cannot read {str(node.value)[:40]!r} as {kind}{reason}",
                             _mark(node)) from None


def load(text: str, *, pure: bool = False) -> Located:
    """Parse one YAML document; raise yaml.YAMLError or InputError on bad input.

    libyaml's parser is used when PyYAML has it (``pure`` forces the Python one).
    """
    loader: Any = (_PyLoader if pure else _Loader)(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    builder = _Builder()
    if node is not None:
        builder.located.value = builder.build(node, ())
    return builder.located
