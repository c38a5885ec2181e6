"""Settings from ``RISKWATCH_*`` variables, a ``.env`` file, or files in a secrets directory.

Secrets (the API token, the Slack tokens and webhook URL) are ``SecretStr``: printing the
settings shows ``**********``. A bad value becomes one :class:`SettingsError` line that
names the variable, never its value when the value is a secret.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from riskwatch.core.durations import parse_duration
from riskwatch.errors import SettingsError

PREFIX = "RISKWATCH_"
# 10,000 accounts of 20 assets are about 72 MB of JSON: room for nearly twice that
DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+)\s*(|k|m|g)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``128MiB``, ``64m``, ``500000``: a size in bytes (the units are powers of 1024)."""
    found = _SIZE.match(text)
    if found is None:
        raise ValueError("expected a size such as 134217728, 128MiB or 64M")
    return int(found.group(1)) * _UNITS[found.group(2).lower()]
DEFAULT_SECRETS_DIR = "/run/secrets"
# a Slack user (U…, or W… on Enterprise Grid) or a user group (S…)
OPERATOR_ID = re.compile(r"[UWS][A-Z0-9]{2,}")

Duration = Annotated[timedelta, NoDecode, Field(validate_default=True)]


def _duration(value: Any) -> timedelta:
    return parse_duration(value)


