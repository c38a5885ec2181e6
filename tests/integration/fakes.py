"""Fake Tread.fi and fake Slack servers on 127.0.0.1, scripted by the tests.

Both are real HTTP servers (riskwatch.demo.loopback): timeouts, status codes and headers are
what the clients really meet.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskwatch.demo.loopback import LoopbackServer, Reply, Request

TOKEN = "tread-test-token-5f2b9c"


@dataclass(frozen=True)
class Seen:
    """A request and when it arrived."""

    request: Request
    received: float

    def __getattr__(self, name: str) -> Any:
        return getattr(self.request, name)


class FakeTread:
    """Serves both balance endpoints and /api/accounts/ from payloads the test sets."""

    def __init__(self) -> None:
        self.cached: Any = {"balances": [], "errors": []}
        self.live: Any = {}
        self.accounts: Any = []
        self.override: Reply | None = None  # answer every request with this
        self.leverage_replies: list[Reply] = []  # answers to set_leverage, in order, then 200
        self.leverage_calls: list[Any] = []
        self.delay = 0.0
        self.stamp_now = True  # cached data is "taken" at each request, as the real cache refreshes
        self.stamp_clock: Callable[[], float] = time.time  # the time it is stamped with
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = LoopbackServer(self.handle)
        self.url = self.server.url

    def handle(self, request: Request) -> Reply:
        """Answer like Tread.fi, counting requests in flight."""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._answer(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(Seen(request, time.monotonic()))
            override, delay = self.override, self.delay
            cached, live, accounts = (copy.deepcopy(self.cached), copy.deepcopy(self.live),
                                      copy.deepcopy(self.accounts))
        if delay:
            time.sleep(delay)
        if override is not None:
            return override
        if request.headers.get("authorization") != f"Token {TOKEN}":
            return Reply.json({"message": "Invalid credentials"}, 401)
        routes = {"/api/sor/get_cached_account_balance": cached, "/api/balances/": live,
                  "/api/accounts/": accounts}
        if self.stamp_now and isinstance(cached, dict):
            for balance in cached.get("balances", []):
                if isinstance(balance, dict) and "timestamp_millis" in balance:
                    balance["timestamp_millis"] = int(self.stamp_clock() * 1000)
        if request.path == "/api/set_leverage/" and request.method == "POST":
            with self.lock:
                self.leverage_calls.append(request.json())
                if self.leverage_replies:
                    return self.leverage_replies.pop(0)
            return Reply.json({"message": "Leverage changed successfully."})
        if request.path in routes:
            body = routes[request.path]
            return Reply(200, body if isinstance(body, bytes) else json.dumps(body).encode(),
                         {"Content-Type": "application/json"})
        return Reply.json({"message": "Not found"}, 404)

    def set_cached(self, payload: Any) -> None:
        """Serve ``payload`` from the cached endpoint from now on."""
        with self.lock:
            self.cached = payload

    def close(self) -> None:
        """Stop the server."""
        self.server.close()


@dataclass
class SlackCall:
    """One request Slack received."""

    at: float
    method: str  # chat.postMessage, chat.update or webhook
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeSlack:
    """The Web API (chat.postMessage, chat.update) and an incoming webhook at /webhook."""

    failures: list[Reply] = field(default_factory=list)  # answered, in order, before success
    calls: list[SlackCall] = field(default_factory=list)  # accepted calls only
    attempts: list[SlackCall] = field(default_factory=list)  # every call, refused ones too
    update_error: str | None = None
    delay: float = 0.0  # seconds before answering; the late request is then dropped, as a
    # gateway that timed out never hands it to Slack (a request Slack did accept before the
    # client gave up is re-sent: at least once, see docs/RELIABILITY.md)

    fail_rate: float = 0.0  # chance that a call fails with 429 or 503 (soak)
    clock: Callable[[], float] = time.monotonic  # the time each call is recorded at

    def __post_init__(self) -> None:
        self.random = random.Random(11)
        self.lock = threading.Lock()
        self.counter = 0
        self.server = LoopbackServer(self.handle)
        self.url = self.server.url
        self.api_url = f"{self.url}/api/"
        self.webhook_url = f"{self.url}/webhook/T000/B000/secretwebhookpath"

    def handle(self, request: Request) -> Reply:
        """Record and answer one Slack call."""
        method = "webhook" if request.path.startswith("/webhook") else request.path.rsplit("/")[-1]
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = dict(request.query)
        call = SlackCall(self.clock(), method, body, request.headers)
        if self.delay:
            time.sleep(self.delay)
            with self.lock:
                self.attempts.append(call)
            return Reply(504, b"gateway timeout")
        with self.lock:
            self.attempts.append(call)
            if self.failures:
                return self.failures.pop(0)
            if self.fail_rate and self.random.random() < self.fail_rate:
                return self.random.choice([Reply(429, b"rate_limited", {"Retry-After": "0"}),
                                           Reply(503, b"unavailable")])
            if method == "chat.update" and self.update_error:
                return Reply.json({"ok": False, "error": self.update_error})
            self.calls.append(call)
            self.counter += 1
            ts = f"1700000000.{self.counter:06d}"
        if method == "webhook":
            return Reply(200, b"ok", {"Content-Type": "text/plain"})
        return Reply.json({"ok": True, "channel": "C0RISK", "ts": body.get("ts") or ts})

    def posts(self) -> list[SlackCall]:
        """Accepted messages (webhook posts and chat.postMessage), oldest first."""
        with self.lock:
            return [c for c in self.calls if c.method in {"webhook", "chat.postMessage"}]

    def close(self) -> None:
        """Stop the server."""
        self.server.close()
