"""Settings and durations: every variable readable, bad values named, secrets from files."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from riskwatch.config.settings import load_settings
from riskwatch.core.durations import format_duration, parse_duration
from riskwatch.errors import SettingsError


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("15", 15), (15, 15),
    ("0.5s", 0.5), (Decimal("1.5"), 1.5), ("0s", 0),
])
def test_durations_in_every_documented_form(text: object, seconds: float) -> None:
    """30s, 5m, 2h, 1d and bare seconds all parse."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 minutes", "-1", "1w", "", True, 1.5, -3])
def test_bad_durations_are_refused(text: object) -> None:
    """Anything else is a ValueError with the accepted forms in its message."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "shown"), [
    (5, "5s"), (60, "1m"), (125, "2m 5s"), (3600, "1h"), (3900, "1h 5m"), (86400, "1d"),
    (90000, "1d 1h"),
])
def test_durations_are_shown_for_people(seconds: int, shown: str) -> None:
    """Durations read as 2m 5s, 1h 5m, 1d 1h."""
    assert format_duration(timedelta(seconds=seconds)) == shown


def test_defaults_match_the_spec() -> None:
    """With no variables set, every default of SPEC §2 holds."""
    settings = load_settings()
    assert settings.tread_url == "https://app.tread.fi" and settings.source == "cached"
    assert settings.poll_interval == timedelta(seconds=15)
    assert settings.stale_limit == timedelta(seconds=45)
    assert settings.rules == Path("rules") and settings.actions == "dry-run"
    assert settings.state == "sqlite:///riskwatch-state.db"
    assert settings.max_actions_per_hour == 10 and settings.http == "127.0.0.1:9464"
    assert settings.watched is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """RISKWATCH_* variables set every field, accounts as a comma list."""
    monkeypatch.setenv("RISKWATCH_ACCOUNTS", "desk-1, desk-2,,")
    monkeypatch.setenv("RISKWATCH_POLL_INTERVAL", "2m")
    monkeypatch.setenv("RISKWATCH_STALE_AFTER", "10m")
    monkeypatch.setenv("RISKWATCH_SOURCE", "LIVE")
    settings = load_settings()
    assert settings.watched == frozenset({"desk-1", "desk-2"})
    assert settings.poll_interval == timedelta(minutes=2)
    assert settings.stale_limit == timedelta(minutes=10) and settings.source == "live"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RISKWATCH_SOURCE", "websocket", "RISKWATCH_SOURCE: Input should be 'cached' or 'live'"),
    ("RISKWATCH_HTTP", "9464", "RISKWATCH_HTTP: expected host:port"),
    ("RISKWATCH_TREAD_URL", "app.tread.fi", "RISKWATCH_TREAD_URL: must start with http"),
    ("RISKWATCH_MAX_ACTIONS_PER_HOUR", "-1", "RISKWATCH_MAX_ACTIONS_PER_HOUR:"),
    ("RISKWATCH_POLL_INTERVAL", "0", "RISKWATCH_POLL_INTERVAL: must be at least 0.1s"),
    ("RISKWATCH_TREAD_URL", "http://user:pw@[::1", "RISKWATCH_TREAD_URL: is not a valid URL"),
    ("RISKWATCH_TREAD_URL", "http://h:notaport", "RISKWATCH_TREAD_URL: is not a valid URL"),
    ("RISKWATCH_TREAD_URL", "http://h/b?token=x", "RISKWATCH_TREAD_URL: is a base URL"),
    ("RISKWATCH_SLACK_WEBHOOK_URL", "", "RISKWATCH_SLACK_WEBHOOK_URL: must start with http"),
    ("RISKWATCH_SLACK_WEBHOOK_URL", "notaurl", "RISKWATCH_SLACK_WEBHOOK_URL: must start"),
    ("RISKWATCH_HEARTBEAT_URL", "https://", "RISKWATCH_HEARTBEAT_URL: has no host"),
    ("RISKWATCH_MAX_RESPONSE_BYTES", "lots", "RISKWATCH_MAX_RESPONSE_BYTES: expected a size"),
    ("RISKWATCH_REQUEST_DEADLINE", "1h", "RISKWATCH_REQUEST_DEADLINE must be shorter than"),
])
def test_bad_values_name_their_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                        message: str) -> None:
    """Each bad value is one SettingsError line starting with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value) and "token=x" not in str(caught.value)


