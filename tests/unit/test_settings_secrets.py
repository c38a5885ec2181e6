"""Credentials written into the API URL count as secrets, so every redactor masks them."""

from __future__ import annotations

import pytest

from riskwatch.config.logs import Redactor
from riskwatch.config.settings import load_settings, url_credentials


def test_the_password_of_the_api_url_is_a_secret() -> None:
    """``https://user:pw@host`` gives ``user:pw`` and ``pw``, longest first, as masked."""
    settings = load_settings(tread_url="https://risk-user:p%40ss-9f3e@api.example",
                             tread_token="tok-123456")
    secrets = settings.secrets()
    for part in ("risk-user:p%40ss-9f3e", "risk-user:p@ss-9f3e", "p%40ss-9f3e", "p@ss-9f3e",
                 "tok-123456"):
        assert part in secrets
    assert secrets.index("risk-user:p@ss-9f3e") < secrets.index("p@ss-9f3e")
    masked = Redactor(secrets).mask(
        "cannot reach https://risk-user:p%40ss-9f3e@api.example/: ConnectError "
        "(as risk-user:p@ss-9f3e)")
    assert masked == "cannot reach https://***@api.example/: ConnectError (as ***)"


@pytest.mark.parametrize(("url", "parts"), [
    ("https://api.example", []),
    ("https://user@api.example", ["user"]),
    ("https://user:pw@api.example:8443/x", ["user:pw", "pw"]),
    ("http://a:b%3Ac@h", ["a:b%3Ac", "a:b:c", "b%3Ac", "b:c"]),
])
def test_url_credentials(url: str, parts: list[str]) -> None:
    """The user-info and the password of a URL, as written and decoded."""
    assert url_credentials(url) == parts


def test_a_slack_api_url_with_credentials_is_masked_too() -> None:
    """A proxy URL for Slack's Web API may carry credentials as well."""
    settings = load_settings(slack_api_url="https://proxy:hunter22@proxy.example/api/")
    assert "proxy:hunter22" in settings.secrets() and "hunter22" in settings.secrets()