class Settings(BaseSettings):
    """Every setting of SPEC §2."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        case_sensitive=False, validate_default=True,
    )

    tread_url: str = "https://app.tread.fi"
    tread_token: SecretStr | None = None
    source: Literal["cached", "live"] = "cached"
    accounts: Annotated[list[str] | None, NoDecode] = None
    poll_interval: Duration = timedelta(seconds=15)
    stale_after: Annotated[timedelta | None, NoDecode] = None
    rules: Path = Path("rules")
    slack_webhook_url: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    state: str = "sqlite:///riskwatch-state.db"
    actions: Literal["off", "dry-run", "enforce"] = "dry-run"
    max_actions_per_hour: Annotated[int, Field(ge=0)] = 10
    http: str = "127.0.0.1:9464"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    request_deadline: Annotated[timedelta | None, NoDecode] = None
    max_response_bytes: Annotated[int, NoDecode] = DEFAULT_MAX_RESPONSE_BYTES
    heartbeat_url: SecretStr | None = None
    http_token: SecretStr | None = None  # guards every page but /healthz when set
    public_url: str | None = None  # where people reach the status page; alerts link to it
    history_raw: Duration = timedelta(hours=48)  # each poll's point, then 5-minute points
    history_keep: Duration = timedelta(days=90)  # 5-minute points, then gone
    # Socket Mode (buttons, /riskwatch): the app-level token and who may act from Slack
    slack_app_token: SecretStr | None = None
    slack_operators: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("history_raw", "history_keep")
    @classmethod
    def _history_bounds(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1) or value > timedelta(days=3650):
            raise ValueError("must be between 1h and 3650d")
        return value

    @model_validator(mode="after")
    def _raw_within_keep(self) -> Settings:
        if self.history_raw > self.history_keep:
            raise ValueError("RISKWATCH_HISTORY_RAW must not be longer than "
                             "RISKWATCH_HISTORY_KEEP")
        return self

    @field_validator("poll_interval", "stale_after", "request_deadline", "history_raw",
                     "history_keep", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return _duration(value)

    @field_validator("poll_interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=0.1):
            raise ValueError("must be at least 0.1s")
        return value

    @field_validator("request_deadline")
    @classmethod
    def _positive_deadline(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=0.1):
            raise ValueError("must be at least 0.1s")
        return value

    @field_validator("max_response_bytes", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("max_response_bytes")
    @classmethod
    def _sane_size(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("must be at least 1KiB")
        return value

    @field_validator("heartbeat_url", "slack_webhook_url")
    @classmethod
    def _secret_http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_http_url(value.get_secret_value())
        return value

    @field_validator("accounts", mode="before")
    @classmethod
    def _split_accounts(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [name.strip() for name in value.split(",") if name.strip()]
            return names or None
        return value

    @field_validator("tread_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        check_http_url(value, base=True)
        return value

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            check_http_url(value.strip(), base=True)
            return value.strip().rstrip("/")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().startswith("xapp-"):
            raise ValueError("must be an app-level token (xapp-…) with connections:write")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("slack_operators", mode="before")
    @classmethod
    def _operators(cls, value: Any) -> Any:
        if value is None:
            return ()
        names = value.split(",") if isinstance(value, str) else list(value)
        ids = tuple(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))
        for found in ids:
            if not OPERATOR_ID.fullmatch(found):
                raise ValueError("expected Slack user IDs (U…, W…) or user group IDs (S…), "
                                 "comma-separated")
        return ids

    @field_validator("http_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        """``RISKWATCH_HTTP_TOKEN=`` (an env file's empty line) means no token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("http_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("log_level", "log_format", "source", "actions", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("http")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if value == "off":
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port (e.g. 127.0.0.1:9464) or off")
        return value

    @model_validator(mode="after")
    def _slack_choice(self) -> Settings:
        if self.slack_bot_token is not None and self.slack_webhook_url is not None:
            raise ValueError("RISKWATCH_SLACK_WEBHOOK_URL and RISKWATCH_SLACK_BOT_TOKEN are both "
                             "set; choose one")
        if self.slack_bot_token is not None and not self.slack_channel:
            raise ValueError("RISKWATCH_SLACK_CHANNEL is required with RISKWATCH_SLACK_BOT_TOKEN")
        if self.slack_app_token is not None and self.slack_bot_token is None:
            raise ValueError("RISKWATCH_SLACK_APP_TOKEN needs RISKWATCH_SLACK_BOT_TOKEN: "
                             "clicks are answered and messages updated through the Web API")
        if self.request_deadline is not None and self.request_deadline >= self.stale_limit:
            raise ValueError("RISKWATCH_REQUEST_DEADLINE must be shorter than "
                             "RISKWATCH_STALE_AFTER, or a hung call would hide source-down")
        return self

    @property
    def stale_limit(self) -> timedelta:
        """``stale_after``, defaulting to three poll intervals."""
        return self.stale_after if self.stale_after is not None else 3 * self.poll_interval

    @property
    def deadline(self) -> timedelta:
        """``request_deadline``, by default half of ``stale_limit`` and at most 30 s.

        Half of STALE_AFTER leaves room for one hung call and one more poll before
        ``source-down`` is due, so a hung API is announced on time.
        """
        if self.request_deadline is not None:
            return self.request_deadline
        return min(self.stale_limit / 2, timedelta(seconds=30))

    @property
    def slack_buttons(self) -> bool:
        """Firing messages carry buttons: a bot token, an app token and operators are set
        (a webhook cannot receive clicks; without operators no click could take effect)."""
        return (self.slack_bot_token is not None and self.slack_app_token is not None
                and bool(self.slack_operators))

    @property
    def watched(self) -> frozenset[str] | None:
        """The account names to watch, or None for all."""
        return frozenset(self.accounts) if self.accounts else None

    def token(self) -> str:
        """The API token; a SettingsError when it is missing."""
        if self.tread_token is None or not self.tread_token.get_secret_value().strip():
            raise SettingsError("RISKWATCH_TREAD_TOKEN is required (the Tread.fi API token)")
        return self.tread_token.get_secret_value().strip()

    def secrets(self) -> list[str]:
        """Every secret value set, for the redaction safety net in logs and errors.

        Besides the token, the Slack token and the webhook URL, that is the credentials of
        an API URL such as ``https://user:pw@host``: the whole ``user:pw`` and the
        password alone, as written and percent-decoded. Longest first, so that a
        redactor masks the whole ``user:pw`` before the password in it.
        """
        values = [value.get_secret_value() for value in
                  (self.tread_token, self.slack_bot_token, self.slack_webhook_url,
                   self.heartbeat_url, self.http_token, self.slack_app_token)
                  if value is not None]
        for url in (self.tread_url, self.slack_api_url, self.state):
            values.extend(url_credentials(url))
        kept = {value for value in values if len(value) >= 4}
        return sorted(kept, key=lambda value: (-len(value), value))


def url_credentials(url: str) -> list[str]:
    """The secret parts of a URL's ``user:password@``: the user-info and the password,
    each as written and percent-decoded (nothing for a URL without them)."""
    netloc = urlsplit(url).netloc
    userinfo = netloc.rpartition("@")[0]
    if not userinfo:
        return []
    password = userinfo.partition(":")[2]
    parts = [userinfo, password] if password else [userinfo]
    return list(dict.fromkeys(form for part in parts for form in (part, unquote(part))))


def check_http_url(value: str, *, base: bool = False) -> None:
    """ValueError unless ``value`` is a usable http(s) URL; a ``base`` URL (paths are
    added to it) has no query or fragment. The message never quotes the value: a URL
    may carry credentials."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if not parts.hostname:
        raise ValueError("has no host")
    if base and (parts.query or parts.fragment):
        raise ValueError("is a base URL: it takes no ?query or #fragment")


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a bad one raises SettingsError naming its variable."""
    secrets_dir = os.environ.get(f"{PREFIX}SECRETS_DIR", DEFAULT_SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides)
    if Path(secrets_dir).is_dir():
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return Settings(**kwargs)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    """One line per problem: the variable, then pydantic's message (never the input)."""
    lines = []
    for detail in error.errors(include_input=False, include_url=False):
        loc = [str(part) for part in detail["loc"] if isinstance(part, str)]
        message = str(detail["msg"]).removeprefix("Value error, ")
        if loc:
            lines.append(f"{PREFIX}{loc[0].upper()}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)
