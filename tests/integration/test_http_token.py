"""RISKWATCH_HTTP_TOKEN: every page but /healthz needs it, as a bearer token or basic auth."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from riskwatch.service.http import Health, WebServer
from riskwatch.service.telemetry import Telemetry

TOKEN = "s3cret-token-for-the-page"


@pytest.fixture
def server() -> Iterator[str]:
    """A server on a free port of 127.0.0.1, guarded by TOKEN."""
    web = WebServer("127.0.0.1:0", Health(lambda: (True, ""), lambda: []), Telemetry(),
                    token=TOKEN)
    try:
        yield web.url
    finally:
        web.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_healthz_stays_open_and_every_other_page_needs_the_token(server: str) -> None:
    """Probes reach /healthz without it; /readyz, /metrics and unknown paths answer 401."""
    assert httpx.get(f"{server}/healthz").status_code == 200
    for path in ("/readyz", "/metrics", "/", "/api/v1/alerts", "/nowhere"):
        answer = httpx.get(f"{server}{path}")
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert TOKEN not in answer.text


def test_the_token_opens_the_pages_as_bearer_or_basic_auth(server: str) -> None:
    """A bearer token or a basic-auth password (any user name) equal to the token works."""
    for header in (f"Bearer {TOKEN}", _basic("desk", TOKEN), _basic("", TOKEN)):
        answer = httpx.get(f"{server}/readyz", headers={"Authorization": header})
        assert answer.status_code == 200, header
    assert httpx.get(f"{server}/metrics",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("header", [
    "Bearer wrong-token-of-the-same-size", f"Bearer {TOKEN}x", f"Token {TOKEN}",
    _basic(TOKEN, "wrong"), "Basic !!!not-base64", "Basic " + base64.b64encode(b"\xff").decode(),
    "", f"bearer{TOKEN}",
])
def test_anything_but_the_token_is_refused(server: str, header: str) -> None:
    """A wrong token, the token as user name, another scheme or garbage: 401."""
    answer = httpx.get(f"{server}/readyz", headers={"Authorization": header})
    assert answer.status_code == 401
