"""Measures the never-blind figures of docs/RELIABILITY.md, each with real processes.

    python -m benchmarks.never_blind

1. Seconds from the API starting to trickle its answer (one byte every 50 ms) to the
   ``source-down`` message reaching a fake Slack, for `riskwatch run` with a 1 s poll,
   STALE_AFTER 3 s and a 1 s deadline.
2. Peak resident memory of `riskwatch check` when the API streams a 600 MB answer
   without a Content-Length (chunked), with the default size cap, against the same
   command on a small answer.
3. Log lines written at the default level over 20 polls of a healthy API.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from riskwatch.demo.loopback import Reply
from tests.integration.fakes import TOKEN, FakeSlack, FakeTread
from tests.integration.scenario import cached_with_ratio, run_env

RULES = Path(__file__).resolve().parents[1] / "rules"


def time_to_source_down() -> float:
    """Seconds from a trickling API to source-down in Slack."""
    tread, slack = FakeTread(), FakeSlack()
    tread.set_cached(cached_with_ratio("0.1"))
    with tempfile.TemporaryDirectory() as folder:
        env = {**run_env(tread, slack, Path(folder) / "rules.yaml", interval="1s"),
               "RISKWATCH_STALE_AFTER": "3s", "RISKWATCH_REQUEST_DEADLINE": "1s"}
        process = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            tread.override = Reply(200, json.dumps(cached_with_ratio("0.1")).encode(),
                                   {"Content-Type": "application/json"}, trickle=0.05)
            start = time.monotonic()
            while not any("source-down" in p.body["text"] for p in slack.posts()):
                if time.monotonic() - start > 30:
                    return float("inf")
                time.sleep(0.02)
            return time.monotonic() - start
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            tread.close()
            slack.close()


def _chunked_server(total: int) -> tuple[socket.socket, str]:
    """A server that streams ``total`` bytes of JSON-ish text, chunked, made on the fly."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                sent = 0
                try:
                    while sent < total:
                        connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent += len(chunk)
                    connection.sendall(b"0\r\n\r\n")
                except OSError:
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def _check_peak(url: str) -> tuple[int, float, str]:
    """Exit status, peak resident MB and the last line of `riskwatch check` against ``url``."""
    env = {**os.environ, "RISKWATCH_TREAD_URL": url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_RULES": str(RULES), "RISKWATCH_REQUEST_DEADLINE": "60s",
           "RISKWATCH_STALE_AFTER": "5m"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-m", "riskwatch", "check"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines() or [""]
    return result.returncode, max(peak, before) / 1024, lines[-1][:160]


def oversize_memory() -> dict[str, Any]:
    """Peak memory of `check` on a small answer, then on a 600 MB streamed one."""
    tread = FakeTread()
    tread.set_cached(cached_with_ratio("0.1"))
    small = _check_peak(tread.url)
    tread.close()
    listener, url = _chunked_server(600 * 1024 * 1024)
    try:
        huge = _check_peak(url)
    finally:
        listener.close()
    return {"small_answer_peak_mb": round(small[1], 1),
            "oversize_exit": huge[0], "oversize_peak_mb": round(huge[1], 1),
            "oversize_message": huge[2]}


def log_lines_per_poll(polls: int = 20) -> float:
    """Lines written at the default log level per poll of a healthy API."""
    tread, slack = FakeTread(), FakeSlack()
    tread.set_cached(cached_with_ratio("0.1"))
    with tempfile.TemporaryDirectory() as folder:
        env = {**run_env(tread, slack, Path(folder) / "rules.yaml", interval="0.2s"),
               "RISKWATCH_LOG_FORMAT": "json"}
        process = subprocess.Popen([sys.executable, "-m", "riskwatch", "run"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0 + polls * 0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    tread.close()
    slack.close()
    lines = [line for line in err.splitlines() if line.startswith("{")]
    start_stop = 3  # "riskwatch running", "leading", "riskwatch stopped"
    return max(len(lines) - start_stop, 0) / polls


def main() -> None:
    """Print the three figures as JSON."""
    figures = {"seconds_to_source_down": round(time_to_source_down(), 2),
               **oversize_memory(), "log_lines_per_poll": log_lines_per_poll()}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
