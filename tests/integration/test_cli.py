"""The `riskwatch` command as a user runs it: exit statuses, one-line errors.

Most run the console entry point in this process (tests/integration/command.py); the tests
marked ``e2e`` run real processes: one exit status of each kind (0, 1, 2) and a stop by
SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskwatch.demo.loopback import Reply
from tests.helpers import FIXTURES, closed_port, raw_payload
from tests.integration.command import riskwatch, riskwatch_process
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import cached_with_ratio

CHECK_RULES = FIXTURES / "rules" / "good" / "check.yaml"
QUIET_RULES = FIXTURES / "rules" / "good" / "quiet.yaml"


def _env(tread: FakeTread, rules: Path = CHECK_RULES, **extra: str) -> dict[str, str]:
    return {"RISKWATCH_TREAD_URL": tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
            "RISKWATCH_RULES": str(rules), "RISKWATCH_LOG_FORMAT": "json", **extra}


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.parametrize(("source", "fixture", "expected"), [
    ("cached", "reference_cached.json", [
        {"rule": "concentration", "account": "acc456", "symbol": "ETH:PERP-USDT",
         "severity": "warning", "threshold": "0.9"},
        {"rule": "pos-leverage", "account": "acc456", "symbol": "ETH:PERP-USDT",
         "severity": "warning", "threshold": "8", "value": "10"},
    ]),
    ("live", "reference_live.json", [
        {"rule": "acct-eff-lev", "account": "AccountABC", "symbol": None,
         "severity": "critical", "threshold": "10", "scope": "account"},
        {"rule": "concentration", "account": "AccountABC", "symbol": "ETH:PERP-USDT",
         "severity": "warning", "threshold": "0.9", "value": "0.994565"},
        {"rule": "pos-leverage", "account": "AccountABC", "symbol": "ETH:PERP-USDT",
         "severity": "warning", "threshold": "8", "value": "10.0"},
    ]),
])
def test_check_json_lists_exactly_the_implied_breaches(
    tread: FakeTread, source: str, fixture: str, expected: list[dict[str, object]],
) -> None:
    """check --format json against the reference payloads: the hand-worked breaches, exit 1."""
    tread.set_cached(raw_payload(fixture))
    tread.live = raw_payload(fixture)
    result = riskwatch("check", "--format", "json", env=_env(tread, RISKWATCH_SOURCE=source))
    assert result.returncode == 1, result.stderr
    found = sorted(json.loads(result.stdout), key=lambda b: (b["rule"], b["account"]))
    assert len(found) == len(expected)
    for breach, wanted in zip(found, expected, strict=True):
        assert {key: breach[key] for key in wanted} == wanted
        assert set(breach) >= {"rule", "severity", "scope", "account", "exchange", "symbol",
                               "metric", "value", "threshold"}
        assert isinstance(breach["value"], str)


@pytest.mark.e2e
def test_check_with_no_breach_exits_zero(tread: FakeTread) -> None:
    """Rules nothing breaches: an empty JSON list and exit 0."""
    tread.set_cached(raw_payload("reference_cached.json"))
    result = riskwatch_process("check", "--format", "json", env=_env(tread, rules=QUIET_RULES))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.e2e
def test_check_table_is_readable(tread: FakeTread) -> None:
    """The default table shows rule, account, symbol and values with units."""
    tread.set_cached(raw_payload("reference_cached.json"))
    result = riskwatch_process("check", env=_env(tread))
    assert result.returncode == 1
    assert "pos-leverage" in result.stdout and "10x" in result.stdout and "8x" in result.stdout


def test_malformed_row_is_skipped_reported_and_the_rest_evaluated(tread: FakeTread) -> None:
    """A bad row becomes an account-error breach; the other breaches are still found."""
    data = json.loads(raw_payload("reference_cached.json"))
    data["balances"][1]["assets"][0]["notional"] = {"oops": True}
    tread.set_cached(data)
    result = riskwatch("check", "--format", "json", env=_env(tread))
    assert result.returncode == 1
    rules = sorted(b["rule"] for b in json.loads(result.stdout))
    assert rules == ["account-error", "concentration", "pos-leverage"]
    error = next(b for b in json.loads(result.stdout) if b["rule"] == "account-error")
    assert error["account"] == "acc456" and error["symbol"] == "BTC"
    assert "notional has type dict" in error["detail"]


@pytest.mark.e2e
def test_wrong_token_is_one_line_and_exit_2(tread: FakeTread) -> None:
    """A refused token: one line naming the 401, exit 2, no traceback, no token."""
    result = riskwatch_process("check", env=_env(tread, RISKWATCH_TREAD_TOKEN="wrong-secret-token"))
    assert result.returncode == 2
    _no_traceback(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith("riskwatch:")]
    assert len(lines) == 1 and "HTTP 401" in lines[0]
    assert "wrong-secret-token" not in result.stderr + result.stdout


def test_unreachable_api_is_one_line_and_exit_2() -> None:
    """A closed port: one line naming the URL, exit 2."""
    url = f"http://127.0.0.1:{closed_port()}"
    env = {"RISKWATCH_TREAD_URL": url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_RULES": str(CHECK_RULES)}
    result = riskwatch("snapshot", env=env)
    assert result.returncode == 2
    _no_traceback(result)
    assert f"cannot reach {url}" in result.stderr


def test_missing_token_and_bad_setting_name_the_variable(tread: FakeTread) -> None:
    """A missing token and a bad duration each print one line naming the variable, exit 2."""
    env = _env(tread)
    del env["RISKWATCH_TREAD_TOKEN"]
    missing = riskwatch("check", env=env)
    assert missing.returncode == 2 and "RISKWATCH_TREAD_TOKEN is required" in missing.stderr
    bad = riskwatch("run", env=_env(tread, RISKWATCH_POLL_INTERVAL="soon"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("riskwatch: RISKWATCH_POLL_INTERVAL: invalid duration 'soon': "
                                  "use 30s, 5m, 2h, 1d or a number of seconds")


def test_broken_rule_file_stops_run_with_exit_2_and_location(
    tread: FakeTread, tmp_path: Path,
) -> None:
    """`run` with a broken rule file prints file:line:col and exits 2; validate exits 1."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - name: x\n    scope: account\n    metric: equity\n"
                      "    levels: {warning: 1}\n    wen: below\n")
    run = riskwatch("run", env=_env(tread, rules=broken))
    assert run.returncode == 2
    _no_traceback(run)
    assert run.stderr.strip() == f"{broken}:6:5: unknown key 'wen' (did you mean 'when'?)"
    validate = riskwatch("rules", "validate", str(broken))
    assert validate.returncode == 1
    assert validate.stdout.strip() == f"{broken}:6:5: unknown key 'wen' (did you mean 'when'?)"
    good = riskwatch("rules", "validate", str(CHECK_RULES))
    assert good.returncode == 0 and "4 rule(s) valid" in good.stdout


