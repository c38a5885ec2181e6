"""Fuzzed rule files: every invalid one is reported as file:line:col, nothing else escapes."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskwatch.errors import RulesError
from riskwatch.rules import load_rules, shipped_rules_dir
from tests.fuzz.conftest import RULE_FILE_EXAMPLES

SHIPPED = (shipped_rules_dir() / "default.yaml").read_text()
LINES = SHIPPED.splitlines()
PIECES = ["scope: account", "metric: leverage", "levels: {}", "for: 5 minutes", "  - ",
          "when: sideways", "match: {symbol: ['[x']}", ": :", "- [", "{", "\t", "name: X Y",
          "levels: {warning: 1, critical: 0.5}", "action: {set_leverage: -1}", "rules: 3",
          "defaults: {for: hourly}", "hysteresis: -1", "repeat: 1w", "&a *a", "!!python/name:os"]


def _check(tmp: Path, text: str) -> None:
    path = tmp / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    lines = max(1, len(text.splitlines()) + 1)
    try:
        load_rules([path])
    except RulesError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == str(path)
            assert 1 <= problem.line <= lines and problem.column >= 1
            assert str(problem).startswith(f"{path}:{problem.line}:{problem.column}: ")


@settings(max_examples=RULE_FILE_EXAMPLES // 2, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32), edits=st.integers(1, 5))
def test_mutated_shipped_rules(tmp_path_factory: object, seed: int, edits: int) -> None:
    """The shipped file with lines dropped, duplicated or replaced by hostile pieces."""
    rng = random.Random(seed)
    lines = list(LINES)
    for _ in range(edits):
        index = rng.randrange(len(lines))
        choice = rng.random()
        if choice < 0.3:
            del lines[index]
        elif choice < 0.5:
            lines.insert(index, lines[index])
        elif choice < 0.8:
            indent = len(lines[index]) - len(lines[index].lstrip())
            lines[index] = " " * indent + rng.choice(PIECES)
        else:
            lines[index] = lines[index][: rng.randrange(len(lines[index]) + 1)]
    _check(tmp_path_factory.mktemp("f"), "\n".join(lines))  # type: ignore[attr-defined]


@settings(max_examples=RULE_FILE_EXAMPLES // 2, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(text=st.text(alphabet=st.sampled_from(list("abcdefgrulesnam:-[]{}'\"\n #&*!0123.9_")),
                    max_size=200))
def test_random_text(tmp_path_factory: object, text: str) -> None:
    """Random YAML-ish text: loads, or is reported with a position; never anything else."""
    _check(tmp_path_factory.mktemp("f"), text)
