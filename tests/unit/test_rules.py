"""Rule loading: every error class of SPEC §4 at its file:line:col, and valid files."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from riskwatch.errors import RuleProblem, RulesError
from riskwatch.rulefiles import yamlpos
from riskwatch.rulefiles.loader import load_rules, read_yaml, shipped_rules_dir
from riskwatch.rulefiles.ruletest import load_test_file
from riskwatch.rulefiles.schema import json_schema

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rules"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))
TABLE = GOOD + BAD  # the one table of rule files both the loader and the schema judge
REPO = Path(__file__).parent.parent.parent
SCHEMA = json.loads((REPO / "schema" / "riskwatch-rules.schema.json").read_text())


def _header(path: Path, tag: str) -> list[str]:
    """The values of the ``# tag: ...`` lines that open a fixture."""
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    prefix = f"# {tag}: "
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


def _expectations(path: Path) -> list[tuple[int, int, str]]:
    found = []
    for text in _header(path, "expect"):
        match = re.match(r"(\d+):(\d+): (.*)", text)
        assert match, f"{path.name}: bad '# expect:' line {text!r}"
        found.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return found


def _loader_problems(path: Path) -> list[RuleProblem]:
    try:
        load_rules([path])
    except RulesError as error:
        return error.problems
    return []


def _schema_verdict(path: Path) -> bool | None:
    """Whether the shipped schema accepts the document; None when riskwatch refuses the file
    before any schema question arises (YAML syntax, duplicate keys, bombs, tags)."""
    import jsonschema

    try:
        read_yaml(path)
    except RulesError:
        return None
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return bool(jsonschema.Draft202012Validator(SCHEMA).is_valid(document))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_each_bad_file_reports_every_problem_at_the_right_place(path: Path) -> None:
    """Each bad fixture yields exactly the problems its header names, in order of position."""
    expected = _expectations(path)
    assert expected, f"{path.name} lacks its '# expect:' lines"
    problems = _loader_problems(path)
    assert [(p.line, p.column) for p in problems] == [(line, col) for line, col, _ in expected]
    for problem, (line, column, message) in zip(problems, expected, strict=True):
        assert problem.file == str(path)
        assert message in problem.message
        assert str(problem).startswith(f"{path}:{line}:{column}: ")


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_each_good_file_loads(path: Path) -> None:
    """Every good fixture loads without a problem."""
    assert _loader_problems(path) == []


@pytest.mark.parametrize("path", TABLE, ids=[f"{p.parent.name}/{p.stem}" for p in TABLE])
def test_schema_judges_each_file_as_the_loader_does(path: Path) -> None:
    """The shipped JSON Schema accepts exactly the files the loader accepts.

    Files riskwatch refuses as YAML (syntax, duplicate keys, aliases, depth, tags) never
    reach a schema. Files marked ``# schema: blind`` break a rule JSON Schema cannot
    state (thresholds in order, unique names); for them the schema accepts, pinned here.
    """
    loads = not _loader_problems(path)
    verdict = _schema_verdict(path)
    if verdict is None:
        assert not loads
    elif _header(path, "schema") and _header(path, "schema")[0].startswith("blind"):
        assert verdict and not loads
    else:
        assert verdict == loads


def test_table_holds_every_kind_the_schema_once_misjudged() -> None:
    """The table keeps the kinds of file the schema and the loader judged differently."""
    names = {path.stem for path in TABLE}
    assert {"unknown_metric", "metric_scope", "metric_scope_asset", "match_scope",
            "match_scope_market_type", "action_scope", "action_scope_asset", "no_levels",
            "level_nan", "level_inf", "level_minus_inf", "level_text", "leverage_text",
            "level_too_large", "hysteresis_text", "number_forms", "bomb_billion_laughs",
            "bomb_self_alias", "bomb_deep_flow", "bomb_deep_block"} <= names
    assert len(BAD) >= 22 + 4


def test_duplicate_names_across_files_are_reported(tmp_path: Path) -> None:
    """A rule name used in two files is an error pointing at the second one."""
    body = "rules:\n  - name: same\n    scope: account\n    metric: equity\n    when: below\n" \
           "    levels: {warning: 10}\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yml").write_text(body)
    with pytest.raises(RulesError) as caught:
        load_rules([tmp_path])
    [problem] = caught.value.problems
    assert problem.file == str(tmp_path / "b.yml")
    assert (problem.line, problem.column) == (2, 11)
    assert "duplicate rule name 'same'" in problem.message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    """Several problems in one file are all listed, not just the first."""
    path = tmp_path / "many.yaml"
    path.write_text("rules:\n  - name: a\n    scope: account\n    metric: nope\n"
                    "    levels: {warning: 1}\n    colour: red\n")
    with pytest.raises(RulesError) as caught:
        load_rules([path])
    lines = sorted((p.line, p.column) for p in caught.value.problems)
    assert lines == [(4, 13), (6, 5)]


