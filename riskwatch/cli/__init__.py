"""The command line: ``riskwatch``, its groups of commands, and its one error path.

Every command raises the errors of :mod:`riskwatch.errors` and returns its exit status;
:class:`RiskwatchGroup` turns both into what SPEC §1 promises: one line on standard error
per error (no traceback unless ``--debug``), and the exit status.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from riskwatch import __version__
from riskwatch.cli import rules, run, state
from riskwatch.errors import RiskwatchError, RulesError

__all__ = ["RiskwatchGroup", "cli", "exit_status", "main"]


def exit_status(error: RiskwatchError) -> int:
    """The exit status of an error that reached the top (SPEC §1).

    Rules that stop a command from starting are an error like a bad setting (2):
    ``rules validate`` and ``rules test`` print their own problems and exit 1.
    """
    return 2 if isinstance(error, RulesError) else error.exit_status


def error_lines(error: RiskwatchError) -> list[str]:
    """What the user reads: each rule problem as ``file:line:col: message``, anything
    else as ``riskwatch: <message>``."""
    lines = str(error).splitlines() or [type(error).__name__]
    return lines if isinstance(error, RulesError) else [f"riskwatch: {line}" for line in lines]


class RiskwatchGroup(click.Group):
    """The root group: the one place where errors and results become exit statuses."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; its int result is the exit status, its error one line and 2."""
        try:
            result = super().invoke(ctx)
        except RiskwatchError as error:
            if ctx.params.get("debug"):
                raise
            for line in error_lines(error):
                click.echo(line, err=True)
            ctx.exit(exit_status(error))
        except BrokenPipeError:
            # a reader that stopped early (`riskwatch snapshot | head -1`): not an error,
            # and not a breach (exit 1). Python flushes stdout again at exit: point it at
            # nothing (a stdout without a descriptor has nothing to flush there).
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        if isinstance(result, int) and result:
            ctx.exit(result)
        return result


@click.group(cls=RiskwatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="riskwatch")
def cli(debug: bool) -> None:
    """riskwatch watches Tread.fi accounts and alerts in Slack before a liquidation."""


for command in (run.run, run.demo, run.check, run.snapshot, state.alerts, state.actions,
                state.silence, rules.rules):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()
