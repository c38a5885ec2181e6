"""The least work any pure-Python evaluator must do for the benchmark's poll, against the floor.

Issue 6 asks for poll work within 3x of ``orjson.loads``. This script measures a lower
bound for that work in pure Python with exact Decimals: each step a poll cannot skip,
written the cheapest way known, and leaving out whatever a cleverer evaluator might
avoid. Whatever lies between this sum and 3x is all that is left for everything else a
poll does (README "Performance" has the figures and what they leave).

Counted (median of several runs, collector paused, N accounts of the benchmark payload):
  1. bytes -> exact rows: riskwatch's own typed decode (msgspec into Decimal rows, with the
     non-finite check that keeps NaN out of comparisons);
  2. per account, the gross notional (|notional| summed) the concentration metric needs;
  3. per row rule without globs, one comparison per row of its scope, 50 accounts at a
     time as riskwatch does; a ratio metric compared by one multiplication
     (``maint >= level * balance``), not a division;
  4. per alert held from the previous poll, one dict lookup by a key built in advance,
     and one comparison of its value.
Left out, so the bound stays below any real evaluator: the rules with globs, the account
rules, the alert keys' construction, severity levels, the margin-balance fallbacks,
unknown values, and every lifecycle step.

    python -m benchmarks.least_work                 # 10,000 accounts
    python -m benchmarks.least_work --accounts 1000
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import orjson

from benchmarks.generate import payload_bytes
from benchmarks.poll_work import RULES, median_seconds, poll_work
from riskwatch.core.evaluate import CHUNK, compile_rules
from riskwatch.core.snapshot import Asset, Snapshot
from riskwatch.rulefiles.loader import load_rules
from riskwatch.source.decode import read_snapshot

RATIOS = {"maint_margin_ratio": ("maint_margin", "margin_balance"),
          "initial_margin_ratio": ("initial_margin", "margin_balance"),
          "roe": ("unrealized_profit", "initial_margin")}
FIELDS = {"leverage": "leverage", "notional": "notional", "unrealized_pnl": "unrealized_profit"}


def _gross_notionals(snapshot: Snapshot) -> list[Decimal]:
    """Step 2: each account's sum of |notional| (unknowns left out: cheaper, still a bound)."""
    zero, notional = Decimal(0), attrgetter("notional")
    # filter(None, ...) drops unknowns and zeros alike: neither changes the sum
    return [sum(map(abs, filter(None, map(notional, account.assets))), zero)
            for account in snapshot.accounts]


Chunk = dict[str, tuple[list[Asset], list[Decimal]]]  # scope -> rows, their accounts' gross


def _chunks(snapshot: Snapshot, totals: list[Decimal]) -> list[Chunk]:
    """The rows of each scope and their accounts' gross notional, 50 accounts at a time."""
    chunks: list[Chunk] = []
    for start in range(0, len(snapshot.accounts), CHUNK):
        chunk: Chunk = {"asset": ([], []), "position": ([], [])}
        for account, total in zip(snapshot.accounts[start:start + CHUNK],
                                  totals[start:start + CHUNK], strict=True):
            positions = [a for a in account.assets if a.asset_type == "position"]
            for scope, assets in (("asset", account.assets), ("position", positions)):
                chunk[scope][0].extend(assets)
                chunk[scope][1].extend([total] * len(assets))
        chunks.append(chunk)
    return chunks


def _scan(rows: list[Asset], gross: list[Decimal], metric: str,
          level: Decimal) -> list[Decimal]:
    """Step 3 for one rule: the rows at or past ``level``, at one operation per row.

    Every comparison is ``>=`` whatever the rule's direction: the cost is the same.
    ``gross`` is each row's account gross notional (laid out in advance, not timed).
    """
    if metric in RATIOS:
        top, bottom = (attrgetter(name) for name in RATIOS[metric])
        return [m for m, b in zip(map(top, rows), map(bottom, rows), strict=True)
                if m is not None and b is not None and m >= level * b]
    notionals = map(attrgetter("notional"), rows)
    if metric == "notional_pct_total":
        return [n for n, total in zip(notionals, gross, strict=True)
                if n is not None and abs(n) >= level * total]
    read = map(attrgetter(FIELDS[metric]), rows)
    return [value for value in read if value is not None and value >= level]


def main() -> None:
    """Time each step and print the bound against ``orjson.loads``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    body = payload_bytes("cached", args.accounts)
    rules = compile_rules(load_rules([RULES]))
    alerts = poll_work(body, "cached", rules, {})
    now = datetime.now(UTC)
    snapshot = read_snapshot(body, "cached", now, "bench")
    plain = [(c.rule.scope, c.rule.metric, c.policy.levels[0][1]) for c in rules
             if c.row_metric is not None and not c.filters_accounts and not c.filters_rows]
    chunks = _chunks(snapshot, _gross_notionals(snapshot))
    keys, values = list(alerts), [alert.value for alert in alerts.values()]

    def scans() -> None:
        for by_scope in chunks:  # a chunk at a time, as riskwatch does: its rows stay in cache
            for scope, metric, level in plain:
                _scan(*by_scope[scope], metric, level)

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("orjson.loads (the floor)", lambda: orjson.loads(body)),
        ("1. bytes -> exact rows", lambda: read_snapshot(body, "cached", now, "bench")),
        ("2. gross notional per account", lambda: _gross_notionals(snapshot)),
        (f"3. {len(plain)} row rules, one operation per row", scans),
        (f"4. {len(keys):,} held alerts, one lookup each",
         lambda: [a.value == v for a, v in zip(map(alerts.get, keys), values, strict=True)
                  if a is not None]),
    ]
    times = [(name, median_seconds(work, args.repeats)) for name, work in steps]
    floor = times[0][1]
    print(f"least pure-Python work for one poll, {args.accounts:,} accounts x 20 assets")
    for name, seconds in times:
        print(f"  {name:<40} {seconds * 1e3:8.1f} ms")
    least = sum(seconds for _, seconds in times[1:])
    print(f"  {'sum of steps 1-4':<40} {least * 1e3:8.1f} ms = {least / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