def test_full_rule_parses_with_exact_decimals_and_defaults(tmp_path: Path) -> None:
    """Every key of the SPEC example loads; floats become exact Decimals; defaults apply."""
    path = tmp_path / "full.yaml"
    path.write_text("""
defaults:
  for: 30s
  repeat: 1h
rules:
  - name: account-maint-margin
    description: Maintenance margin is eating the margin balance
    scope: position
    metric: maint_margin_ratio
    when: above
    levels:
      warning: 0.5
      critical: 0.8
    match:
      exchange: [Bybit, Binance]
      account: ["desk-*"]
      symbol: ["*:PERP-*"]
      market_type: [perp, unified]
    keep_firing_for: 0s
    hysteresis: 0.05
    repeat: 2h
    send_resolved: true
    channel: "#risk"
    runbook: https://wiki.example/margin
    action:
      set_leverage: 3
      at: critical
""")
    [rule] = load_rules([path])
    assert rule.levels.warning == Decimal("0.5") and rule.levels.critical == Decimal("0.8")
    assert rule.hysteresis == Decimal("0.05")
    assert rule.for_ == timedelta(seconds=30)  # from defaults
    assert rule.repeat == timedelta(hours=2)  # the rule's own value wins
    assert rule.action is not None and rule.action.set_leverage == Decimal(3)
    assert rule.match is not None and rule.match.account == ["desk-*"]


def test_shipped_rules_are_valid_and_cover_the_spec_set() -> None:
    """The default rule set loads and has the metrics SPEC §4 promises."""
    rules = load_rules([shipped_rules_dir()])
    metrics = {(rule.scope, rule.metric) for rule in rules}
    assert {("position", "maint_margin_ratio"), ("account", "maint_margin_ratio"),
            ("position", "leverage"), ("position", "notional_pct_total"),
            ("account", "effective_leverage"), ("account", "data_age")} <= metrics


def test_shipped_schema_is_the_generated_one() -> None:
    """schema/riskwatch-rules.schema.json is regenerated whenever the models change."""
    shipped = json.loads((REPO / "schema" / "riskwatch-rules.schema.json").read_text())
    assert shipped == json_schema()


def test_schema_accepts_shipped_rules_and_rejects_unknown_keys() -> None:
    """The JSON Schema says what the loader says, for a valid file and an unknown key."""
    import jsonschema
    import yaml

    schema = json_schema()
    for path in sorted(shipped_rules_dir().glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        jsonschema.validate(document, schema)
    bad = yaml.safe_load((FIXTURES / "bad" / "unknown_key.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_missing_directory_of_rules_is_an_error(tmp_path: Path) -> None:
    """An empty rules directory is a problem, not an empty rule set that watches nothing."""
    with pytest.raises(RulesError) as caught:
        load_rules([tmp_path])
    assert "no rule files" in str(caught.value)


@pytest.mark.parametrize("name", ["bomb_billion_laughs", "bomb_self_alias", "bomb_deep_flow",
                                  "bomb_deep_block", "bomb_alias_chain", "bomb_long_number"])
def test_pure_python_parser_is_bounded_too(name: str) -> None:
    """Without libyaml the same limits hold: each bomb is refused with a position."""
    text = (FIXTURES / "bad" / f"{name}.yaml").read_text()
    with pytest.raises(yamlpos.InputError) as caught:
        yamlpos.load(text, pure=True)
    assert caught.value.position.line >= 2


def test_misspelt_keys_get_suggestions_in_rule_and_test_files(tmp_path: Path) -> None:
    """A misspelt key, at any depth of a rule file or a rule test file, names the nearest."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults: {repet: 1h}\nrules:\n  - name: a\n    scope: position\n"
                     "    metric: leverage\n    levels: {warnin: 1}\n"
                     "    match: {symbl: ['*']}\n    action: {set_leverag: 2}\n")
    messages = [p.message for p in _loader_problems(rules)]
    for wrong, right in (("repet", "repeat"), ("warnin", "warning"), ("symbl", "symbol"),
                         ("set_leverag", "set_leverage")):
        assert f"unknown key {wrong!r} (did you mean {right!r}?)" in messages, messages
    test_file = tmp_path / "test.yaml"
    test_file.write_text("rule_files: [rules.yaml]\ntests:\n  - name: t\n    snapshots:\n"
                         "      - {at: 0s, accounts: [{name: a, asets: []}]}\n    expect: []\n")
    with pytest.raises(RulesError) as caught:
        load_test_file(test_file)
    assert [str(p) for p in caught.value.problems] == [
        f"{test_file}:5:39: unknown key 'asets' (did you mean 'assets'?)"]
