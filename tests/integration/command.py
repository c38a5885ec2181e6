"""The `riskwatch` command, run in this process or as a real one.

In this process is the default: a new Python process costs about a second of CPU (more under
coverage), and what most command tests check is output and exit status, which the console
entry point gives the same either way. Tests about being a process (signals, pipes, kill -9)
use ``riskwatch_process`` and are marked ``e2e``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

import structlog
from click.testing import CliRunner

from riskwatch.cli import main

Result = subprocess.CompletedProcess[str]


def riskwatch(*args: str, env: Mapping[str, str | None] | None = None,
              cwd: Path | None = None, timeout: float = 60) -> Result:
    """Run ``riskwatch ARGS`` through its console entry point in this process.

    ``env`` is laid over this process's environment for the call (``None`` removes a
    variable), as a child would inherit it; an exception that escapes is a traceback on
    standard error and exit status 1, as Python prints it.
    """
    del timeout  # the test's own timeout bounds an in-process call
    with _restored_logging(), _directory(cwd), CliRunner().isolation(env=env) as (out, err, _):
        status = _call(["riskwatch", *args])
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(["riskwatch", *args], status, stdout, stderr)


def riskwatch_process(*args: str, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None, timeout: float = 60) -> Result:
    """Run ``python -m riskwatch ARGS`` as a real process, ``env`` over this environment."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "riskwatch", *args], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _call(argv: list[str]) -> int:
    saved = sys.argv
    sys.argv = argv
    try:
        main()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except Exception:  # what the interpreter would print before exiting 1
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0


@contextlib.contextmanager
def _directory(cwd: Path | None) -> Iterator[None]:
    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _restored_logging() -> Iterator[None]:
    """The command configures logging for a whole process: undo that for the next test."""
    root = logging.getLogger()
    scheduler = logging.getLogger("apscheduler.scheduler")
    handlers, level, scheduler_level = list(root.handlers), root.level, scheduler.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers = handlers
        root.setLevel(level)
        scheduler.setLevel(scheduler_level)
