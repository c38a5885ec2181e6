"""Detection latency: a breach at a loopback Tread.fi -> the Slack message, at 1 s polls.

Runs the real daemon against a fake API and a fake Slack webhook on 127.0.0.1, flips an
account between safe and breached five times (each flip is one message: firing, then
resolved), and prints every latency and the worst.

    python -m benchmarks.latency [--trials 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from riskwatch.demo.loopback import LoopbackServer, Reply, Request

RULE = """rules:
  - {name: margin, scope: position, metric: maint_margin_ratio, levels: {critical: 0.8}}
"""


def _payload(ratio: str) -> bytes:
    maint = str(int(float(ratio) * 1000))
    return json.dumps({"balances": [{
        "exchange_name": "Bybit", "account_name": "desk-1", "user_id": 1,
        "account_id": "a-1", "username": "b", "equity": "5000", "equities": [],
        "transfers": [], "vcefi_enabled": False, "timestamp_millis": int(time.time() * 1000),
        "assets": [{"symbol": "ETH:PERP-USDT", "amount": "1", "margin_balance": "1000",
                    "unrealized_profit": "0", "notional": "3000", "wallet_type": "unified",
                    "asset_type": "position", "initial_margin": "300", "maint_margin": maint,
                    "leverage": "10"}]}], "errors": []}).encode()


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    state: dict[str, Any] = {"ratio": "0.2"}
    arrivals: list[float] = []
    lock = threading.Lock()

    def api(request: Request) -> Reply:
        return Reply(200, _payload(state["ratio"]), {"Content-Type": "application/json"})

    def slack(request: Request) -> Reply:
        with lock:
            arrivals.append(time.monotonic())
        return Reply(200, b"ok")

    api_server, slack_server = LoopbackServer(api), LoopbackServer(slack)
    latencies = []
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules.yaml"
        rules.write_text(RULE)
        env = {**os.environ, "RISKWATCH_TREAD_URL": api_server.url,
               "RISKWATCH_TREAD_TOKEN": "bench", "RISKWATCH_RULES": str(rules),
               "RISKWATCH_POLL_INTERVAL": "1s", "RISKWATCH_HTTP": "off",
               "RISKWATCH_STATE": f"sqlite:///{folder}/state.db",
               "RISKWATCH_SLACK_WEBHOOK_URL": f"{slack_server.url}/hook",
               "RISKWATCH_LOG_LEVEL": "error"}
        daemon = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.5)
        for trial in range(args.trials):
            # change at a random phase of the poll cycle, as a market would
            time.sleep(1.3 + 0.37 * trial)
            before = len(arrivals)
            changed = time.monotonic()
            state["ratio"] = "0.9" if trial % 2 == 0 else "0.2"
            deadline = changed + 10
            while len(arrivals) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            latencies.append(arrivals[before] - changed if len(arrivals) > before else None)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    api_server.close()
    slack_server.close()
    known = [x for x in latencies if x is not None]
    worst = max(known) if len(known) == len(latencies) else None
    if args.json:
        print(json.dumps({"latencies_s": latencies, "worst_s": worst}))
        return
    shown = ", ".join(f"{x:.3f}s" if x is not None else "lost" for x in latencies)
    print(f"breach at the API -> Slack message at 1 s polls: {shown}; worst "
          f"{worst:.3f}s" if worst is not None else f"{shown}; a message never came")


if __name__ == "__main__":
    main()
