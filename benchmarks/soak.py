"""Soak: thousands of polls at a short interval against fakes that fail at random.

The real daemon (poll, decide, store, deliver) runs against a loopback fake Tread.fi that
answers 500s, HTML, truncated and reset responses, timeouts, `errors[]` entries and an
account that vanishes and returns, and a fake Slack that answers 429 and 5xx. It stops by
itself after N polls and reports resident memory, open file descriptors and asyncio
tasks at the start and the end, with what happened to the alerts.

    python -m benchmarks.soak --polls 20000          # the full soak (several minutes)
    python -m benchmarks.soak --polls 500 --json     # what CI runs (tests/integration/test_soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from riskwatch.config import logs
from riskwatch.config.settings import load_settings
from riskwatch.demo.loopback import Reply
from riskwatch.service.daemon import Daemon
from riskwatch.service.wiring import build_router, load_compiled_rules
from riskwatch.source.client import TreadClient, make_http_client
from riskwatch.store import SqliteStore
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import MARGIN_RULES, cached_with_ratio

FAULTS = ["500", "html", "truncated", "reset", "timeout", "errors", "vanish", "401"]


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def _fault(kind: str, payload: dict[str, Any]) -> tuple[Reply | None, float, Any]:
    """(override reply, delay, payload) for one fault."""
    body = json.dumps(payload).encode()
    if kind == "500":
        return Reply.json({"message": "Something went wrong..."}, 500), 0, payload
    if kind == "html":
        return Reply(200, b"<html>maintenance</html>", {"Content-Type": "text/html"}), 0, payload
    if kind == "truncated":
        return Reply(200, body[: len(body) // 2], {"Content-Type": "application/json"}), 0, payload
    if kind == "reset":
        return Reply(status=0), 0, payload
    if kind == "timeout":
        return None, 0.3, payload
    if kind == "401":
        return Reply.json({"message": "Invalid credentials"}, 401), 0, payload
    if kind == "errors":
        return None, 0, {**payload, "errors": [{"account_name": "desk-2", "message": "boom"}]}
    # vanish: the account is simply not in the answer
    return None, 0, {**payload, "balances": []}


async def soak(polls: int, seed: int = 1, fault_rate: float = 0.3) -> dict[str, Any]:
    """Run the soak; return the figures."""
    rng = random.Random(seed)
    tread, slack = FakeTread(), FakeSlack(fail_rate=0.1)
    folder = tempfile.mkdtemp(prefix="riskwatch-soak-")
    (Path(folder) / "rules.yaml").write_text(MARGIN_RULES)
    settings = load_settings(tread_url=tread.url, tread_token=TOKEN, poll_interval="1s",
                             stale_after="1h", state=f"sqlite:///{folder}/state.db",
                             rules=Path(folder) / "rules.yaml", http="off",
                             slack_webhook_url=slack.webhook_url)
    store = SqliteStore(Path(folder) / "state.db")
    client = TreadClient(make_http_client(tread.url, TOKEN, timeout=httpx.Timeout(0.1)))
    daemon = Daemon(settings, load_compiled_rules([settings.rules]), store, client,
                    build_router(settings))
    stop = asyncio.Event()
    delivery = asyncio.create_task(daemon.deliverer.run(stop))
    ratio = "0.2"
    tread.set_cached(cached_with_ratio(ratio))
    counts = {kind: 0 for kind in ["ok", *FAULTS]}
    for _ in range(20):  # warm up: connection pool, SQLite's WAL files, first alerts
        await daemon.poll_once()
    gc.collect()
    start = {"rss": _rss(), "fds": _fds(), "tasks": len(asyncio.all_tasks())}
    began = time.monotonic()
    for number in range(polls):
        if number % 250 == 0:  # the account moves now and then: alerts fire and resolve
            ratio = rng.choice(["0.2", "0.6", "0.9"])
        payload = cached_with_ratio(ratio)
        kind = rng.choice(FAULTS) if rng.random() < fault_rate else "ok"
        override, delay, served = _fault(kind, payload) if kind != "ok" else (None, 0, payload)
        tread.override, tread.delay = override, delay
        tread.set_cached(served)
        if number % 100 == 0:
            with tread.lock:
                tread.requests.clear()  # the fake's own log would otherwise be the leak we see
        counts[kind] += 1
        await daemon.poll_once()
        await asyncio.sleep(0)
    tread.override, tread.delay = None, 0
    await daemon.poll_once()  # one clean poll, as at the start
    await asyncio.sleep(1.5)  # let the deliverer catch up
    gc.collect()
    end = {"rss": _rss(), "fds": _fds(), "tasks": len(asyncio.all_tasks())}
    stop.set()
    await delivery
    outbox_left = len(store.outbox())
    failed = len(store.outbox("failed"))
    await client.aclose()
    store.close()
    tread.close()
    slack.close()
    gc.collect()
    end["fds_after_close"] = _fds()
    return {
        "polls": polls, "seconds": round(time.monotonic() - began, 1), "faults": counts,
        "start": start, "end": end,
        "rss_growth_mb": round((end["rss"] - start["rss"]) / 1e6, 2),
        "slack_posts": len(slack.posts()), "slack_attempts": len(slack.attempts),
        "outbox_waiting": outbox_left, "outbox_failed": failed,
        "daemon_polls": daemon.polls,
    }


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("error", "json")  # the faults are the point: keep their log lines out
    result = asyncio.run(soak(args.polls, args.seed))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['polls']:,} polls in {result['seconds']}s; faults {result['faults']}")
    print(f"resident memory {result['start']['rss'] / 1e6:.1f} -> {result['end']['rss'] / 1e6:.1f}"
          f" MB (growth {result['rss_growth_mb']} MB); file descriptors "
          f"{result['start']['fds']} -> {result['end']['fds']} "
          f"({result['end']['fds_after_close']} after closing the fakes); asyncio tasks "
          f"{result['start']['tasks']} -> {result['end']['tasks']}")
    print(f"Slack: {result['slack_posts']} messages accepted of {result['slack_attempts']} "
          f"attempts; outbox left waiting {result['outbox_waiting']}, failed "
          f"{result['outbox_failed']}")


if __name__ == "__main__":
    main()
