"""SPEC §9: one poll's work without the network, against the floor of ``orjson.loads``.

For N accounts x 20 assets and the 25 rules of benchmarks/rules.yaml, it measures (median
of several runs, one core): the poll's work — response bytes -> snapshot -> every rule ->
alert-state update — and ``orjson.loads`` on the same bytes; their ratio; and, with
tracemalloc, the peak memory of the poll's work against the memory of the parsed response.

    python -m benchmarks.poll_work                 # the table for N = 100, 1,000, 10,000
    python -m benchmarks.poll_work --json          # the same as JSON
    python -m benchmarks.poll_work --sizes 100 --shape live
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.generate import payload_bytes
from riskwatch.core.evaluate import CompiledRule, compile_rules, decide
from riskwatch.core.lifecycle import Alert, AlertKey
from riskwatch.memory import paused_gc
from riskwatch.rulefiles.loader import load_rules
from riskwatch.source.decode import read_snapshot

RULES = Path(__file__).parent / "rules.yaml"


def poll_work(body: bytes, shape: str, rules: list[CompiledRule],
              alerts: dict[AlertKey, Alert]) -> dict[AlertKey, Alert]:
    """Bytes -> snapshot -> decisions -> the next alert states (what the daemon does,
    with the collector paused the same way)."""
    now = datetime.now(UTC)
    with paused_gc():
        snapshot = read_snapshot(body, "live" if shape == "live" else "cached", now, "bench")
        decisions = decide(rules, snapshot, alerts, now)
    updated = dict(alerts)
    for key in decisions.dropped:
        updated.pop(key, None)
    updated.update(decisions.changed)
    return updated


def median_seconds(work: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``work``, with the collector paused for the floor and the poll
    alike: left running, it walks the alerts held from earlier polls during
    ``orjson.loads`` and flatters the ratio (460 ms instead of 240 ms at 10,000 accounts)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        with paused_gc():
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_bytes(work: Callable[[], Any]) -> tuple[int, int]:
    """(memory held by the result, peak while computing it), by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    result = work()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return held, peak


def measure(accounts: int, shape: str, repeats: int) -> dict[str, Any]:
    """Every figure for one size."""
    body = payload_bytes(shape, accounts)
    rules = compile_rules(load_rules([RULES]))
    alerts = poll_work(body, shape, rules, {})  # steady state: the alerts of an earlier poll
    floor = median_seconds(lambda: orjson.loads(body), repeats)
    work = median_seconds(lambda: poll_work(body, shape, rules, alerts), repeats)
    parsed, _ = peak_bytes(lambda: orjson.loads(body))
    _, peak = peak_bytes(lambda: poll_work(body, shape, rules, alerts))
    return {
        "accounts": accounts, "assets": accounts * 20, "rules": len(rules),
        "bytes": len(body), "alerts": len(alerts), "orjson_s": floor, "poll_s": work,
        "ratio": work / floor, "parsed_bytes": parsed, "peak_bytes": peak,
        "memory_ratio": peak / parsed,
    }


def main() -> None:
    """Print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--shape", choices=["cached", "live"], default="cached")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(n, args.shape, args.repeats if n < 10000 else max(3, args.repeats // 2))
            for n in args.sizes]
    growth, floor_growth = _growth(rows, "poll_s"), _growth(rows, "orjson_s")
    if args.json:
        print(json.dumps({"machine": _machine(), "shape": args.shape, "rows": rows,
                          "growth_10k_over_1k": growth,
                          "orjson_growth_10k_over_1k": floor_growth}, indent=2))
        return
    print(f"riskwatch poll work vs orjson.loads — {args.shape} payload, 20 assets per account, "
          f"25 rules — {_machine()}")
    print(f"{'accounts':>9} {'MB':>7} {'orjson ms':>10} {'poll ms':>9} {'ratio':>6} "
          f"{'parsed MB':>10} {'peak MB':>8} {'mem ratio':>9}")
    for row in rows:
        print(f"{row['accounts']:>9,} {row['bytes'] / 1e6:>7.1f} {row['orjson_s'] * 1e3:>10.1f} "
              f"{row['poll_s'] * 1e3:>9.1f} {row['ratio']:>6.1f} "
              f"{row['parsed_bytes'] / 1e6:>10.1f} {row['peak_bytes'] / 1e6:>8.1f} "
              f"{row['memory_ratio']:>9.2f}")
    if growth is not None and floor_growth is not None:
        print(f"time at 10,000 / time at 1,000 accounts: {growth:.2f} "
              f"(orjson.loads alone: {floor_growth:.2f})")


def _growth(rows: list[dict[str, Any]], figure: str) -> float | None:
    """``figure`` at 10,000 accounts over 1,000 (linear growth is 10), when both were run.

    The floor's own growth is printed beside the poll's: on some machines parsing alone
    grows faster than linearly (10.9 to 11.7 on the machine of README "Performance"),
    and the poll can hardly grow slower than its own parse.
    """
    by_size = {row["accounts"]: row for row in rows}
    if 10000 not in by_size or 1000 not in by_size:
        return None
    return float(by_size[10000][figure] / by_size[1000][figure])


def _machine() -> str:
    import os

    return (f"{platform.python_implementation()} {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
