"""Reading rule files: bounded YAML with positions, every problem in one pass as
``file:line:col``, then the checks that span fields or files (metric fits scope,
thresholds in order, unique names, action level), each pointing at the key it is about.
"""

from __future__ import annotations

import functools
import itertools
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from riskwatch.core.history import CHANGE_METRICS, KEEP
from riskwatch.core.measures import scopes_of
from riskwatch.core.rules import (
    BUILTIN_RULES,
    SEVERITIES,
    Action,
    Defaults,
    Duration,
    Levels,
    Match,
    Rule,
    RuleFile,
    Window,
    check_number,
    suggest,
)
from riskwatch.errors import RuleProblem, RulesError
from riskwatch.rulefiles import yamlpos

MAX_FILE_BYTES = 1_048_576
MAX_PROBLEMS_PER_FILE = 200
_WINDOW: TypeAdapter[timedelta | str] = TypeAdapter(Window)
_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)


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
    """Load and check every rule file; raise RulesError listing every problem found.

    Problems are listed file by file, each file's in the order of their positions, at
    most ``MAX_PROBLEMS_PER_FILE`` of them (then one line saying that more were found).
    """
    paths = list(paths)
    files = rule_files(paths)
    problems: list[RuleProblem] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    if not files:
        names = ", ".join(str(p) for p in paths)
        raise RulesError([RuleProblem(names or ".", 1, 1, "no rule files (*.yaml, *.yml) found")])
    for file in files:
        checked = _load_file(file)
        found = list(checked.problems)
        for index, name in checked.names:
            where = checked.located.position(("rules", index, "name"))
            if name in seen:
                found.append(RuleProblem(str(file), where.line, where.column,
                                         f"duplicate rule name {name!r} "
                                         f"(first defined at {seen[name]})"))
            else:
                seen[name] = f"{file}:{where.line}"
        rules.extend(checked.rules)  # with any problem at all, nothing is returned
        problems.extend(_at_most(sorted(found, key=lambda p: (p.line, p.column)),
                                 checked.truncated))
    if problems:
        raise RulesError(problems)
    return rules


def _at_most(problems: list[RuleProblem], truncated: bool) -> list[RuleProblem]:
    """The first ``MAX_PROBLEMS_PER_FILE`` problems, then one line saying more were found."""
    if len(problems) <= MAX_PROBLEMS_PER_FILE and not truncated:
        return problems
    shown = problems[:MAX_PROBLEMS_PER_FILE]
    last = shown[-1]
    return [*shown, RuleProblem(last.file, last.line, last.column,
                                f"more problems in this file not shown (the first "
                                f"{len(shown)} are listed); fix these and validate again")]


