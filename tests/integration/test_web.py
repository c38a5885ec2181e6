"""/healthz, /readyz and /metrics over real HTTP on loopback (SPEC §7).

The endpoints start with the daemon's loop, so these run it on its real timers (``e2e``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from riskwatch.demo.loopback import Reply
from riskwatch.service.daemon import Daemon
from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import cached_with_ratio, close_daemon, make_daemon, settings_for


def get(url: str) -> tuple[int, str]:
    """GET a URL; (status, body) whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def _with_daemon(daemon: Daemon, probe: Any) -> Any:
    task = asyncio.create_task(daemon.run())
    try:
        return await probe(daemon)
    finally:
        daemon.stop_event.set()
        await asyncio.wait_for(task, timeout=10)
        await close_daemon(daemon)


@pytest.mark.e2e
def test_endpoints_report_health_readiness_and_every_metric(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """Healthy and ready with a working API; /metrics has every series of SPEC §7."""
    settings = settings_for(tread, slack, tmp_path, http="127.0.0.1:0")
    tread.set_cached(cached_with_ratio("0.9"))

    async def probe(daemon: Daemon) -> tuple[Any, ...]:
        await asyncio.sleep(2.2)
        assert daemon.web is not None
        base = daemon.web.url
        return (await asyncio.to_thread(get, f"{base}/healthz"),
                await asyncio.to_thread(get, f"{base}/readyz"),
                await asyncio.to_thread(get, f"{base}/metrics"),
                await asyncio.to_thread(get, f"{base}/nope"))

    health, ready, metrics, missing = asyncio.run(_with_daemon(make_daemon(settings), probe))
    assert health[0] == 200 and json.loads(health[1])["status"] == "ok"
    assert ready[0] == 200 and json.loads(ready[1]) == {"status": "ready", "role": "leader",
                                                        "reasons": []}
    assert missing[0] == 404
    families = {f.name: f for f in text_string_to_metric_families(metrics[1])}
    for name in ("riskwatch_polls", "riskwatch_poll_duration_seconds",
                 "riskwatch_last_successful_poll_timestamp_seconds", "riskwatch_alerts",
                 "riskwatch_notifications", "riskwatch_actions", "riskwatch_rules_loaded",
                 "riskwatch_rule_skips", "riskwatch_outbox_messages",
                 "riskwatch_outbox_oldest_message_age_seconds", "riskwatch_leader",
                 "riskwatch_build_info", "riskwatch_out_of_order_answers", "riskwatch_heartbeats"):
        assert name in families, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("riskwatch_polls_total", (("result", "ok"),))] >= 2
    assert samples[("riskwatch_alerts", (("severity", "critical"), ("state", "firing")))] == 1
    assert samples[("riskwatch_rules_loaded", ())] == 1
    assert samples[("riskwatch_notifications_total", (("result", "sent"),))] == 1
    assert samples[("riskwatch_last_successful_poll_timestamp_seconds", ())] > time.time() - 10


@pytest.mark.e2e
def test_readyz_gives_the_reason_while_the_api_fails_or_slack_refuses(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """503 with a JSON reason while the API answers 500, and while Slack refuses for good."""
    settings = settings_for(tread, slack, tmp_path, http="127.0.0.1:0")
    tread.set_cached(cached_with_ratio("0.9"))
    slack.failures.append(Reply(404, b"no_service"))
    tread.override = Reply.json({"message": "Something went wrong..."}, 500)

    async def probe(daemon: Daemon) -> tuple[Any, ...]:
        await asyncio.sleep(1.5)
        assert daemon.web is not None
        failing = await asyncio.to_thread(get, f"{daemon.web.url}/readyz")
        tread.override = None
        await asyncio.sleep(2)
        refusing = await asyncio.to_thread(get, f"{daemon.web.url}/readyz")
        return failing, refusing

    failing, refusing = asyncio.run(_with_daemon(make_daemon(settings), probe))
    assert failing[0] == 503
    assert "last poll failed: GET /api/sor/get_cached_account_balance: HTTP 500" in failing[1]
    assert refusing[0] == 503
    assert "Slack refuses delivery: webhook: no_service" in json.loads(refusing[1])["reasons"][0]


@pytest.mark.e2e
def test_readyz_reports_invalid_rules(tread: FakeTread, slack: FakeSlack, tmp_path: Path) -> None:
    """A failed reload makes /readyz 503 naming the rule problem."""
    settings = settings_for(tread, slack, tmp_path, http="127.0.0.1:0")
    tread.set_cached(cached_with_ratio("0.1"))

    async def probe(daemon: Daemon) -> tuple[int, str]:
        await asyncio.sleep(1.2)
        (tmp_path / "rules.yaml").write_text("rules: [}")
        await asyncio.sleep(1.5)
        assert daemon.web is not None
        return await asyncio.to_thread(get, f"{daemon.web.url}/readyz")

    status, body = asyncio.run(_with_daemon(make_daemon(settings), probe))
    assert status == 503 and "rules invalid (previous rules in force)" in body


@pytest.mark.e2e
def test_healthz_fails_when_the_loop_stalls(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path,
) -> None:
    """/healthz turns 503 once the loop has not ticked for three poll intervals."""
    settings = settings_for(tread, slack, tmp_path, http="127.0.0.1:0")
    tread.set_cached(cached_with_ratio("0.1"))

    async def probe(daemon: Daemon) -> tuple[Any, ...]:
        await asyncio.sleep(1.2)
        assert daemon.web is not None
        url = f"{daemon.web.url}/healthz"
        fine = await asyncio.to_thread(get, url)
        seen: list[tuple[int, str]] = []

        def probe_later() -> None:
            time.sleep(3.4)
            seen.append(get(url))

        prober = threading.Thread(target=probe_later)
        prober.start()
        time.sleep(4)  # noqa: ASYNC251 - blocking the event loop is the point: no tick can run
        prober.join()
        return fine, seen[0]

    fine, stalled = asyncio.run(_with_daemon(make_daemon(settings), probe))
    assert fine[0] == 200
    assert stalled[0] == 503 and "has not run for" in stalled[1]


def test_endpoints_listen_on_loopback_by_default() -> None:
    """The default RISKWATCH_HTTP is 127.0.0.1, not every interface."""
    from riskwatch.config.settings import load_settings

    assert load_settings().http.startswith("127.0.0.1:")
