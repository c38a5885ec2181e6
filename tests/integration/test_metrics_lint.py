"""/metrics as Prometheus's own linter reads it (`promtool check metrics`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest

from riskwatch.service.telemetry import Telemetry


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is installed by .ci/run (Debian package prometheus)")
def test_metrics_pass_promtool_check_metrics() -> None:
    """Every family riskwatch exposes from the first scrape passes `promtool check metrics`
    (names, help, types, units), before and after samples are recorded."""
    telemetry = Telemetry()
    telemetry.rules_in_force(["eth-margin", "account-maint-margin"])
    texts = [generate_latest(telemetry.registry)]
    assert b'riskwatch_alerts{severity="critical",state="firing"} 0.0' in texts[0]
    telemetry.polls.labels("ok").inc()
    telemetry.poll_duration.observe(0.2)
    telemetry.oldest_waiting.set(12)
    texts.append(generate_latest(telemetry.registry))
    promtool = shutil.which("promtool")
    assert promtool is not None
    for text in texts:
        result = subprocess.run([promtool, "check", "metrics"], input=text,
                                capture_output=True, check=False, timeout=30)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
        assert b"riskwatch_build_info" in text and b"riskwatch_actions_total" in text
