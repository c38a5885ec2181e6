"""Log lines: an API string with terminal escapes, line breaks or bidi overrides cannot
rewrite the operator's screen or forge a log line, on a console or in JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from riskwatch.config import logs

HOSTILE = "evil\x1b[2J\x1b]0;title\x07\nfake 2026-01-01 [error    ] forged\u202eeman\x9b1m"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_console_logs_show_escapes_and_line_breaks_as_text() -> None:
    """On a console, escapes and a newline in the event text or a field are shown, not
    obeyed."""
    stream = io.StringIO()
    logs.configure("info", "console", stream=stream)
    structlog.get_logger("t").warning(f"poll failed: {HOSTILE}", account=HOSTILE)
    out = stream.getvalue()
    assert out.count("\n") == 1  # one event, one line
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "\u202e" not in out
    assert "evil\\x1b[2J" in out and "\\nfake" in out and "\\u202eeman" in out


def test_console_logs_keep_a_traceback_readable() -> None:
    """An exception's traceback keeps its lines; only control characters go."""
    stream = io.StringIO()
    logs.configure("info", "console", stream=stream)
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        structlog.get_logger("t").exception("boom")
    out = stream.getvalue()
    assert "Traceback" in out and out.count("\n") > 3
    assert "\x1b" not in out and "\u202e" not in out and "\x9b" not in out


def test_json_logs_escape_everything_unprintable() -> None:
    """A JSON log line stays one line of ASCII, and decodes to the original string."""
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    structlog.get_logger("t").warning("poll failed", account=HOSTILE)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.isascii()
    assert json.loads(out)["account"] == HOSTILE
