"""Never blind, end to end: `riskwatch run` as a real process, and `riskwatch check`.

The run is marked ``e2e``: it waits on real timers, so such tests are few; the in-process
tests of test_never_blind.py cover each fault class on a fake clock. `check` runs through
its entry point in this process (tests/integration/command.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from riskwatch.demo.loopback import Reply
from tests.integration.command import riskwatch
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import cached_with_ratio, run_env


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _http_address(process: subprocess.Popen[str]) -> str:
    """The address the daemon's endpoints listen on, from its "riskwatch running" log line."""
    assert process.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if '"riskwatch running"' in line:
            return str(json.loads(line)["http"])
    raise AssertionError("the daemon did not start")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_hung_api_is_named_on_time_and_the_log_stays_quiet(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """`riskwatch run` against an API that trickles its answer: source-down reaches Slack
    within STALE_AFTER plus one deadline, /readyz says why, and at the default log level no
    library writes a line per poll and the same failure is logged once."""
    tread.set_cached(cached_with_ratio("0.1"))
    env = {**run_env(tread, slack, tmp_path / "rules.yaml", interval="0.5s"),
           "RISKWATCH_STALE_AFTER": "2s", "RISKWATCH_REQUEST_DEADLINE": "0.5s",
           "RISKWATCH_HTTP": "127.0.0.1:0", "RISKWATCH_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = _http_address(process)
        time.sleep(1.5)
        assert _get(f"{base}/readyz")[0] == 200
        tread.override = Reply(200, json.dumps(cached_with_ratio("0.1")).encode(),
                               {"Content-Type": "application/json"}, trickle=0.05)
        hung_at = time.monotonic()
        while time.monotonic() - hung_at < 10:
            if any("`source-down`" in post.body["text"] for post in slack.posts()):
                break
            time.sleep(0.05)
        took = time.monotonic() - hung_at
        status, body = _get(f"{base}/readyz")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert took <= 2 + 0.5 + 1.0, took  # STALE_AFTER + one deadline + one poll interval
    assert status == 503 and any("deadline" in reason for reason in body["reasons"]), body
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert not [line for line in lines if line.get("logger") in {"httpx", "apscheduler"}
                and line.get("level") in {"info", "debug"}]
    assert not [line for line in lines if line["event"] == "poll done"]  # debug only
    assert len([line for line in lines if line["event"] == "poll failed"]) == 1  # then quiet
    assert not [line for line in lines if line.get("logger") == "apscheduler.scheduler"]
    assert not [line for line in lines if line.get("level") == "error"]  # a stop is no error


def test_check_names_a_watched_account_the_api_does_not_return(tread: FakeTread) -> None:
    """`check` with RISKWATCH_ACCOUNTS naming an account the API does not know: exit 1 and
    an account-missing line for it, in the table and in JSON."""
    tread.set_cached(cached_with_ratio("0.1"))
    env = {"RISKWATCH_TREAD_URL": tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_ACCOUNTS": "desk-1,desk-typo",
           "RISKWATCH_RULES": str(Path(__file__).parents[2] / "rules")}
    table = riskwatch("check", env=env)
    as_json = riskwatch("check", "--format", "json", env=env)
    assert table.returncode == 1 and as_json.returncode == 1
    assert "account-missing" in table.stdout and "desk-typo" in table.stdout
    found = json.loads(as_json.stdout)
    assert [b["account"] for b in found if b["rule"] == "account-missing"] == ["desk-typo"]
    assert "Traceback" not in table.stderr + as_json.stderr


def test_command_tables_show_hostile_names_as_one_inert_line(tread: FakeTread) -> None:
    """An account name carrying a newline, a forged RESOLVED line, terminal escapes and a
    right-to-left override: `check` and `snapshot` print it on its own line, escaped."""
    forged = "desk-1\n[14:00:00] RESOLVED (was CRITICAL)  eth\x1b[31m\u202e\x9b" + "x" * 5000
    tread.set_cached(cached_with_ratio("0.9", account=forged))
    env = {"RISKWATCH_TREAD_URL": tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_RULES": str(Path(__file__).parents[2] / "rules")}
    for command in (["check"], ["snapshot"]):
        result = riskwatch(*command, env=env)
        shown = result.stdout + result.stderr
        assert not any(char in shown for char in "\x1b\u202e\x9b"), command
        assert not any(line.startswith("[14:00:00] RESOLVED") for line in shown.splitlines())
        assert "desk-1\\n[14:00:00]" in shown and max(map(len, shown.splitlines())) < 2000
