"""The ``rules`` group: validate rule files, run their unit tests, print their JSON Schema.

``validate`` and ``test`` report rule problems themselves, on standard output, and exit 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from riskwatch.cli.output import print_json
from riskwatch.errors import RulesError
from riskwatch.rulefiles.loader import load_rules
from riskwatch.rulefiles.ruletest import run_file
from riskwatch.rulefiles.schema import json_schema


@click.group()
def rules() -> None:
    """Rule files: validate them, test them, print their JSON Schema."""


@rules.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def rules_validate(paths: tuple[Path, ...]) -> int:
    """Check rule files; each problem as file:line:col: message."""
    targets = list(paths) or [Path(os.environ.get("RISKWATCH_RULES", "rules"))]
    missing = [path for path in targets if not path.exists()]
    for path in missing:
        click.echo(f"{path}:1:1: no such file or directory", err=True)
    if missing:
        return 1
    try:
        loaded = load_rules(targets)
    except RulesError as error:
        for problem in error.problems:
            click.echo(str(problem))
        click.echo(f"{len(error.problems)} problem(s) found", err=True)
        return 1
    click.echo(f"{len(loaded)} rule(s) valid")
    return 0


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_test(files: tuple[Path, ...]) -> int:
    """Run rule unit tests; a failure shows what was expected and what happened."""
    passed = failed = 0
    for file in files:
        try:
            outcomes = run_file(file)
        except RulesError as error:
            for problem in error.problems:
                click.echo(str(problem))
            failed += 1
            continue
        for outcome in outcomes:
            if outcome.failures:
                failed += 1
                click.echo(f"FAIL {outcome.file}: {outcome.name}")
                for failure in outcome.failures:
                    click.echo(f"  {failure}")
            else:
                passed += 1
                click.echo(f"ok   {outcome.file}: {outcome.name}")
    click.echo(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


@rules.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rule files (the file shipped in schema/)."""
    print_json(json_schema())
