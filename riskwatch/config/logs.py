"""structlog set-up: JSON lines in containers, readable lines on a terminal, secrets masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


class Redactor:
    """A processor that replaces any secret value in any field with ``***``.

    Secrets are never put in log fields on purpose; this is the safety net for the day
    an error message from a library quotes one.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [secret for secret in secrets if secret]

    def __call__(self, _logger: Any, _name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Mask secrets in every string field."""
        if not self.secrets:
            return event
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = self.mask(value)
        return event

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


MAX_FIELD = 1000  # characters of one log field; API strings can be any length


class ConsoleSafe:
    """Every log field capped at MAX_FIELD characters; on a console, shown, never obeyed.

    ConsoleRenderer prints field values with ``repr()``, but the event text and a
    traceback as they are, and either may quote the API (a library's message, an error
    text). Characters that are not printable there (terminal escapes, C1 controls, bidi
    overrides, line breaks in the event) are shown as escapes (``\\x1b``, ``\\u202e``), as
    the terminal sink shows them; a traceback keeps its lines. JSON lines need nothing:
    the JSON renderer escapes every non-ASCII character.
    """

    def __init__(self, active: bool = True) -> None:
        self.active = active

    def __call__(self, _logger: Any, _name: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Cap every text field; on a console, make each one inert as well."""
        for key, value in event.items():
            if not isinstance(value, str):
                continue
            if key in ("exception", "stack"):  # a traceback keeps its lines
                if self.active:
                    event[key] = "\n".join(visible(line) for line in value.split("\n"))
                continue
            if len(value) > MAX_FIELD:  # a 10,000-character account name, say
                value = value[:MAX_FIELD - 1] + "…"
            event[key] = visible(value) if self.active else value
        return event


def visible(text: str) -> str:
    """``text`` with every unprintable character shown as its Python escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class _ToStructlog(logging.Handler):
    """Sends records of libraries that use stdlib logging (APScheduler, httpx) through structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        """Re-log the record as a structured event."""
        structlog.get_logger(record.name).log(record.levelno, record.getMessage(),
                                              logger=record.name)


def configure(level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (),
              stream: Any = None) -> Redactor:
    """Configure structlog for the process; logs go to standard error."""
    out = stream or sys.stderr
    json_lines = fmt == "json" or (fmt == "auto" and not out.isatty())
    redactor = Redactor(secrets)
    renderer: Any = (structlog.processors.JSONRenderer() if json_lines
                     else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            ConsoleSafe(active=not json_lines),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    # Libraries (APScheduler, httpx) speak at warning and above unless debugging: at info
    # they write a few lines on every poll, and alerts drown in them.
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    # "skipped: maximum number of running instances reached" on every tick of a slow poll
    # says what "poll failed" and /readyz already say
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.DEBUG if level == "debug" else logging.ERROR)
    return redactor
