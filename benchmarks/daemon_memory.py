"""Resident memory of `riskwatch run` watching N accounts x 20 assets, after K polls.

Serves a generated cached payload on loopback, runs the real daemon against it with the
benchmark rules (alerts to a loopback webhook that accepts everything), and reads the
daemon's VmRSS and VmHWM from /proc after K polls.

    python -m benchmarks.daemon_memory                  # 1,000 accounts, 100 polls
    python -m benchmarks.daemon_memory --accounts 100 --polls 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.generate import payload_bytes
from riskwatch.demo.loopback import LoopbackServer, Reply, Request

RULES = Path(__file__).parent / "rules.yaml"


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(rest.split()[0]) * 1024
    return fields


def main() -> None:
    """Run the daemon for K polls and print its memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    body = payload_bytes("cached", args.accounts)
    polls: list[float] = []

    def api(request: Request) -> Reply:
        if request.path == "/api/sor/get_cached_account_balance":
            polls.append(time.monotonic())
        return Reply(200, body, {"Content-Type": "application/json"})

    server = LoopbackServer(api)
    sink = LoopbackServer(lambda request: Reply(200, b"ok"))
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "RISKWATCH_TREAD_URL": server.url,
               "RISKWATCH_TREAD_TOKEN": "bench", "RISKWATCH_RULES": str(RULES),
               "RISKWATCH_POLL_INTERVAL": "0.1s", "RISKWATCH_STALE_AFTER": "1h",
               "RISKWATCH_STATE": f"sqlite:///{folder}/state.db", "RISKWATCH_HTTP": "off",
               "RISKWATCH_SLACK_WEBHOOK_URL": f"{sink.url}/hook",
               "RISKWATCH_LOG_LEVEL": "error"}
        daemon = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        after_first: dict[str, int] = {}
        while len(polls) < args.polls + 1 and daemon.poll() is None:
            if len(polls) >= 2 and not after_first:
                after_first = _status(daemon.pid)
            time.sleep(0.05)
        final = _status(daemon.pid)
        seconds = time.monotonic() - started
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    server.close()
    sink.close()
    result = {"accounts": args.accounts, "assets": args.accounts * 20, "polls": len(polls) - 1,
              "seconds": round(seconds, 1), "rss_after_first_poll_mb":
              round(after_first.get("VmRSS", 0) / 1e6, 1),
              "rss_mb": round(final["VmRSS"] / 1e6, 1),
              "peak_rss_mb": round(final["VmHWM"] / 1e6, 1)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"riskwatch run, {result['accounts']:,} accounts x 20 assets, "
              f"{result['polls']} polls in {result['seconds']}s: resident "
              f"{result['rss_mb']} MB (after the first poll {result['rss_after_first_poll_mb']} "
              f"MB, peak {result['peak_rss_mb']} MB)")


if __name__ == "__main__":
    main()