def test_snapshot_json_is_the_normalised_snapshot(tread: FakeTread) -> None:
    """snapshot --format json prints only JSON, with decimal strings and nulls kept."""
    tread.set_cached(raw_payload("reference_cached.json"))
    result = riskwatch("snapshot", "--format", "json", env=_env(tread))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    eth = data["accounts"][1]["assets"][1]
    assert eth["size"] == "-0.1400000000000000000000" and eth["notional_pct_total"] is None
    assert data["accounts"][1]["equity"] == "267387.34548772"


@pytest.mark.e2e
def test_run_stops_cleanly_on_sigterm_and_alerts_lists_the_state(
    tread: FakeTread, tmp_path: Path,
) -> None:
    """`run` polls, alerts in the terminal, exits 0 on SIGTERM; `alerts` then lists the alert."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: eth-margin\n    scope: position\n"
                     "    metric: maint_margin_ratio\n    levels: {warning: 0.5}\n")
    tread.set_cached(cached_with_ratio("0.7"))
    env = {**os.environ, **_env(tread, rules=rules, RISKWATCH_POLL_INTERVAL="0.5s",
                                RISKWATCH_STATE=f"sqlite:///{tmp_path}/state.db")}
    process = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while len(tread.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert time.monotonic() - started < 5
    assert "FIRING · WARNING" in out
    assert '"event": "riskwatch stopped"' in err
    listed = riskwatch("alerts", "--format", "json",
                       env={"RISKWATCH_STATE": f"sqlite:///{tmp_path}/state.db"})
    [alert] = [a for a in json.loads(listed.stdout) if a["rule"] == "eth-margin"]
    assert alert["state"] == "firing" and alert["symbol"] == "ETH:PERP-USDT"
    assert alert["value"] == "0.7" and alert["since"]


def test_demo_shows_firing_severity_change_and_resolution(slack: FakeSlack) -> None:
    """The demo, with no settings, shows the whole lifecycle, for the liquidation buffer
    and the daily drawdown too; with a webhook it posts as well."""
    result = riskwatch("demo", "--cycles", "12", "--interval", "0.25s",
                       env={"RISKWATCH_SLACK_WEBHOOK_URL": slack.webhook_url}, timeout=90)
    assert result.returncode == 0, result.stderr
    for expected in ("FIRING · WARNING", "FIRING · CRITICAL (escalated from WARNING)",
                     "FIRING · WARNING (de-escalated from CRITICAL)", "RESOLVED (was WARNING)"):
        assert expected in result.stdout, expected
    # the history rules: desk-1's buffer and desk-2's day both cross a level and come back
    lines = result.stdout.splitlines()
    for rule in ("account-liquidation-buffer", "account-daily-drawdown"):
        told = [line for line in lines if line.endswith(rule)]
        assert any(line.split("] ")[1].startswith("FIRING") for line in told), rule
        assert any(line.split("] ")[1].startswith("RESOLVED") for line in told), rule
    assert slack.posts(), "the demo did not post to the configured webhook"


def test_api_outage_in_check_is_exit_2(tread: FakeTread) -> None:
    """A 500 from the API makes check exit 2 with the API's message."""
    tread.override = Reply.json({"message": "Something went wrong..."}, 500)
    result = riskwatch("check", env=_env(tread))
    assert result.returncode == 2
    assert "HTTP 500 from the API (Something went wrong...)" in result.stderr


