"""YAML loading that remembers where every key and value stood, for ``file:line:col`` errors.

PyYAML's composer gives a node tree with marks; we build plain Python values from it and
a map from each path (keys and list indexes) to its position. Floats become ``Decimal``
straight from their text, so a threshold written ``0.8`` is exactly 0.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

Path = tuple[str | int, ...]
FLOAT_TAG = "tag:yaml.org,2002:float"


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


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice."""

    def __init__(self, key: str, position: Position) -> None:
        self.position = position
        super().__init__(f"duplicate key {key!r}")


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.located = Located(None)
        self._scalars = yaml.SafeLoader("")  # only its constructor is used

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.located.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            self.located.containers.add(path)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self.located.containers.add(path)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            key = key if isinstance(key, str | int) else str(key)
            if key in result:
                raise DuplicateKeyError(str(key), _mark(key_node))
            self.located.keys[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == FLOAT_TAG:
            try:
                return Decimal(str(node.value).replace("_", ""))
            except InvalidOperation:
                pass  # .inf / .nan: let the constructor make a float, which validation rejects
        return self._scalars.construct_object(node, deep=True)


def load(text: str) -> Located:
    """Parse one YAML document; raise yaml.YAMLError or DuplicateKeyError on bad input."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    builder = _Builder()
    if node is not None:
        builder.located.value = builder.build(node, ())
    return builder.located
