"""The rule language: what a rule is, as pydantic models that forbid unknown keys.

Each field checks its own value (a finite number, a bounded duration, a closed glob, a
known metric). Reading rule files, the checks that span fields or files, and the JSON
Schema live in :mod:`riskwatch.rulefiles`.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
)

from riskwatch.core.durations import parse_duration
from riskwatch.core.measures import ALL_METRICS

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")  # lowest first
BUILTIN_RULES = frozenset({"source-down", "auth-failed", "account-error", "rules-invalid",
                           "action-limit", "account-missing", "store-failed"})
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
LARGEST = sys.float_info.max  # a number must be finite as a double, as JSON Schema tools see it
DURATION_PATTERN = r"^\s*\d{1,9}(\.\d+)?\s*[smhd]?\s*$"
DURATION_LIMIT = 1_000_000_000  # seconds, or units of a suffixed duration (about 31 years)
# A value that every finite number fails and NaN passes (NaN fails every comparison, and a
# failed comparison passes a JSON Schema bound); "not" of it rejects exactly NaN.
_NAN = {"maximum": 0, "exclusiveMinimum": 0}


def _number_schema(**bounds: float) -> dict[str, Any]:
    return {"type": "number", "minimum": -LARGEST, "maximum": LARGEST, **bounds, "not": _NAN,
            "description": "a finite number, written without quotes"}


def check_number(value: object) -> object:
    """Accept only a YAML number that is finite as a double: not text, true/false or null.

    ``warning: "0.5"`` is text in YAML, so it is refused like any other wrong type,
    with a hint; ``.nan``, ``.inf`` and numbers beyond the double range are refused.
    """
    if isinstance(value, str):
        raise ValueError(f"expected a number, got the text {value[:40]!r} "
                         "(write numbers without quotes)")
    if value is None or isinstance(value, bool):
        raise ValueError(f"expected a number, got {_yaml_word(value)}")
    if (isinstance(value, float) and not math.isfinite(value)) or (
            isinstance(value, Decimal) and not value.is_finite()):
        raise ValueError(f"expected a finite number, got {_yaml_word(value)}")
    if (isinstance(value, int) and abs(value) > LARGEST) or (
            isinstance(value, float | Decimal) and not math.isfinite(float(value))):
        raise ValueError(f"number too large (at most {LARGEST:.6g})")
    return value


def _yaml_word(value: object) -> str:
    """How YAML writes null, true/false and the non-finite floats."""
    words = {"None": "null", "True": "true", "False": "false", "nan": ".nan", "inf": ".inf",
             "-inf": "-.inf"}
    return words.get(str(value), str(value))


def _duration(value: object) -> timedelta:
    """A duration as ``parse_duration`` reads it, bounded so it always fits a timedelta."""
    if isinstance(value, str):
        if re.match(DURATION_PATTERN, value) is None:
            raise ValueError(f"invalid duration {value[:40]!r}: use 30s, 5m, 2h, 1d "
                             "or a number of seconds")
    elif (isinstance(value, int | Decimal) and not isinstance(value, bool)
          and not value < DURATION_LIMIT):
        raise ValueError(f"invalid duration {value}: must be less than {DURATION_LIMIT:,} "
                         "seconds")
    if isinstance(value, float) and math.isfinite(value):  # YAML's 1:30.5 (base 60)
        value = Decimal(repr(value))
    return parse_duration(value)


_DURATION_FORMS: list[dict[str, Any]] = [
    {"type": "string", "pattern": DURATION_PATTERN},
    {**_number_schema(minimum=0, exclusiveMaximum=DURATION_LIMIT),
     "description": "a number of seconds"},
]
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema({"anyOf": _DURATION_FORMS,
                    "description": "30s, 5m, 2h, 1d, or a number of seconds"}),
]


def _window(value: object) -> object:
    """``day`` as it is; anything else as a duration."""
    if value == "day":
        return value
    try:
        return _duration(value)
    except ValueError:
        raise ValueError(f"invalid window {str(value)[:40]!r}: use a duration (24h, 30m, "
                         "1d) or day (since 00:00 UTC)") from None


# A drawdown window: a duration, or ``day`` (since 00:00 UTC).
Window = Annotated[
    timedelta | Literal["day"],
    BeforeValidator(_window),
    WithJsonSchema({
        "anyOf": [{"const": "day", "description": "since 00:00 UTC"}, *_DURATION_FORMS],
        "description": "a duration (24h) or day (since 00:00 UTC)",
    }),
]
Threshold = Annotated[Decimal | None, BeforeValidator(check_number),
                      WithJsonSchema(_number_schema())]
NonNegative = Annotated[Decimal, BeforeValidator(check_number), Field(ge=0),
                        WithJsonSchema(_number_schema(minimum=0))]
Positive = Annotated[Decimal, BeforeValidator(check_number), Field(gt=0),
                     WithJsonSchema(_number_schema(exclusiveMinimum=0))]
# Invalid iff the last '[' has no ']' after it.
_UNCLOSED_BRACKET = r"\[[^\[\]]*$"


def check_glob(pattern: str) -> str:
    """Reject globs that cannot mean what was written: empty, or an unclosed ``[``."""
    if not pattern:
        raise ValueError("empty glob")
    if re.search(_UNCLOSED_BRACKET, pattern):
        raise ValueError(f"bad glob {pattern!r}: '[' is never closed")
    return pattern


Glob = Annotated[str, BeforeValidator(lambda v: check_glob(v) if isinstance(v, str) else v),
                 WithJsonSchema({"type": "string", "minLength": 1,
                                 "not": {"pattern": _UNCLOSED_BRACKET},
                                 "description": "a shell-style glob; every '[' is closed"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Levels(_Strict):
    """Thresholds by severity; at least one."""

    info: Threshold = None
    warning: Threshold = None
    critical: Threshold = None

    def ordered(self) -> list[tuple[Severity, Decimal]]:
        """The defined levels, lowest severity first."""
        return [(name, value) for name in SEVERITIES if (value := getattr(self, name)) is not None]


class Match(_Strict):
    """Shell-style globs (case-insensitive) that a row must match to be evaluated."""

    exchange: list[Glob] | None = None
    account: list[Glob] | None = None
    symbol: list[Glob] | None = None
    market_type: list[Glob] | None = None


class Action(_Strict):
    """Lower the position's leverage when the alert fires at ``at``."""

    set_leverage: Positive
    at: Severity = "critical"


class Defaults(_Strict):
    """Values every rule of the file takes unless it sets its own."""

    for_: Duration | None = Field(None, alias="for")
    keep_firing_for: Duration | None = None
    hysteresis: NonNegative | None = None
    repeat: Duration | None = None
    send_resolved: StrictBool | None = None
    channel: str | None = None
    runbook: str | None = None


class Rule(_Strict):
    """One rule: a metric in a scope, compared with levels, for the rows that match."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    scope: Literal["account", "asset", "position"]
    metric: str
    when: Literal["above", "below"] = "above"
    levels: Levels
    match: Match | None = None
    for_: Duration = Field(timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    hysteresis: NonNegative = Decimal(0)
    repeat: Duration = timedelta(hours=1)
    send_resolved: StrictBool = True
    channel: str | None = None
    runbook: str | None = None
    action: Action | None = None
    window: Window | None = None  # drawdown only
    change: Duration | None = None  # account metrics: compare the change over this duration

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in ALL_METRICS:
            known = f"; known: {', '.join(ALL_METRICS)}"
            raise ValueError(f"unknown metric {metric!r}{suggest(metric, ALL_METRICS, known)}")
        return metric


class RuleFile(_Strict):
    """A rule file: optional defaults and a list of rules."""

    defaults: Defaults | None = None
    rules: list[Rule]


def suggest(word: object, choices: Iterable[str], otherwise: str = "") -> str:
    """`` (did you mean 'levels'?)`` for a near miss, else ``otherwise``."""
    if not isinstance(word, str):
        return otherwise
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else otherwise