def read_yaml(file: Path) -> yamlpos.Located:
    """Read and parse one YAML file with positions; RulesError with its one problem if not.

    Reading is bounded: at most ``MAX_FILE_BYTES`` are read, and the parser refuses deep
    nesting and large alias expansions (see ``riskwatch.rulefiles.yamlpos``).
    """
    name = str(file)
    problem = functools.partial(_one_problem, name)
    if file.exists() and not file.is_file():  # a FIFO would block, /dev/zero never end
        raise problem(1, 1, "cannot read: not a regular file")
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise problem(1, 1, f"cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise problem(1, 1, f"file larger than {MAX_FILE_BYTES // 1024} KiB; "
                            "a rule file must be smaller") from None
    return _parse(name, data)


def _parse(name: str, data: bytes) -> yamlpos.Located:
    """Parse a file's bytes; RulesError with its one problem if they are not a document."""
    problem = functools.partial(_one_problem, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_column(data[:error.start].decode("utf-8", "replace"))
        raise problem(line, column, "cannot read: not UTF-8 text") from None
    try:
        return yamlpos.load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax: {error.problem or error.context}"
        if error.context and error.context_mark and error.problem_mark:
            message += f" ({error.context} at line {error.context_mark.line + 1})"
        raise problem(line, column, message) from None
    except yaml.reader.ReaderError as error:
        before = (text[:error.position] if error.encoding == "unicode"  # pure-Python parser
                  else data[:error.position].decode("utf-8", "ignore"))  # libyaml: bytes
        line, column = _line_column(before)
        character = error.character
        code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
        raise problem(line, column, f"YAML: special character #x{code:04x} is not allowed"
                      ) from None
    except yaml.YAMLError as error:
        raise problem(1, 1, f"YAML: {error}") from None
    except yamlpos.InputError as error:
        raise problem(error.position.line, error.position.column, str(error)) from None
    except RecursionError:  # pragma: no cover - yamlpos bounds depth well below the limit
        raise problem(1, 1, "nested too deeply") from None


def _one_problem(name: str, line: int, column: int, message: str) -> RulesError:
    return RulesError([RuleProblem(name, line, column, message)])


def _line_column(before: str) -> tuple[int, int]:
    """The 1-based line and column just after ``before``."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@dataclass
class _Checked:
    """What one file gave: its valid rules, every well-formed rule name, its problems."""

    located: yamlpos.Located
    rules: list[Rule] = field(default_factory=list)
    names: list[tuple[int, str]] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    truncated: bool = False  # checking stopped early: too many problems


def _load_file(file: Path) -> _Checked:
    try:
        located = read_yaml(file)
    except RulesError as error:
        return _Checked(yamlpos.Located(None), problems=error.problems)
    return _check_document(str(file), located)


def _check_document(name: str, located: yamlpos.Located) -> _Checked:
    """Check a whole document, every part of it, so that one problem hides no other."""
    checked = _Checked(located)
    document = located.value
    if not isinstance(document, dict):
        checked.problems.append(RuleProblem(name, 1, 1, "expected a mapping with a 'rules' list"))
        return checked
    for key in document:
        if key not in ("defaults", "rules"):
            where = located.position((key,), key=True)
            checked.problems.append(RuleProblem(
                name, where.line, where.column,
                f"unknown key {key!r}{suggest(key, ('defaults', 'rules'))}"))
    defaults = _check_defaults(name, located, document.get("defaults"), checked.problems)
    if "rules" not in document:
        checked.problems.append(RuleProblem(name, 1, 1, "missing required key 'rules'"))
        return checked
    entries = document["rules"]
    if not isinstance(entries, list):
        where = located.position(("rules",))
        checked.problems.append(RuleProblem(name, where.line, where.column,
                                            "rules: expected a list of rules"))
        return checked
    for index, entry in enumerate(entries):
        if len(checked.problems) > MAX_PROBLEMS_PER_FILE:
            checked.truncated = True
            break
        _check_entry(name, checked, index, entry, defaults)
    return checked


def _check_entry(name: str, checked: _Checked, index: int, entry: Any,
                 defaults: dict[str, Any]) -> None:
    """Check one rule: its own keys, then what spans them, from whatever is well-formed."""
    prefix = ("rules", index)
    merged = {**defaults, **entry} if isinstance(entry, dict) else entry
    try:
        rule = Rule.model_validate(merged)
    except ValidationError as error:
        details = error.errors()
        checked.problems.extend(locate_problem(name, checked.located, detail, prefix=prefix)
                                for detail in details)
        if not isinstance(merged, dict):
            return
        facts = _facts_of_entry(merged, {str(d["loc"][0]) for d in details if d["loc"]})
    else:
        checked.rules.append(rule)
        facts = _facts_of_rule(rule)
    if facts.name is not None:
        checked.names.append((index, facts.name))
    for path, message in _cross_checks(facts):
        where = checked.located.position((*prefix, *path))
        checked.problems.append(RuleProblem(name, where.line, where.column, message))


def _check_defaults(name: str, located: yamlpos.Located, raw: Any,
                    problems: list[RuleProblem]) -> dict[str, Any]:
    """Report every problem of ``defaults``; return the values that are fit to merge."""
    if raw is None:
        return {}
    bad: set[str] = set()
    try:
        Defaults.model_validate(raw)
    except ValidationError as error:
        problems.extend(locate_problem(name, located, detail, prefix=("defaults",))
                        for detail in error.errors())
        bad = {str(detail["loc"][0]) for detail in error.errors() if detail["loc"]}
    if not isinstance(raw, dict):
        return {}
    allowed = _keys_of(Defaults)
    return {key: value for key, value in raw.items()
            if key in allowed and key not in bad and value is not None}


@dataclass
class _Facts:
    """What is known to be well-formed about a rule, for the checks that span fields."""

    name: str | None = None
    scope: str | None = None
    metric: str | None = None
    when: str | None = None
    levels: dict[str, Decimal] | None = None  # the well-formed levels, None if not a mapping
    levels_complete: bool = False  # every level given is well-formed
    match_keys: tuple[str, ...] = ()  # match keys given a value
    has_action: bool = False
    action_at: str | None = None  # when the action is well-formed
    window: timedelta | str | None = None  # when well-formed
    has_window: bool = False
    change: timedelta | None = None  # when well-formed
    has_change: bool = False


def _facts_of_rule(rule: Rule) -> _Facts:
    return _Facts(
        name=rule.name, scope=rule.scope, metric=rule.metric, when=rule.when,
        levels=dict(rule.levels.ordered()), levels_complete=True,
        match_keys=tuple(key for key in Match.model_fields
                         if rule.match is not None and getattr(rule.match, key) is not None),
        has_action=rule.action is not None,
        action_at=rule.action.at if rule.action is not None else None,
        window=rule.window, has_window=rule.window is not None,
        change=rule.change, has_change=rule.change is not None,
    )


def _facts_of_entry(raw: dict[str, Any], bad: set[str]) -> _Facts:
    """The facts of a rule that did not validate, from the fields that did."""

    def good(key: str, default: Any = None) -> Any:
        return raw.get(key, default) if key not in bad else None

    facts = _Facts(name=good("name"), scope=good("scope"), metric=good("metric"),
                   when=good("when", "above"), has_action=raw.get("action") is not None,
                   has_window=raw.get("window") is not None,
                   has_change=raw.get("change") is not None)
    if facts.has_window and "window" not in bad:
        facts.window = _WINDOW.validate_python(raw["window"])
    if facts.has_change and "change" not in bad:
        facts.change = _DURATION.validate_python(raw["change"])
    levels = raw.get("levels")
    if isinstance(levels, dict):
        facts.levels = {}
        for severity in SEVERITIES:
            if severity in levels and _fits(Levels, {severity: levels[severity]}):
                facts.levels[severity] = check_number(levels[severity])  # type: ignore[assignment]
        facts.levels_complete = "levels" not in bad
    match = raw.get("match")
    if isinstance(match, dict):
        facts.match_keys = tuple(key for key in Match.model_fields if match.get(key) is not None)
    action = raw.get("action")
    if isinstance(action, dict) and _fits(Action, action):
        facts.action_at = action.get("at", "critical")
    return facts


def _fits(model: type[BaseModel], value: Any) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True


def _cross_checks(facts: _Facts) -> list[tuple[tuple[str, ...], str]]:
    """Checks that span fields, on what is known to be well-formed."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if facts.scope is not None and facts.metric is not None:
        scopes = scopes_of(facts.metric)
        if facts.scope not in scopes:
            problems.append((("metric",), f"metric {facts.metric!r} does not fit scope "
                                          f"{facts.scope!r} (it fits: {', '.join(scopes)})"))
    if facts.name in BUILTIN_RULES:
        problems.append((("name",), f"{facts.name!r} is the name of a built-in alert"))
    if facts.levels is not None:
        if facts.levels_complete and not facts.levels:
            problems.append((("levels",), "levels: define at least one of info, warning, "
                                          "critical"))
        values = [facts.levels[name] for name in SEVERITIES if name in facts.levels]
        ascending = facts.when == "above"
        if facts.when is not None and any((a >= b) if ascending else (a <= b)
                                          for a, b in itertools.pairwise(values)):
            order = "increase" if ascending else "decrease"
            problems.append((("levels",), f"thresholds out of order: with when: {facts.when} "
                                          f"they must {order} from info to warning to critical"))
    if facts.scope == "account":
        problems.extend((("match", key), f"match.{key} does not apply to scope 'account'")
                        for key in ("symbol", "market_type") if key in facts.match_keys)
    if facts.has_action and facts.scope is not None and facts.scope != "position":
        problems.append((("action",), "action is only allowed in scope 'position'"))
    if (facts.action_at is not None and facts.levels is not None and facts.levels_complete
            and facts.action_at not in facts.levels):
        problems.append((("action", "at"), f"action.at: level {facts.action_at!r} is not "
                                           "defined in levels"))
    problems.extend(_history_checks(facts))
    return problems


def _history_checks(facts: _Facts) -> list[tuple[tuple[str, ...], str]]:
    """``window`` belongs to drawdown and ``change`` to the account metrics history keeps;
    both look back more than nothing and no further than the history is kept."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if facts.metric == "drawdown" and not facts.has_window:
        problems.append((("metric",), "metric 'drawdown' needs a window: a duration (24h) "
                                      "or day (since 00:00 UTC)"))
    if facts.has_window and facts.metric is not None and facts.metric != "drawdown":
        problems.append((("window",), "window applies only to metric 'drawdown'"))
    if isinstance(facts.window, timedelta):
        problems.extend((("window",), f"window: {message}")
                        for message in _look_back_problems(facts.window))
    if facts.has_change and facts.scope is not None and facts.scope != "account":
        problems.append((("change",), "change applies only to scope 'account'"))
    elif facts.has_change and facts.metric is not None and facts.metric not in CHANGE_METRICS:
        problems.append((("change",), f"change: metric {facts.metric!r} is not kept in "
                                      f"history (change works on: {', '.join(CHANGE_METRICS)})"))
    if facts.change is not None:
        problems.extend((("change",), f"change: {message}")
                        for message in _look_back_problems(facts.change))
    return problems


def _look_back_problems(duration: timedelta) -> list[str]:
    if duration <= timedelta(0):
        return ["must be longer than 0s"]
    if duration > KEEP:
        return [f"longer than the history kept ({KEEP.days} days)"]
    return []


def check_rule(rule: Rule) -> list[tuple[tuple[str, ...], str]]:
    """Cross-field checks; each problem with the path (inside the rule) it is about."""
    return _cross_checks(_facts_of_rule(rule))


def _keys_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys a model reads, as written in files (``for``, not ``for_``)."""
    return tuple(info.alias or key for key, info in model.model_fields.items())


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that reads the mapping at ``path`` of a document ``model`` reads."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            current = _inside(current, list)
        else:
            found = _inside(current, BaseModel)
            fields = found.model_fields if found is not None else {}
            current = next((info.annotation for key, info in fields.items()
                            if (info.alias or key) == part), None)
    model_there: type[BaseModel] | None = _inside(current, BaseModel)
    return model_there


def _inside(annotation: Any, kind: type) -> Any:
    """The model (``kind`` BaseModel) or list item type (``kind`` list) an annotation holds,
    looking through ``X | None`` and ``Annotated``; None if it holds none."""
    pending = [annotation]
    while pending:
        candidate = pending.pop()
        if kind is BaseModel and isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        origin = typing.get_origin(candidate)
        if kind is list and origin is list:
            return typing.get_args(candidate)[0]
        if origin in (typing.Union, types.UnionType, typing.Annotated):
            pending.extend(typing.get_args(candidate))
    return None


def locate_problem(name: str, located: yamlpos.Located, detail: Any,
                   prefix: tuple[str | int, ...] = (),
                   document: type[BaseModel] | None = None) -> RuleProblem:
    """A pydantic error detail as a ``file:line:col`` problem, at the key or value it is about.

    ``document`` is the model of the whole document (a rule file unless told), used to
    suggest the nearest known key for a misspelt one.
    """
    loc = _document_path(located, prefix + tuple(detail["loc"]))
    kind = detail["type"]
    if kind == "extra_forbidden" and loc:
        where = located.position(loc, key=True)
        model = _model_at(document or RuleFile, loc[:-1])
        message = f"unknown key {loc[-1]!r}{suggest(loc[-1], _keys_of(model) if model else ())}"
    elif kind == "missing":
        where = located.position(loc[:-1])
        message = f"missing required key {loc[-1]!r}"
    else:
        where = located.position(loc)
        inside = loc[2:] if len(loc) > 2 and loc[0] == "rules" and isinstance(loc[1], int) else loc
        field_name = ".".join(str(part) for part in inside) or "file"
        message = f"{field_name}: {_message(detail)}"
    return RuleProblem(name, where.line, where.column, message)


def _message(detail: Any) -> str:
    """Pydantic's message, said for people who write YAML."""
    kind, value = detail["type"], detail.get("input")
    if kind == "string_pattern_mismatch" and detail["loc"][-1] == "name":
        return (f"{str(value)[:60]!r} is not a valid rule name: use lowercase letters, digits, "
                "'-' and '_', starting with a letter or digit")
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(detail.get("ctx", {}).get("expected", "")))
        return (f"expected one of {', '.join(repr(c) for c in choices)}, got "
                f"{str(value)[:40]!r}{suggest(value, choices)}")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a mapping"
    if kind == "list_type":
        return "expected a list"
    if kind == "string_type":
        return "expected text"
    if kind == "bool_type":
        return "expected true or false"
    return re.sub(r"^(Value error|Assertion failed), ", "", detail["msg"])


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




def shipped_rules_dir() -> Path:
    """The default rule set: inside the installed package, or ``rules/`` of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "default_rules"
    if packaged.is_dir():
        return packaged
    return package.parent / "rules"
