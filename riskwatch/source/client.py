"""The Tread.fi HTTP client: one connection pool, the Token header, distinct errors.

Every ``httpx.AsyncClient`` riskwatch makes comes from :func:`make_http_client`, which
takes a ``transport`` so tests can swap the network out.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from riskwatch.core.snapshot import Snapshot
from riskwatch.errors import (
    TreadAuthError,
    TreadBadResponse,
    TreadClientError,
    TreadError,
    TreadServerError,
    TreadTimeout,
    TreadTooLarge,
    TreadUnreachable,
)
from riskwatch.memory import paused_gc
from riskwatch.source.decode import parse_json, read_snapshot

CACHED_PATH = "/api/sor/get_cached_account_balance"
LIVE_PATH = "/api/balances/"
ACCOUNTS_PATH = "/api/accounts/"
SET_LEVERAGE_PATH = "/api/set_leverage/"
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_DEADLINE = 30.0  # seconds one call may take in all, however the bytes trickle in
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
_USERINFO = re.compile(r"//[^/@]*@")


def public_url(url: str) -> str:
    """``url`` without the ``user:password@`` part, for messages."""
    return _USERINFO.sub("//", url)


def make_http_client(
    base_url: str, token: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one factory for API clients: base URL, auth header, timeouts, a bounded pool."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": f"Token {token}", "Accept": "application/json",
                 "User-Agent": "riskwatch"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        transport=transport,
        follow_redirects=False,
    )


def api_message(body: bytes) -> str:
    """The API's own error text from ``{"message"}``, ``{"error"}``, ``{"errors"}`` or a string.

    Never raises: an answer nested too deeply to read or print says so instead.
    """
    try:
        return _api_message(body)
    except RecursionError:
        return "a body nested too deeply to read"


def _api_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        looks_html = text.lstrip().startswith("<")
        return "an HTML page" if looks_html else (text[:200] or "an empty body")
    if isinstance(data, dict):
        for name in ("message", "error", "detail"):
            if isinstance(data.get(name), str):
                return str(data[name])[:200]
        if isinstance(data.get("errors"), list):
            return "; ".join(str(item) for item in data["errors"])[:200]
    if isinstance(data, str):
        return data[:200]
    return json.dumps(data)[:200]


class TreadClient:
    """The calls riskwatch makes to Tread.fi.

    Every call has a total ``deadline`` (seconds), not only per-read timeouts, so an API
    that trickles its answer cannot hold a poll, and a body over ``max_bytes`` is
    refused as it streams in, before it can fill the memory.
    """

    def __init__(self, http: httpx.AsyncClient, *, deadline: float = DEFAULT_DEADLINE,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.http = http
        self.deadline = deadline
        self.max_bytes = max_bytes
        self._where = public_url(str(http.base_url))
        # the token, to mask it should the API ever echo it back in an error message
        self._token = http.headers.get("Authorization", "").removeprefix("Token ").strip()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def _request(self, method: str, path: str, *,
                       params: Sequence[tuple[str, str]] = (), payload: Any = None) -> bytes:
        """One call; the body of a 2xx answer, else the TreadError that says what failed."""
        what = f"{method} {path}"
        try:
            async with asyncio.timeout(self.deadline):
                status, body = await self._exchange(method, path, params, payload, what)
        except TimeoutError:
            raise TreadTimeout(f"{what}: no complete answer within the {self.deadline:g}s "
                               "deadline (RISKWATCH_REQUEST_DEADLINE)") from None
        except httpx.TimeoutException:
            raise TreadTimeout(f"{what}: no answer within the timeout") from None
        except httpx.TransportError as error:
            raise TreadUnreachable(f"{what}: cannot reach {self._where}: "
                                   f"{type(error).__name__}") from None
        self._check(what, status, body)
        return body

    async def _exchange(self, method: str, path: str, params: Sequence[tuple[str, str]],
                        payload: Any, what: str) -> tuple[int, bytes]:
        """Send the request and read the answer's body, refusing one over ``max_bytes``."""
        async with self.http.stream(method, path, params=list(params),
                                    json=payload) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(what, f"is {int(declared):,} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large(what, f"passed {size:,} bytes before its end")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _too_large(self, what: str, size: str) -> TreadTooLarge:
        return TreadTooLarge(f"{what}: the answer {size}, over the cap of "
                             f"{self.max_bytes:,} bytes (RISKWATCH_MAX_RESPONSE_BYTES)")

    async def _get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> bytes:
        return await self._request("GET", path, params=params)

    def _check(self, what: str, status: int, body: bytes) -> None:
        try:
            _raise_for_status(what, status, body)
        except TreadError as error:
            if self._token and self._token in str(error):
                error.args = (str(error).replace(self._token, "***"),)
            raise

    async def cached_balances_raw(self, accounts: Sequence[str] | None = None) -> bytes:
        """The body of the cached-balance endpoint."""
        params = [("account_names", ",".join(accounts))] if accounts else []
        return await self._get(CACHED_PATH, params)

    async def live_balances_raw(self, accounts: Sequence[str] | None = None) -> bytes:
        """The body of ``/api/balances/`` (account names comma-joined in one parameter,
        as the cached endpoint and Tread.fi's own client send them)."""
        params = [("account_names", ",".join(accounts))] if accounts else []
        return await self._get(LIVE_PATH, params)

    async def snapshot(self, source: str, received_at: datetime,
                       accounts: Sequence[str] | None = None) -> Snapshot:
        """Fetch and normalise balances from ``source`` (``cached`` or ``live``)."""
        if source == "live":
            body = await self.live_balances_raw(accounts)
            with paused_gc():
                return read_snapshot(body, "live", received_at, f"GET {LIVE_PATH}")
        body = await self.cached_balances_raw(accounts)
        with paused_gc():
            return read_snapshot(body, "cached", received_at, f"GET {CACHED_PATH}")

    async def set_leverage(self, leverage: str, pair: str, account_ids: list[str]) -> str:
        """``POST /api/set_leverage/``; the API's message on success, a TreadError otherwise."""
        body = {"leverage": leverage, "pair": pair, "account_ids": account_ids}
        answer = await self._request("POST", SET_LEVERAGE_PATH, payload=body)
        try:
            json.loads(answer or b"null")
        except RecursionError:  # it may have worked: the caller must treat it as unknown
            raise TreadBadResponse(f"POST {SET_LEVERAGE_PATH}: the API answered 2xx with a "
                                   "body nested too deeply to read") from None
        except ValueError:
            pass  # a plain-text success message is still a success
        return api_message(answer)

    async def account_ids(self) -> dict[str, str]:
        """Account name -> id, from ``GET /api/accounts/``."""
        return {str(item["name"]): str(item["id"]) for item in await self.accounts()
                if isinstance(item.get("name"), str) and isinstance(item.get("id"), str)}

    async def accounts(self) -> list[dict[str, Any]]:
        """``GET /api/accounts/``: the user's accounts (``api_key`` is dropped on arrival)."""
        data = parse_json(await self._get(ACCOUNTS_PATH), f"GET {ACCOUNTS_PATH}")
        if not isinstance(data, list):
            raise TreadBadResponse(f"GET {ACCOUNTS_PATH}: expected a list of accounts")
        return [
            {key: value for key, value in item.items()
             if key not in {"api_key", "api_secret", "password"}}
            for item in data if isinstance(item, dict)
        ]


def _raise_for_status(what: str, status: int, body: bytes) -> None:
    if status < 300:
        return
    message = api_message(body)
    if status == 401:
        raise TreadAuthError(f"{what}: HTTP 401, the API token was refused ({message})")
    if status >= 500:
        raise TreadServerError(f"{what}: HTTP {status} from the API ({message})")
    if 300 <= status < 400:
        raise TreadClientError(f"{what}: HTTP {status} redirect; check RISKWATCH_TREAD_URL",
                               status)
    raise TreadClientError(f"{what}: HTTP {status} ({message})", status)


__all__ = ["TreadClient", "TreadError", "api_message", "make_http_client", "parse_json"]
