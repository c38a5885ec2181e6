"""Secrets never leak: not into logs, Slack messages, error messages or command output."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import socket
import sqlite3
import urllib.error
import urllib.request
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from riskwatch.config import logs
from riskwatch.config.settings import load_settings
from riskwatch.core.leverage import Decision
from riskwatch.demo.loopback import Reply, Request
from riskwatch.service import leverage_call
from riskwatch.source.client import TreadClient, make_http_client
from tests.helpers import T0, raw_payload
from tests.integration.command import riskwatch
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import close_daemon, make_daemon, settings_for, wait_until
from tests.integration.test_actions_daemon import LEVER_RULES, _cached
from tests.integration.test_web import get

BOT_TOKEN = "xoxb-test-secret-bot-token"
HTTP_TOKEN = "status-page-secret-token"


def _get_with_token(url: str) -> tuple[int, str]:
    """GET a page past RISKWATCH_HTTP_TOKEN; (status, body) whatever the status."""
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, headers={"Authorization": f"Bearer {HTTP_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
URL_USER = "riskuser"
URL_PASSWORD = "url-pass-7c1e9d"
BASIC = base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()


def assert_no_secret(text: str, secrets: list[str]) -> None:
    """Fail if any secret, or a long piece of one, appears in ``text``."""
    for secret in secrets:
        assert secret not in text
        assert secret[-12:] not in text, "a tail of a secret leaked"


class ProxyTread(FakeTread):
    """The fake Tread.fi behind a proxy that takes the URL's user and password (Basic
    auth) and passes the API token on, so a URL with credentials works either way."""

    def _answer(self, request: Request) -> Reply:
        if request.headers.get("authorization") == f"Basic {BASIC}":
            request = dataclasses.replace(
                request, headers={**request.headers, "authorization": f"Token {TOKEN}"})
        return super()._answer(request)


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@", 1)


def _store_dump(path: Path) -> str:
    """Every row of every table of the SQLite state file, as text."""
    with closing(sqlite3.connect(path)) as db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"alerts", "outbox", "actions"} <= set(tables), tables
        return "\n".join(f"{table}: {row!r}" for table in tables
                         for row in db.execute(f"SELECT * FROM {table}"))  # noqa: S608


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_no_secret_in_any_output(slack: FakeSlack, tmp_path: Path) -> None:
    """With the API token, a Slack token and webhook and a password in the API URL set,
    and the API echoing the token in a 200 answer and in a 401, no secret appears in the
    logs, Slack payloads, /metrics, /readyz, the status pages and their JSON, any row of
    any table of the store, or the output of check, snapshot, alerts, actions, silence
    list and rules validate; the status page's own token is refused nowhere in them."""
    tread = ProxyTread()
    secrets = [TOKEN, BOT_TOKEN, slack.webhook_url, "secretwebhookpath", URL_PASSWORD,
               f"{URL_USER}:{URL_PASSWORD}", HTTP_TOKEN]
    url = _with_credentials(tread.url)
    settings = settings_for(tread, slack, tmp_path, bot=True, rules=LEVER_RULES,
                            http="127.0.0.1:0", actions="enforce", tread_url=url,
                            http_token=HTTP_TOKEN, public_url="https://rw.example")
    assert {URL_PASSWORD, f"{URL_USER}:{URL_PASSWORD}", TOKEN, BOT_TOKEN, HTTP_TOKEN} <= set(
        settings.secrets())
    stream = io.StringIO()
    logs.configure("debug", "json", settings.secrets(), stream=stream)
    tread.set_cached(_cached({"SOL:PERP-USDT": "25"}))
    tread.leverage_replies.append(Reply.json(
        {"message": f"leverage set; token {TOKEN}"}))
    slack.failures.append(Reply.json({"ok": False, "error": "ratelimited"}, 429,
                                     {"Retry-After": "0"}))
    daemon = make_daemon(settings)

    async def scenario() -> tuple[str, str]:
        task = asyncio.create_task(daemon.run())
        try:
            assert await wait_until(lambda: tread.leverage_calls and slack.posts(), seconds=20)
            tread.override = Reply.json({"message": f"bad token {TOKEN}"}, 401)
            assert await wait_until(lambda: "auth-failed" in _posted(slack), seconds=20)
            assert daemon.web is not None
            base = daemon.web.url
            pages = {}
            for path in ("/readyz", "/metrics", "/", "/api/v1/alerts", "/accounts/desk-1",
                         "/api/v1/accounts/desk-1/history"):
                status, pages[path] = await asyncio.to_thread(_get_with_token, base + path)
                assert status in (200, 503), path
            refused = await asyncio.to_thread(get, f"{base}/")
            assert refused[0] == 401 and HTTP_TOKEN not in refused[1]
            return pages["/readyz"], "\n".join(pages.values())
        finally:
            daemon.stop_event.set()
            await task
            await close_daemon(daemon)

    try:
        ready, metrics = asyncio.run(scenario())
    finally:
        structlog.reset_defaults()
        tread.override = None
    outputs = {"log": stream.getvalue(), "slack": json.dumps([c.body for c in slack.attempts]),
               "readyz": ready, "metrics": metrics, "store": _store_dump(tmp_path / "state.db")}
    assert "HTTP 401" in outputs["readyz"] and "riskwatch_polls_total" in outputs["metrics"]
    assert "leverage set; token ***" in outputs["store"]  # the audit log keeps the answer
    assert '"event": "alert firing"' in outputs["log"] and "***" in outputs["log"]

    env = {"RISKWATCH_TREAD_URL": url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_SLACK_WEBHOOK_URL": slack.webhook_url, "RISKWATCH_LOG_LEVEL": "debug",
           "RISKWATCH_STATE": settings.state, "RISKWATCH_RULES": str(settings.rules),
           "RISKWATCH_LOG_FORMAT": "console"}
    commands = [("check",), ("check", "--notify"), ("check", "--format", "json"),
                ("snapshot",), ("snapshot", "--format", "json"), ("alerts",),
                ("alerts", "--format", "json"), ("actions",), ("actions", "--format", "json"),
                ("silence", "list"), ("rules", "validate", str(settings.rules))]
    for command in commands:
        result = riskwatch(*command, env=env)
        assert result.returncode in (0, 1), (command, result.stderr)
        outputs[" ".join(command)] = result.stdout + result.stderr
    assert "leverage set; token ***" in outputs["actions --format json"]
    tread.override = Reply.json({"message": f"nope {TOKEN}"}, 401)
    failing = riskwatch("check", env=env)
    assert failing.returncode == 2
    outputs["failing check"] = failing.stdout + failing.stderr
    tread.close()
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{where} holds a secret"
            assert secret[-12:] not in text, f"{where} holds the tail of a secret"


