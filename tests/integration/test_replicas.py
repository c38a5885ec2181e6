"""Two daemons on one PostgreSQL store: one leads, the other takes over within two polls
of the leader's SIGKILL, and nothing is lost or sent twice (SPEC §8)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.fakes import FakeSlack, FakeTread
from tests.integration.scenario import RUN, cached_with_ratio, run_env

INTERVAL = 1.0


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(RUN, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_standby_takes_over_within_two_intervals_and_sends_each_message_once(
    tread: FakeTread, slack: FakeSlack, tmp_path: Path, pg_url: str,
) -> None:
    """Leader killed -9 right after a change: the standby polls within 2 s and delivers the
    change exactly once; the firing sent before the failover is not sent again."""
    tread.set_cached(cached_with_ratio("0.6"))
    env = run_env(tread, slack, tmp_path / "rules.yaml", interval=f"{INTERVAL}s", state=pg_url)
    leader = _start(env)
    standby = None
    try:
        assert _wait(lambda: len(slack.posts()) == 1, 15), "the leader never alerted"
        standby = _start(env)
        time.sleep(3 * INTERVAL)  # the standby only tries for the lead
        polls_before = len(tread.requests)
        time.sleep(2 * INTERVAL)
        assert len(tread.requests) - polls_before <= 3, "two processes were polling"
        tread.set_cached(cached_with_ratio("0.9"))  # changes during the failover
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=5)
        killed = time.monotonic()
        seen = len(tread.requests)
        assert _wait(lambda: len(tread.requests) > seen, 2 * INTERVAL + 0.5)
        took_over = tread.requests[seen].received - killed
        assert _wait(lambda: len(slack.posts()) >= 2, 10)
        time.sleep(3 * INTERVAL)
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)
    texts = [post.body["text"] for post in slack.posts()]
    assert len(texts) == 2, texts
    assert "FIRING · WARNING" in texts[0]
    assert "escalated from WARNING" in texts[1]
    assert took_over <= 2 * INTERVAL, took_over
