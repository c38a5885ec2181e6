"""The command line: ``riskwatch`` and its groups of commands."""

from riskwatch.cli.main import main

__all__ = ["main"]