def test_rules_test_passes_shipped_tests_and_explains_a_failure(tmp_path: Path) -> None:
    """`rules test` passes the shipped tests; a wrong expectation prints expected and got."""
    shipped = Path(__file__).parent.parent.parent / "rules" / "tests" / "default_test.yaml"
    ok = riskwatch("rules", "test", str(shipped))
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.strip().endswith("10 passed, 0 failed")
    (tmp_path / "r.yaml").write_text("rules:\n  - name: lev\n    scope: position\n"
                                     "    metric: leverage\n    levels: {warning: 10}\n")
    wrong = tmp_path / "wrong_test.yaml"
    wrong.write_text(
        "rule_files: [r.yaml]\ntests:\n  - name: expects too much\n    snapshots:\n"
        "      - at: 0s\n        accounts:\n          - name: a\n            assets:\n"
        "              - {symbol: X, leverage: 12}\n    expect:\n      - at: 0s\n"
        "        alerts:\n          - {rule: lev, account: a, symbol: X, severity: critical}\n")
    failed = riskwatch("rules", "test", str(wrong))
    assert failed.returncode == 1
    assert "expected: firing critical lev a X" in failed.stdout
    assert "got:      firing warning lev a X" in failed.stdout
    broken = tmp_path / "broken_test.yaml"
    broken.write_text("rule_files: [r.yaml]\ntests:\n  - name: x\n    snapshot: []\n")
    bad = riskwatch("rules", "test", str(broken))
    assert bad.returncode == 1 and f"{broken}:4:5: unknown key 'snapshot'" in bad.stdout
    _no_traceback(bad)
