"""The rule language: models, strict loading with ``file:line:col`` errors, and the JSON Schema.

Pydantic checks the shape and types (every model forbids unknown keys); the checks that
span fields or files (metric fits scope, thresholds in order, unique names, action level)
run after, each pointing at the key it is about.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from riskwatch import yamlpos
from riskwatch.durations import parse_duration
from riskwatch.errors import RuleProblem, RulesError
from riskwatch.metrics import ALL_METRICS, scopes_of

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")  # lowest first
BUILTIN_RULES = frozenset({"source-down", "auth-failed", "account-error", "rules-invalid",
                           "action-limit", "account-missing", "store-failed"})
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$"},
            {"type": "number", "minimum": 0},
        ],
        "description": "30s, 5m, 2h, 1d, or a number of seconds",
    }),
]
Threshold = Annotated[Decimal, Field(allow_inf_nan=False),
                      WithJsonSchema({"type": "number"})]


def check_glob(pattern: str) -> str:
    """Reject globs that cannot mean what was written: empty, or an unclosed ``[``."""
    if not pattern:
        raise ValueError("empty glob")
    depth_open = pattern.rfind("[")
    if depth_open != -1 and "]" not in pattern[depth_open + 1:]:
        raise ValueError(f"bad glob {pattern!r}: '[' is never closed")
    return pattern


Glob = Annotated[str, BeforeValidator(lambda v: check_glob(v) if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Levels(_Strict):
    """Thresholds by severity; at least one."""

    info: Threshold | None = None
    warning: Threshold | None = None
    critical: Threshold | None = None

    def ordered(self) -> list[tuple[Severity, Decimal]]:
        """The defined levels, lowest severity first."""
        return [(name, value) for name in SEVERITIES if (value := getattr(self, name)) is not None]


class Match(_Strict):
    """Shell-style globs (case-insensitive) that a row must match to be evaluated."""

    exchange: list[Glob] | None = None
    account: list[Glob] | None = None
    symbol: list[Glob] | None = None
    market_type: list[Glob] | None = None


class Action(_Strict):
    """Lower the position's leverage when the alert fires at ``at``."""

    set_leverage: Annotated[Decimal, Field(gt=0, allow_inf_nan=False),
                            WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
    at: Severity = "critical"


class Defaults(_Strict):
    """Values every rule of the file takes unless it sets its own."""

    for_: Duration | None = Field(None, alias="for")
    keep_firing_for: Duration | None = None
    hysteresis: Annotated[Decimal, Field(ge=0)] | None = None
    repeat: Duration | None = None
    send_resolved: StrictBool | None = None
    channel: str | None = None
    runbook: str | None = None


class Rule(_Strict):
    """One rule: a metric in a scope, compared with levels, for the rows that match."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    scope: Literal["account", "asset", "position"]
    metric: str
    when: Literal["above", "below"] = "above"
    levels: Levels
    match: Match | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    hysteresis: Annotated[Decimal, Field(ge=0, allow_inf_nan=False),
                          WithJsonSchema({"type": "number", "minimum": 0})] = Decimal(0)
    repeat: Duration = timedelta(hours=1)
    send_resolved: StrictBool = True
    channel: str | None = None
    runbook: str | None = None
    action: Action | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in ALL_METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(ALL_METRICS)}")
        return metric


class RuleFile(_Strict):
    """A rule file: optional defaults and a list of rules."""

    defaults: Defaults | None = None
    rules: list[Rule]


# --------------------------------------------------------------------------- loading

def rule_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their ``*.yaml``/``*.yml`` files (not recursive), sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix in {".yaml", ".yml"} and p.is_file()))
        else:
            files.append(path)
    return files


def load_rules(paths: Iterable[Path]) -> list[Rule]:
    """Load and check every rule file; raise RulesError listing every problem found."""
    files = rule_files(paths)
    problems: list[RuleProblem] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    if not files:
        names = ", ".join(str(p) for p in paths)
        raise RulesError([RuleProblem(names or ".", 1, 1, "no rule files (*.yaml, *.yml) found")])
    for file in files:
        loaded, located, found = _load_file(file)
        problems.extend(found)
        for index, rule in enumerate(loaded):
            where = located.position(("rules", index, "name"))
            if rule.name in seen:
                problems.append(RuleProblem(str(file), where.line, where.column,
                                            f"duplicate rule name {rule.name!r} "
                                            f"(first defined at {seen[rule.name]})"))
                continue
            seen[rule.name] = f"{file}:{where.line}"
            rules.append(rule)
    if problems:
        raise RulesError(problems)
    return rules


def read_yaml(file: Path) -> yamlpos.Located:
    """Read and parse one YAML file with positions; RulesError with its one problem if not."""
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise RulesError([RuleProblem(name, 1, 1, f"cannot read: {reason}")]) from None
    try:
        return yamlpos.load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax: {error.problem or error.context}"
        if error.context and error.context_mark and error.problem_mark:
            message += f" ({error.context} at line {error.context_mark.line + 1})"
        raise RulesError([RuleProblem(name, line, column, message)]) from None
    except yaml.YAMLError as error:
        raise RulesError([RuleProblem(name, 1, 1, f"YAML: {error}")]) from None
    except yamlpos.DuplicateKeyError as error:
        where = error.position
        raise RulesError([RuleProblem(name, where.line, where.column, str(error))]) from None


def _load_file(file: Path) -> tuple[list[Rule], yamlpos.Located, list[RuleProblem]]:
    try:
        located = read_yaml(file)
    except RulesError as error:
        return [], yamlpos.Located(None), error.problems
    return (*_parse_document(str(file), located),)


def _parse_document(
    name: str, located: yamlpos.Located
) -> tuple[list[Rule], yamlpos.Located, list[RuleProblem]]:
    document = located.value
    if not isinstance(document, dict):
        return [], located, [RuleProblem(name, 1, 1,
                                         "expected a mapping with a 'rules' list")]
    defaults = document.get("defaults") or {}
    try:
        Defaults.model_validate(defaults)
    except ValidationError as error:
        problems = [locate_problem(name, located, detail, prefix=("defaults",))
                    for detail in error.errors()]
        return [], located, problems
    try:
        parsed = RuleFile.model_validate(
            {**document, "rules": _with_defaults(document.get("rules"), defaults)}
        )
    except ValidationError as error:
        return [], located, [locate_problem(name, located, detail) for detail in error.errors()]
    problems = [
        RuleProblem(name, where.line, where.column, message)
        for index, rule in enumerate(parsed.rules)
        for path, message in check_rule(rule)
        for where in [located.position(("rules", index, *path))]
    ]
    return list(parsed.rules), located, problems


def _with_defaults(rules: Any, defaults: Any) -> Any:
    """Merge file defaults under each rule; leave bad shapes for pydantic to report."""
    if not isinstance(rules, list) or not isinstance(defaults, dict):
        return rules
    allowed = set(Defaults.model_fields) | {"for"}
    usable = {key: value for key, value in defaults.items() if key in allowed and key != "for_"}
    return [{**usable, **rule} if isinstance(rule, dict) else rule for rule in rules]


def locate_problem(name: str, located: yamlpos.Located, detail: Any,
                   prefix: tuple[str, ...] = ()) -> RuleProblem:
    """A pydantic error detail as a ``file:line:col`` problem, at the key or value it is about."""
    loc = _document_path(located, prefix + tuple(detail["loc"]))
    kind = detail["type"]
    if kind == "extra_forbidden" and loc:
        where = located.position(loc, key=True)
        message = f"unknown key {loc[-1]!r}"
    elif kind == "missing":
        where = located.position(loc[:-1])
        message = f"missing required key {loc[-1]!r}"
    else:
        where = located.position(loc)
        field = ".".join(str(part) for part in loc) or "file"
        message = f"{field}: {_clean_message(detail['msg'])}"
    return RuleProblem(name, where.line, where.column, message)


def _document_path(located: yamlpos.Located, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic location that names keys and items of the document.

    Pydantic puts the branch of a union (``list[...]``, ``function-before[...]``) in its
    locations; those parts are not in the document and are dropped. A last part that is
    not there either (a missing key) is kept, so the message can name it.
    """
    path: tuple[Any, ...] = ()
    for index, part in enumerate(loc):
        candidate = (*path, part)
        in_document = candidate in located.values or candidate in located.keys
        if in_document or (index == len(loc) - 1 and not _looks_like_branch(part)):
            path = candidate
    return path


def _looks_like_branch(part: object) -> bool:
    return isinstance(part, str) and (part.endswith("]") or part in {"function-before",
                                                                     "constrained-str"})


def _clean_message(message: str) -> str:
    return re.sub(r"^(Value error|Assertion failed), ", "", message)


def check_rule(rule: Rule) -> list[tuple[tuple[str, ...], str]]:
    """Cross-field checks; each problem with the path (inside the rule) it is about."""
    problems: list[tuple[tuple[str, ...], str]] = []
    scopes = scopes_of(rule.metric)
    if rule.scope not in scopes:
        problems.append((("metric",), f"metric {rule.metric!r} does not fit scope "
                                      f"{rule.scope!r} (it fits: {', '.join(scopes)})"))
    if rule.name in BUILTIN_RULES:
        problems.append((("name",), f"{rule.name!r} is the name of a built-in alert"))
    levels = rule.levels.ordered()
    if not levels:
        problems.append((("levels",), "levels: define at least one of info, warning, critical"))
    values = [value for _, value in levels]
    ascending = rule.when == "above"
    if any((a >= b) if ascending else (a <= b) for a, b in itertools.pairwise(values)):
        order = "increase" if ascending else "decrease"
        problems.append((("levels",), f"thresholds out of order: with when: {rule.when} they "
                                      f"must {order} from info to warning to critical"))
    if rule.match is not None and rule.scope == "account":
        problems.extend((("match", key), f"match.{key} does not apply to scope 'account'")
                        for key in ("symbol", "market_type") if getattr(rule.match, key))
    if rule.action is not None:
        if rule.scope != "position":
            problems.append((("action",), "action is only allowed in scope 'position'"))
        if getattr(rule.levels, rule.action.at) is None:
            problems.append((("action", "at"), f"action.at: level {rule.action.at!r} is not "
                                               "defined in levels"))
    return problems


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, generated from the models (shipped in ``schema/``)."""
    schema = RuleFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "riskwatch rule file"
    return schema


def shipped_rules_dir() -> Path:
    """The default rule set: inside the installed package, or ``rules/`` of a source checkout."""
    packaged = Path(__file__).parent / "default_rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "rules"
