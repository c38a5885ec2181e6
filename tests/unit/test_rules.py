"""Rule loading: every error class of SPEC §4 at its file:line:col, and valid files."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from riskwatch.errors import RulesError
from riskwatch.rules import json_schema, load_rules, shipped_rules_dir

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rules"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
REPO = Path(__file__).parent.parent.parent


def _expectation(path: Path) -> tuple[int, int, str]:
    first = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (\d+):(\d+): (.*)", first)
    assert match, f"{path.name} lacks its '# expect:' line"
    return int(match.group(1)), int(match.group(2)), match.group(3)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_each_bad_file_reports_its_problem_at_the_right_place(path: Path) -> None:
    """Each bad fixture yields exactly one problem, at the line and column its header names."""
    line, column, message = _expectation(path)
    with pytest.raises(RulesError) as caught:
        load_rules([path])
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert (problem.file, problem.line, problem.column) == (str(path), line, column)
    assert message in problem.message
    assert str(problem).startswith(f"{path}:{line}:{column}: ")


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
