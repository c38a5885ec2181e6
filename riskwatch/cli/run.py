"""The commands that poll: ``run`` and ``demo`` (the daemon), ``check`` and ``snapshot`` (once)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from decimal import Decimal

import click

from riskwatch.cli import common
from riskwatch.cli.output import (
    TABLE_CELL_LIMIT,
    breach_json,
    number_text,
    print_json,
    print_table,
    snapshot_json,
)
from riskwatch.config.settings import Settings
from riskwatch.core import builtin_alerts
from riskwatch.core.evaluate import Breach, CompiledRule, breaches
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.snapshot import Snapshot, only_accounts
from riskwatch.errors import SettingsError
from riskwatch.notify import render
from riskwatch.rulefiles.loader import shipped_rules_dir
from riskwatch.service.daemon import Daemon, utcnow
from riskwatch.service.wiring import build_router, open_client, open_state

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")

# ---------------------------------------------------------------------------- run / demo


@click.command()
def run() -> None:
    """Run the daemon: poll, evaluate, alert; stop cleanly on SIGTERM/SIGINT."""
    settings = common.settings()
    _run_daemon(settings, common.start_rules(settings.rules), terminal=False, cycles=None)


def _run_daemon(settings: Settings, rules: list[CompiledRule], *, terminal: bool,
                cycles: int | None) -> None:
    with open_state(settings) as store:
        client = open_client(settings)
        daemon = Daemon(settings, rules, store, client,
                        build_router(settings, terminal=terminal))

        async def main() -> None:
            try:
                await daemon.run(cycles=cycles)
            finally:
                await client.aclose()

        asyncio.run(main())


@click.command()
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="Stop after N polls (default: run until Ctrl-C).")
@click.option("--interval", default="2s", show_default=True, help="Time between polls.")
@click.option("--http", "address", default=None, metavar="HOST:PORT",
              help="Serve the status page and the endpoints here (e.g. 127.0.0.1:9464).")
def demo(cycles: int | None, interval: str, address: str | None) -> None:
    """Watch a simulated Tread.fi drift into and out of breaches, alerts in the terminal."""
    from riskwatch.demo import simulation

    _, server = simulation.serve()
    try:
        with tempfile.TemporaryDirectory(prefix="riskwatch-demo-") as folder:
            quiet = {} if _env_set("RISKWATCH_LOG_LEVEL") else {"log_level": "warning"}
            if address is not None:
                quiet["http"] = address
            elif not _env_set("RISKWATCH_HTTP"):  # a demo must not fail on a busy port
                quiet["http"] = "off"
            settings = common.settings(
                tread_url=server.url, tread_token=simulation.DEMO_TOKEN, source="cached",
                accounts=None, rules=shipped_rules_dir(),
                state=f"sqlite:///{folder}/demo-state.db", poll_interval=interval,
                stale_after=None, **quiet,
            )
            with open_state(settings) as store:  # the accounts' day so far
                simulation.seed_history(store, utcnow())
            click.echo(f"riskwatch demo: simulated Tread.fi at {server.url}, rules from "
                       f"{settings.rules}, a poll every {interval}. Ctrl-C stops.")
            if settings.http != "off":
                click.echo(f"status page: http://{settings.http}/")
            click.echo("")
            _run_daemon(settings, common.start_rules(settings.rules), terminal=True,
                        cycles=cycles)
    finally:
        server.close()


def _env_set(name: str) -> bool:
    return bool(os.environ.get(name))


# ---------------------------------------------------------------------------- check / snapshot


def _poll(settings: Settings) -> Snapshot:
    client = open_client(settings)

    async def fetch() -> Snapshot:
        try:
            watched = settings.watched
            return await client.snapshot(settings.source, utcnow(),
                                         sorted(watched) if watched else None)
        finally:
            await client.aclose()

    return only_accounts(asyncio.run(fetch()), settings.watched)


@click.command()
@FORMAT
@click.option("--notify", is_flag=True, help="Also send the breaches to Slack (or terminal).")
def check(fmt: str, notify: bool) -> int:
    """One poll and one evaluation; exit 1 if anything is breached."""
    settings = common.settings()
    rules = common.start_rules(settings.rules)
    snapshot = _poll(settings)
    found = breaches(rules, snapshot, utcnow()) + _missing(settings, snapshot)
    if fmt == "json":
        print_json([breach_json(breach) for breach in found])
    else:
        print_table(["RULE", "SEVERITY", "ACCOUNT", "EXCHANGE", "SYMBOL", "VALUE", "THRESHOLD"],
                    [_breach_cells(breach) for breach in found])
        click.echo(f"{len(found)} breach(es) in {len({b.account for b in found})} "
                   f"account(s); {len(snapshot.accounts)} account(s) read", err=True)
    if notify and found:
        _notify_breaches(settings, found)
    return 1 if found else 0


def _breach_cells(breach: Breach) -> list[str]:
    """A table row: a built-in alert's detail stands in for its value and threshold."""
    b = breach
    if b.detail:
        return [b.rule, b.severity, b.account, b.exchange, b.symbol or "-", b.detail, "-"]
    return [b.rule, b.severity, b.account, b.exchange, b.symbol or "-",
            render.format_value(b.metric, b.value), render.format_value(b.metric, b.threshold)]


def _missing(settings: Settings, snapshot: Snapshot) -> list[Breach]:
    """``account-missing`` for each watched account the answer did not name."""
    watched = settings.watched or frozenset()
    answered = builtin_alerts.answered_accounts(snapshot)
    return [Breach("account-missing", "critical", "account", name, "", None, "account_missing",
                   Decimal(1), Decimal(1), "not in the API's answer")
            for name in sorted(watched - answered)]


def _notify_breaches(settings: Settings, found: Sequence[Breach]) -> None:
    now = utcnow()
    notices = [
        Notice(NoticeKind.FIRING, Alert(
            key=AlertKey(b.rule, b.account, b.symbol or ""), state=State.FIRING,
            severity=b.severity,  # type: ignore[arg-type]
            exchange=b.exchange, metric=b.metric, value=b.value, threshold=b.threshold,
            since=now, detail=b.detail))
        for b in found
    ]
    router = build_router(settings)
    for destination in router.default:
        sink = router.sink(destination)
        body = (render.slack_message(notices, now) if sink.markup == "slack"
                else render.terminal_message(notices, now))
        result = asyncio.run(sink.post(body))
        if not result.ok:
            raise SettingsError(f"could not notify {destination}: {result.error}")


@click.command()
@FORMAT
def snapshot(fmt: str) -> None:
    """One poll, printed as the normalised snapshot (for making test fixtures)."""
    taken = _poll(common.settings())
    if fmt == "json":
        print_json(snapshot_json(taken))
        return
    print_table(["ACCOUNT", "EXCHANGE", "SYMBOL", "TYPE", "MARKET", "SIZE", "NOTIONAL",
                 "LEVERAGE", "MAINT_MARGIN", "MARGIN_BALANCE"],
                [[account.name, account.exchange, asset.symbol, asset.asset_type,
                  asset.market_type or "-", number_text(asset.size),
                  number_text(asset.notional), number_text(asset.leverage),
                  number_text(asset.maint_margin), number_text(asset.margin_balance)]
                 for account in taken.accounts for asset in account.assets])
    for problem in taken.problems:
        click.echo(f"problem: {render.plain(problem.account)}: "
                   f"{render.plain(problem.message, TABLE_CELL_LIMIT)}", err=True)
