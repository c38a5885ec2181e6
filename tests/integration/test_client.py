"""The Tread.fi client over real loopback HTTP: header, parameters, and one error per failure."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

import httpx
import pytest

from riskwatch.core.snapshot import Snapshot
from riskwatch.demo.loopback import Reply
from riskwatch.errors import (
    TreadAuthError,
    TreadBadResponse,
    TreadClientError,
    TreadServerError,
    TreadTimeout,
    TreadUnreachable,
)
from riskwatch.source.client import TreadClient, make_http_client
from tests.helpers import T0, raw_payload
from tests.integration.fakes import TOKEN, FakeTread


def _snapshot(url: str, source: str = "cached", token: str = TOKEN,
              timeout: float = 2.0, accounts: list[str] | None = None) -> Snapshot:
    async def go() -> Snapshot:
        client = TreadClient(make_http_client(url, token, timeout=httpx.Timeout(timeout)))
        try:
            return await client.snapshot(source, T0, accounts)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_cached_endpoint_with_token_header_and_account_filter(tread: FakeTread) -> None:
    """GET the cached endpoint with 'Authorization: Token …' and comma-joined account names."""
    tread.set_cached(raw_payload("reference_cached.json"))
    snapshot = _snapshot(tread.url, accounts=["acc123", "acc456"])
    assert [a.name for a in snapshot.accounts] == ["acc123", "acc456"]
    [request] = tread.requests
    assert request.path == "/api/sor/get_cached_account_balance"
    assert request.headers["authorization"] == f"Token {TOKEN}"
    assert request.query == [("account_names", "acc123,acc456")]


def test_live_endpoint_reads_json_numbers_exactly(tread: FakeTread) -> None:
    """JSON numbers from /api/balances/ arrive as exact Decimals, not floats."""
    tread.live = raw_payload("reference_live.json")
    snapshot = _snapshot(tread.url, source="live")
    assert snapshot.accounts[0].assets[0].maint_margin == Decimal("16.90546734")
    assert tread.requests[0].path == "/api/balances/"


def test_401_is_an_auth_error(tread: FakeTread) -> None:
    """A refused token is TreadAuthError with the API's message, and no token in the text."""
    with pytest.raises(TreadAuthError) as caught:
        _snapshot(tread.url, token="wrong-token-123")
    assert "401" in str(caught.value) and "Invalid credentials" in str(caught.value)
    assert "wrong-token-123" not in str(caught.value)


@pytest.mark.parametrize(("reply", "error", "text"), [
    (Reply.json({"message": "Something went wrong..."}, 500), TreadServerError,
     "HTTP 500 from the API (Something went wrong...)"),
    (Reply.json({"errors": ["account_ids must be an array of strings"]}, 400), TreadClientError,
     "HTTP 400 (account_ids must be an array of strings)"),
    (Reply.json({"error": "nope"}, 403), TreadClientError, "HTTP 403 (nope)"),
    (Reply.json("plain words", 404), TreadClientError, "HTTP 404 (plain words)"),
    (Reply(502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}), TreadServerError,
     "HTTP 502 from the API (an HTML page)"),
    (Reply(200, b"<html>login</html>", {"Content-Type": "text/html"}), TreadBadResponse,
     "an HTML page"),
    (Reply(200, b'{"balances": [', {}), TreadBadResponse, "not JSON"),
])
def test_each_failure_is_a_distinct_clear_error(
    tread: FakeTread, reply: Reply, error: type[Exception], text: str,
) -> None:
    """5xx, 4xx with every error-body shape, HTML and broken JSON each get their own error."""
    tread.override = reply
    with pytest.raises(error) as caught:
        _snapshot(tread.url)
    assert text in str(caught.value)


def test_timeout_is_a_timeout(tread: FakeTread) -> None:
    """No answer within the timeout is TreadTimeout."""
    tread.delay = 1.0
    with pytest.raises(TreadTimeout):
        _snapshot(tread.url, timeout=0.3)


def test_unreachable_api_is_unreachable() -> None:
    """A closed port is TreadUnreachable naming the URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TreadUnreachable) as caught:
        _snapshot(f"http://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_accounts_endpoint_drops_credentials(tread: FakeTread) -> None:
    """GET /api/accounts/ returns accounts without api_key, api_secret or password."""
    tread.accounts = raw_payload("reference_accounts.json")

    async def go() -> list[dict[str, Any]]:
        client = TreadClient(make_http_client(tread.url, TOKEN))
        try:
            return await client.accounts()
        finally:
            await client.aclose()

    [found] = asyncio.run(go())
    assert found["id"] == "4be4cba9-23ea-453a-a235-f2c8e1ba7d51" and found["name"] == "test"
    assert "api_key" not in found and "api_secret" not in found and "password" not in found


def test_one_connection_pool_is_reused(tread: FakeTread) -> None:
    """Several polls through one client reuse a kept-alive connection."""
    tread.set_cached(raw_payload("reference_cached.json"))

    async def go() -> None:
        client = TreadClient(make_http_client(tread.url, TOKEN))
        try:
            for _ in range(3):
                await client.snapshot("cached", T0)
        finally:
            await client.aclose()

    asyncio.run(go())
    assert len(tread.requests) == 3
    assert len({r.peer for r in tread.requests}) == 1  # one kept-alive connection
