"""The CLI's one error path: each error is one line and SPEC §1's exit status, never a
traceback unless --debug; a command's result is its exit status; a closed pipe is exit 0."""

from __future__ import annotations

from importlib.metadata import entry_points

import click
import pytest
from click.testing import CliRunner, Result

import riskwatch.cli
from riskwatch.cli import RiskwatchGroup, cli
from riskwatch.errors import (
    NotLeading,
    RiskwatchError,
    RuleProblem,
    RulesError,
    SettingsError,
    StoreError,
    TreadAuthError,
    TreadBadResponse,
    TreadClientError,
    TreadError,
    TreadServerError,
    TreadTimeout,
    TreadTooLarge,
    TreadUnreachable,
)


def _run(outcome: BaseException | int | None, *options: str) -> Result:
    """Invoke a command that raises ``outcome`` (or returns it) under a RiskwatchGroup."""

    @click.group(cls=RiskwatchGroup)
    @click.option("--debug", is_flag=True)
    def root(debug: bool) -> None:
        """A root group like riskwatch's."""

    @root.command()
    def go() -> int | None:
        """Raise or return the outcome."""
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return CliRunner().invoke(root, [*options, "go"])


PROBLEM = RuleProblem("rules/a.yaml", 3, 5, "unknown key 'wen' (did you mean 'when'?)")
ERRORS = [
    (RiskwatchError("something expected went wrong"), "riskwatch: something expected went wrong"),
    (SettingsError("RISKWATCH_POLL_INTERVAL: invalid duration 'soon'"),
     "riskwatch: RISKWATCH_POLL_INTERVAL: invalid duration 'soon'"),
    (RulesError([PROBLEM]), "rules/a.yaml:3:5: unknown key 'wen' (did you mean 'when'?)"),
    (StoreError("RISKWATCH_STATE: cannot open x.db"),
     "riskwatch: RISKWATCH_STATE: cannot open x.db"),
    (NotLeading("another replica took the lead"), "riskwatch: another replica took the lead"),
    (TreadError("GET /api/balances/ failed"), "riskwatch: GET /api/balances/ failed"),
    (TreadAuthError("HTTP 401, the API token was refused"),
     "riskwatch: HTTP 401, the API token was refused"),
    (TreadClientError("HTTP 404 (not found)", 404), "riskwatch: HTTP 404 (not found)"),
    (TreadServerError("HTTP 500 from the API"), "riskwatch: HTTP 500 from the API"),
    (TreadTimeout("no answer in 10s"), "riskwatch: no answer in 10s"),
    (TreadUnreachable("cannot reach http://127.0.0.1:9"),
     "riskwatch: cannot reach http://127.0.0.1:9"),
    (TreadBadResponse("not JSON"), "riskwatch: not JSON"),
    (TreadTooLarge("answer over 1000 bytes"), "riskwatch: answer over 1000 bytes"),
]


@pytest.mark.parametrize(("error", "line"), ERRORS, ids=lambda e: type(e).__name__)
def test_each_error_is_one_line_and_exit_2(error: RiskwatchError, line: str) -> None:
    """Every error class reaching the top: exactly its one line on stderr, nothing on
    stdout, exit 2 (rules that stop a command from starting are an error too)."""
    result = _run(error)
    assert (result.exit_code, result.stderr, result.stdout) == (2, f"{line}\n", "")


def test_every_error_class_is_covered() -> None:
    """A new class in riskwatch.errors needs its line in ERRORS above."""
    def tree(cls: type[RiskwatchError]) -> set[type[RiskwatchError]]:
        return {cls}.union(*(tree(sub) for sub in cls.__subclasses__()))
    public = {cls for cls in tree(RiskwatchError) if cls.__module__ == "riskwatch.errors"}
    assert public == {type(error) for error, _ in ERRORS}


def test_a_rules_error_prints_each_problem_on_its_line() -> None:
    """Several rule problems: one `file:line:col: message` line each, still exit 2."""
    other = RuleProblem("rules/b.yaml", 1, 1, "duplicate rule name 'x'")
    result = _run(RulesError([PROBLEM, other]))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [str(PROBLEM), str(other)]


def test_debug_keeps_the_traceback() -> None:
    """With --debug the error is raised on, traceback and all (exit 1, as Python does)."""
    error = SettingsError("RISKWATCH_TREAD_TOKEN is required")
    result = _run(error, "--debug")
    assert result.exception is error and result.exit_code == 1


def test_an_unexpected_exception_is_not_disguised_as_an_expected_one() -> None:
    """A bug is not turned into a one-line error: it propagates with its traceback."""
    result = _run(ZeroDivisionError("bug"))
    assert isinstance(result.exception, ZeroDivisionError) and result.exit_code == 1


@pytest.mark.parametrize(("returned", "status"), [(None, 0), (0, 0), (1, 1)])
def test_a_commands_result_is_its_exit_status(returned: int | None, status: int) -> None:
    """`check` returns 1 for a breach, `silence remove` 1 for a bad id: that is the status."""
    assert _run(returned).exit_code == status


def test_a_closed_pipe_is_exit_0_and_silent() -> None:
    """A reader that stopped early (`| head`) is neither an error nor a breach."""
    result = _run(BrokenPipeError())
    assert (result.exit_code, result.stderr) == (0, "")


def test_the_console_script_and_python_m_reach_the_same_group() -> None:
    """`riskwatch = "riskwatch.cli:main"` still loads, and the root is a RiskwatchGroup."""
    [script] = entry_points(group="console_scripts", name="riskwatch")
    assert script.value == "riskwatch.cli:main" and script.load() is riskwatch.cli.main
    assert isinstance(cli, RiskwatchGroup)
    assert set(cli.commands) == {"run", "demo", "check", "snapshot", "alerts", "actions",
                                 "silence", "rules"}