def test_secrets_come_from_the_secrets_directory(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A file named like the variable in the secrets directory supplies the secret."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "RISKWATCH_TREAD_TOKEN").write_text("from-a-file-token")
    monkeypatch.setenv("RISKWATCH_SECRETS_DIR", str(secrets))
    assert load_settings().token() == "from-a-file-token"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    """A .env file in the working folder is read."""
    (tmp_path / ".env").write_text("RISKWATCH_SLACK_CHANNEL=#desk\n")
    assert load_settings().slack_channel == "#desk"


def test_slack_settings_are_checked_together() -> None:
    """Bot token without channel, or both Slack modes at once, are errors."""
    with pytest.raises(SettingsError, match="RISKWATCH_SLACK_CHANNEL is required"):
        load_settings(slack_bot_token="xoxb-1")
    with pytest.raises(SettingsError, match="choose one"):
        load_settings(slack_bot_token="xoxb-1", slack_channel="#r",
                      slack_webhook_url="https://hooks.example/x")


def test_slack_app_token_and_operators_are_read_and_checked() -> None:
    """The app token is a secret that must be xapp-…, needs the bot token, and is masked;
    operators are a comma list of user and group IDs; buttons need all three."""
    base = {"slack_bot_token": "xoxb-1-bot", "slack_channel": "#risk"}
    settings = load_settings(**base, slack_app_token=" xapp-1-A-secret ",
                             slack_operators="U0OPS, W0GRID,,S0DESK,U0OPS")
    assert settings.slack_operators == ("U0OPS", "W0GRID", "S0DESK")
    assert settings.slack_buttons
    assert "xapp-1-A-secret" in settings.secrets()
    assert "xapp" not in repr(settings)
    assert not load_settings(**base, slack_app_token="xapp-1-A").slack_buttons
    assert not load_settings(**base, slack_operators="U0OPS").slack_buttons
    with pytest.raises(SettingsError, match=r"RISKWATCH_SLACK_APP_TOKEN: .*xapp") as bad:
        load_settings(**base, slack_app_token="xoxb-wrong-kind")
    assert "wrong-kind" not in str(bad.value)
    with pytest.raises(SettingsError, match="RISKWATCH_SLACK_OPERATORS"):
        load_settings(**base, slack_operators="U0OPS,@alice")
    with pytest.raises(SettingsError, match="needs RISKWATCH_SLACK_BOT_TOKEN"):
        load_settings(slack_app_token="xapp-1-A")


def test_history_retention_settings_are_durations_with_raw_within_keep() -> None:
    """RISKWATCH_HISTORY_RAW and _KEEP read as durations (48h and 90d unless set); raw
    points kept longer than the history itself, or for less than an hour, are refused."""
    default = load_settings()
    assert (default.history_raw, default.history_keep) == (timedelta(hours=48),
                                                          timedelta(days=90))
    chosen = load_settings(history_raw="2d", history_keep="30d")
    assert (chosen.history_raw, chosen.history_keep) == (timedelta(days=2), timedelta(days=30))
    for wrong in ({"history_raw": "40d", "history_keep": "30d"}, {"history_raw": "10m"}):
        with pytest.raises(SettingsError):
            load_settings(**wrong)


def test_the_status_page_token_is_long_or_absent() -> None:
    """RISKWATCH_HTTP_TOKEN shorter than 16 characters is refused; an empty one (an env
    file's `RISKWATCH_HTTP_TOKEN=`) means no token."""
    with pytest.raises(SettingsError, match="at least 16 characters"):
        load_settings(http_token="short")
    assert load_settings(http_token="").http_token is None
    assert load_settings(http_token="   ").http_token is None
