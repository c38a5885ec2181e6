"""Secrets never leak: not into logs, Slack messages, error messages or command output."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import structlog

from riskwatch import logs
from riskwatch.loopback import Reply
from riskwatch.settings import load_settings
from tests.helpers import raw_payload
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import (
    cached_with_ratio,
    close_daemon,
    make_daemon,
    settings_for,
    wait_until,
)
from tests.integration.test_cli import riskwatch

BOT_TOKEN = "xoxb-test-secret-bot-token"


def assert_no_secret(text: str, secrets: list[str]) -> None:
    """Fail if any secret, or a long piece of one, appears in ``text``."""
    for secret in secrets:
        assert secret not in text
        assert secret[-12:] not in text, "a tail of a secret leaked"


def test_daemon_logs_and_slack_payloads_hold_no_secret(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """A daemon run with failures and alerts writes no token to logs or Slack."""
    settings = settings_for(tread, slack, tmp_path, bot=True)
    secrets = [TOKEN, BOT_TOKEN]
    stream = io.StringIO()
    logs.configure("debug", "json", settings.secrets(), stream=stream)
    tread.set_cached(cached_with_ratio("0.9"))
    slack.failures.append(Reply.json({"ok": False, "error": "ratelimited"}, 429,
                                     {"Retry-After": "0"}))

    async def scenario() -> None:
        daemon = make_daemon(settings)
        task = asyncio.create_task(daemon.run())
        assert await wait_until(lambda: len(slack.posts()) == 1, seconds=5)
        tread.override = Reply.json({"message": f"bad token {TOKEN}"}, 401)
        await asyncio.sleep(1.5)
        daemon.stop_event.set()
        await task
        await close_daemon(daemon)

    try:
        asyncio.run(scenario())
    finally:
        structlog.reset_defaults()
    log_text = stream.getvalue()
    assert '"event": "alert firing"' in log_text and "HTTP 401" in log_text
    assert_no_secret(log_text, secrets)
    payloads = json.dumps([call.body for call in slack.attempts])
    assert "FIRING" in payloads
    assert_no_secret(payloads, secrets)
    assert "***" in log_text  # the API echoed the token back; the log masked it


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
