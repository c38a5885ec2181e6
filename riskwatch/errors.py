"""Every error riskwatch raises on purpose, so the CLI can turn each into one line.

The tree::

    RiskwatchError                 one line for the user; the CLI exits 2 unless told otherwise
    ├── SettingsError              a bad or missing RISKWATCH_* setting
    ├── RulesError                 rule files that do not load; carries every problem found
    ├── StoreError                 the state store cannot be opened or written
    ├── NotLeading                 another replica took the lead: this one must not act
    └── TreadError                 a call to the Tread.fi API failed
        ├── TreadAuthError         401: the token is wrong or revoked
        ├── TreadClientError       any other 4xx, with the API's message
        ├── TreadServerError       5xx
        ├── TreadTimeout           no answer in time
        ├── TreadUnreachable       no connection (DNS, refused, reset)
        └── TreadBadResponse       a 2xx body that is not the JSON we expect
            └── TreadTooLarge      an answer over RISKWATCH_MAX_RESPONSE_BYTES

Messages never contain a secret: they are built from status codes, URLs without
credentials and the API's own error text.
"""

from __future__ import annotations

from dataclasses import dataclass


class RiskwatchError(Exception):
    """Base of all expected errors; ``str(error)`` is the one line shown to the user."""

    exit_status = 2


class SettingsError(RiskwatchError):
    """A setting is missing or invalid; the message names the variable."""


class StoreError(RiskwatchError):
    """The state store could not be opened, migrated or written."""


class NotLeading(RiskwatchError):
    """A leader was deposed (its lock lost, another replica leads): it must not save,
    send or act; the write that found out wrote nothing."""


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule file, located for ``file:line:col: message`` output."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RulesError(RiskwatchError):
    """Rule files failed to load; ``problems`` lists every one found."""

    exit_status = 1

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class TreadError(RiskwatchError):
    """A Tread.fi API call failed."""

    retryable = True


class TreadAuthError(TreadError):
    """The API answered 401: the token is not accepted."""

    retryable = False


class TreadClientError(TreadError):
    """The API answered another 4xx: the request itself is wrong."""

    retryable = False

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class TreadServerError(TreadError):
    """The API answered 5xx."""


class TreadTimeout(TreadError):
    """The API did not answer in time."""


class TreadUnreachable(TreadError):
    """No connection could be made to the API."""


class TreadBadResponse(TreadError):
    """The API answered 2xx with a body that is not the expected JSON."""


class TreadTooLarge(TreadBadResponse):
    """The answer is larger than RISKWATCH_MAX_RESPONSE_BYTES; it was not read to the end."""