def _posted(slack: FakeSlack) -> str:
    return "\n".join(str(call.body.get("text")) for call in slack.posts())


def _closed_port_url() -> str:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://{URL_USER}:{URL_PASSWORD}@127.0.0.1:{port}"


def _unreachable_run(slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    """Run the daemon against an unreachable API URL with credentials; every output."""
    tread = FakeTread()
    url = _closed_port_url()
    settings = settings_for(tread, slack, tmp_path, bot=True, http="127.0.0.1:0",
                            tread_url=url)
    tread.close()
    stream = io.StringIO()
    logs.configure("debug", "json", settings.secrets(), stream=stream)
    daemon = make_daemon(settings)

    async def scenario() -> str:
        task = asyncio.create_task(daemon.run())
        try:
            assert await wait_until(lambda: "source-down" in _posted(slack), seconds=20)
            assert daemon.web is not None
            return (await asyncio.to_thread(get, f"{daemon.web.url}/readyz"))[1]
        finally:
            daemon.stop_event.set()
            await task
            await close_daemon(daemon)

    try:
        ready = asyncio.run(scenario())
    finally:
        structlog.reset_defaults()
    check = riskwatch("check", env={"RISKWATCH_TREAD_URL": url, "RISKWATCH_TREAD_TOKEN": TOKEN,
                                    "RISKWATCH_RULES": str(settings.rules)})
    assert check.returncode == 2
    return {"log": stream.getvalue(), "slack": json.dumps([c.body for c in slack.attempts]),
            "readyz": ready, "store": _store_dump(tmp_path / "state.db"),
            "check": check.stdout + check.stderr}


def _assert_no_url_credentials(outputs: dict[str, str]) -> None:
    for where, text in outputs.items():
        assert URL_PASSWORD not in text, f"{where} holds the URL's password"


@pytest.mark.e2e
def test_an_unreachable_api_url_leaks_its_credentials_to_no_log_or_slack(
    slack: FakeSlack, tmp_path: Path,
) -> None:
    """The API URL's user and password, quoted by a 'cannot reach' error, are masked in
    the logs and in the source-down message sent to Slack."""
    outputs = _unreachable_run(slack, tmp_path)
    assert "cannot reach" in outputs["log"] and "source-down" in outputs["slack"]
    _assert_no_url_credentials({key: outputs[key] for key in ("log", "slack")})


@pytest.mark.e2e
def test_an_unreachable_api_url_leaks_its_credentials_nowhere(
    slack: FakeSlack, tmp_path: Path,
) -> None:
    """Nor in /readyz, the store or the output of `riskwatch check`."""
    _assert_no_url_credentials(_unreachable_run(slack, tmp_path))


def test_a_token_echoed_by_set_leverage_is_masked_in_the_decision(tread: FakeTread) -> None:
    """The API's 200 answer to set_leverage enters the audit log with the token masked."""
    tread.leverage_replies.append(Reply.json({"message": f"done for {TOKEN}"}))
    decision = Decision(T0, "lev-cap", "desk-1", "Bybit", "SOL:PERP-USDT", Decimal(25),
                        Decimal(5), "enforce", "call", account_id="acc")

    async def call(**extra: Any) -> Decision:
        client = TreadClient(make_http_client(tread.url, TOKEN))
        try:
            return await leverage_call.execute(decision, client, **extra)
        finally:
            await client.aclose()

    assert asyncio.run(call()).detail == "done for ***"
    tread.leverage_replies.append(Reply.json({"message": f"as {URL_USER}:{URL_PASSWORD}"}, 422))
    failed = asyncio.run(call(secrets=[f"{URL_USER}:{URL_PASSWORD}", TOKEN]))
    assert failed.outcome == "failed" and failed.detail.endswith("(as ***)")


def test_settings_never_print_their_secrets() -> None:
    """repr() of the settings shows masked secrets only."""
    settings = load_settings(tread_token=TOKEN, slack_bot_token=BOT_TOKEN, slack_channel="#r")
    assert_no_secret(repr(settings) + str(settings), [TOKEN, BOT_TOKEN])


def test_command_output_and_errors_hold_no_secret(tread: FakeTread, slack: FakeSlack) -> None:
    """check, snapshot and a failing check print no token and no webhook URL."""
    tread.set_cached(raw_payload("reference_cached.json"))
    env = {"RISKWATCH_TREAD_URL": tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_SLACK_WEBHOOK_URL": slack.webhook_url, "RISKWATCH_LOG_LEVEL": "debug",
           "RISKWATCH_RULES": str(Path(__file__).parent.parent / "fixtures" / "rules" / "good"
                                  / "check.yaml")}
    outputs = []
    for args in (("check", "--notify"), ("snapshot", "--format", "json"), ("check",)):
        result = riskwatch(*args, env=env)
        outputs.append(result.stdout + result.stderr)
    tread.override = Reply.json({"message": "nope"}, 401)
    failing = riskwatch("check", env=env)
    outputs.append(failing.stdout + failing.stderr)
    assert failing.returncode == 2
    assert slack.posts(), "--notify did not post"
    assert_no_secret("\n".join(outputs), [TOKEN, slack.webhook_url, "secretwebhookpath"])
