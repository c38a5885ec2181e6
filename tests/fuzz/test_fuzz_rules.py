"""Fuzzed rule files: every invalid one is reported as file:line:col, nothing else escapes."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from riskwatch.core.history import CHANGE_METRICS
from riskwatch.core.measures import ALL_METRICS, scopes_of
from riskwatch.core.rules import SEVERITIES
from riskwatch.errors import RulesError
from riskwatch.rulefiles.loader import load_rules, shipped_rules_dir
from tests.fuzz.conftest import RULE_FILE_EXAMPLES

SHIPPED = (shipped_rules_dir() / "default.yaml").read_text()
SCHEMA_FILE = Path(__file__).parent.parent.parent / "schema" / "riskwatch-rules.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
LINES = SHIPPED.splitlines()
PIECES = ["scope: account", "metric: leverage", "levels: {}", "for: 5 minutes", "  - ",
          "when: sideways", "match: {symbol: ['[x']}", ": :", "- [", "{", "\t", "name: X Y",
          "levels: {warning: 1, critical: 0.5}", "action: {set_leverage: -1}", "rules: 3",
          "defaults: {for: hourly}", "hysteresis: -1", "repeat: 1w", "&a *a", "!!python/name:os"]


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file each example overwrites (a folder per example costs more than the load)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"


def _check(path: Path, text: str) -> None:
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
def test_mutated_shipped_rules(rule_file: Path, seed: int, edits: int) -> None:
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
    _check(rule_file, "\n".join(lines))


@settings(max_examples=RULE_FILE_EXAMPLES // 2, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(text=st.text(alphabet=st.sampled_from(list("abcdefgrulesnam:-[]{}'\"\n #&*!0123.9_")),
                    max_size=200))
def test_random_text(rule_file: Path, text: str) -> None:
    """Random YAML-ish text: loads, or is reported with a position; never anything else."""
    _check(rule_file, text)


# ------------------------------------------------------------------------ hostile YAML

@st.composite
def hostile_yaml(draw: st.DrawFn) -> str:
    """Alias chains and cycles, deep flow or block nesting, tags and outsized numbers."""
    parts: list[str] = []
    chain = draw(st.integers(0, 12))
    width = draw(st.integers(1, 12))
    for index in range(chain):
        inner = ", ".join([f"*a{index - 1}" if index else '"lol"'] * width)
        parts.append(f"a{index}: &a{index} [{inner}]")
    depth = draw(st.integers(0, 3_000))
    kind = draw(st.sampled_from(["flow", "block", "alias", "self", "tag", "number", "key"]))
    if kind == "flow":
        value = "[" * depth + "1" + "]" * depth
    elif kind == "block":
        value = "\n" + "- " * depth + "x"
    elif kind == "alias":
        value = f"*a{chain - 1}" if chain else "[]"
    elif kind == "self":
        value = "&s [1, [*s]]"
    elif kind == "tag":
        value = draw(st.sampled_from(["!!python/object/apply:os.system ['true']", "!!set {a}",
                                      "!!binary aGk=", "!!omap [{a: 1}]", "!custom x",
                                      "!!timestamp 2026-13-01", "!!int 0xZZ", "!!float x"]))
    elif kind == "number":
        digits = draw(st.integers(1, 6_000))
        value = "{warning: " + draw(st.sampled_from(["", "-", "0x", "1."])) + "9" * digits + "}"
    else:
        value = draw(st.sampled_from(["{? [a]: 1}", "{<<: {a: 1}}", "{*undefined: 1}",
                                      "{a: 1, a: 2}"]))
    parts.append(f"rules: {value}")
    return "\n".join(parts) + "\n"


@settings(max_examples=RULE_FILE_EXAMPLES // 3, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(text=hostile_yaml())
def test_hostile_yaml(rule_file: Path, text: str) -> None:
    """Bombs, cycles, depth and tags: refused (or loaded) quickly with a position, no crash."""
    started = time.perf_counter()
    _check(rule_file, text)
    assert time.perf_counter() - started < 5.0  # refused at once; a hang would take forever


# ------------------------------------------------------------ schema and loader agree

NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.integers(10**300, 10**310),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["0.5", "3", "", "1e3", True, None, [1], {"a": 1}]))
DURATIONS = st.one_of(st.sampled_from(["30s", "5m", "2h", "1d", " 15 ", "5 minutes", "1w",
                                       "-1s", "9999999999d", "999999999d", "1.5h", "", True,
                                       None, 999_999_999, 10**9, -1]),
                      st.integers(0, 2 * 10**9), st.floats(allow_nan=True))
GLOBS = st.lists(st.sampled_from(["*", "desk-*", "[ab]*", "[x", "", "a]", "x[", 3]), max_size=3)
MATCHES = st.one_of(st.none(), st.sampled_from(["desk-*"]), st.dictionaries(
    st.sampled_from(["exchange", "account", "symbol", "market_type", "symbols"]),
    st.one_of(st.none(), GLOBS), max_size=3))
LEVELS: st.SearchStrategy[Any] = st.one_of(
    st.dictionaries(st.sampled_from(["info", "warning", "critical", "warn"]), NUMBERS,
                    max_size=3),
    st.sampled_from([None, [], "0.5", 1]))
ACTIONS = st.one_of(st.none(), st.fixed_dictionaries(
    {"set_leverage": NUMBERS},
    optional={"at": st.sampled_from(["info", "warning", "critical", "crit"]),
              "extra": st.just(1)}))
RULE_KEYS = {
    "name": st.sampled_from(["margin", "lev-cap", "Bad Name", "source-down", "", 7, None]),
    "scope": st.sampled_from(["account", "asset", "position", "acount", None]),
    "metric": st.sampled_from([*ALL_METRICS, "nope", None]),
    "when": st.sampled_from(["above", "below", "sideways"]),
    "levels": LEVELS, "match": MATCHES, "action": ACTIONS,
    "for": DURATIONS, "keep_firing_for": DURATIONS, "repeat": DURATIONS,
    "hysteresis": NUMBERS, "send_resolved": st.sampled_from([True, False, "yes", 1, None]),
    "channel": st.sampled_from(["#risk", 3, None]), "description": st.sampled_from(["d", None]),
    "runbook": st.sampled_from(["https://x", None]), "for_": st.just("30s"),
    "levles": st.just({"warning": 1}),
    "window": st.one_of(st.just("day"), st.just("Day"), DURATIONS),
    "change": DURATIONS,
}
FINITE = st.one_of(st.integers(-10**9, 10**9), st.floats(-1e300, 1e300, allow_nan=False))


# Strategies are built once, here, not inside each draw: hypothesis validates a new
# strategy on every draw, which cost more than loading the file it generates.
SCOPES = ("account", "asset", "position")
METRICS_OF = {scope: st.sampled_from([m for m in ALL_METRICS if scope in scopes_of(m)])
              for scope in SCOPES}
MATCH_KEYS = {scope: st.sets(st.sampled_from(
    ["exchange", "account"] + (["symbol", "market_type"] if scope != "account" else [])))
    for scope in SCOPES}
LEVEL_VALUES = {size: st.sets(FINITE, min_size=size, max_size=size)
                for size in range(1, len(SEVERITIES) + 1)}
SEVERITY_SETS = st.sets(st.sampled_from(SEVERITIES), min_size=1)
RULE_DURATIONS = st.sampled_from(["30s", "5m", "2h", "1d", 0, 15])


@st.composite
def good_rule(draw: st.DrawFn, index: int) -> dict[str, object]:
    """A rule the loader accepts: a metric that fits its scope, ordered levels, and so on."""
    scope = draw(st.sampled_from(SCOPES))
    metric = draw(METRICS_OF[scope])
    when = draw(st.sampled_from(("above", "below")))
    severities = sorted(draw(SEVERITY_SETS), key=SEVERITIES.index)
    values = sorted(draw(LEVEL_VALUES[len(severities)]))
    values = values if when == "above" else values[::-1]
    rule: dict[str, object] = {"name": f"r{index}", "scope": scope, "metric": metric,
                               "when": when, "levels": dict(zip(severities, values, strict=True))}
    if draw(st.booleans()):
        rule["match"] = {key: ["*"] for key in draw(MATCH_KEYS[scope])}
    if scope == "position" and draw(st.booleans()):
        rule["action"] = {"set_leverage": draw(st.integers(1, 100)),
                          "at": draw(st.sampled_from(tuple(severities)))}
    for key in ("for", "keep_firing_for", "repeat"):
        if draw(st.booleans()):
            rule[key] = draw(RULE_DURATIONS)
    if metric == "drawdown":
        rule["window"] = draw(st.sampled_from(["day", "24h", "15m", 3600]))
    elif metric in CHANGE_METRICS and scope == "account" and draw(st.booleans()):
        rule["change"] = draw(st.sampled_from(["15m", "1h", "1d", 900]))
    return rule


GOOD_RULES = [good_rule(index) for index in range(3)]
RULE_KEY_NAMES = st.sampled_from(sorted(RULE_KEYS))


@st.composite
def rule_documents(draw: st.DrawFn) -> object:
    """Good rule files with up to three keys given any value (good or bad) or dropped."""
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from([None, [], "rules", {"rules": None},
                                     {"rules": {"name": "x"}}, {"rule": []}]))
    rules = [draw(GOOD_RULES[index]) for index in range(draw(st.integers(0, 3)))]
    document: dict[str, object] = {"rules": rules}
    if draw(st.booleans()):
        document["defaults"] = draw(DEFAULTS)
    for _ in range(draw(st.integers(0, 3))):
        if not rules:
            break
        rule = rules[draw(st.integers(0, len(rules) - 1))]
        key = draw(RULE_KEY_NAMES)
        if draw(st.integers(0, 4)) == 0:
            rule.pop(key, None)
        else:
            rule[key] = draw(RULE_KEYS[key])
    return document


DEFAULTS = st.one_of(st.none(), st.sampled_from([[], "x"]), st.fixed_dictionaries({}, optional={
    "for": DURATIONS, "repeat": DURATIONS, "hysteresis": NUMBERS,
    "send_resolved": st.sampled_from([True, "no", None]), "channel": st.sampled_from(["#x", 1]),
    "levels": st.just({"warning": 1})}))
# libyaml's dumper and loader where PyYAML was built with it: the same YAML, several times
# faster than the pure-Python ones (riskwatch's own reader is what is under test)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# JSON Schema cannot compare values, nor measure a duration written as text
BLIND = ("thresholds out of order", "duplicate rule name", "window: longer than",
         "window: must be longer", "change: longer than", "change: must be longer")


@settings(max_examples=RULE_FILE_EXAMPLES, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(document=rule_documents())
def test_schema_and_loader_agree(rule_file: Path, document: object) -> None:
    """On any generated rule file, the shipped schema accepts exactly what the loader accepts
    (save thresholds out of order and duplicate names, which JSON Schema cannot state)."""
    text = yaml.dump(document, Dumper=DUMPER, sort_keys=False)
    rule_file.write_text(text, encoding="utf-8")
    try:
        load_rules([rule_file])
        problems: list[str] = []
    except RulesError as error:
        problems = [problem.message for problem in error.problems]
    data = yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader (libyaml's if built)
    accepted = VALIDATOR.is_valid(data)
    event("loads" if not problems else "refused, schema blind" if accepted else "refused")
    if problems and accepted:
        assert all(message.startswith(BLIND) for message in problems), (text, problems)
    else:
        assert accepted == (not problems), (text, problems,
                                            [e.message for e in VALIDATOR.iter_errors(data)][:3])
