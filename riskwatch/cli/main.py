"""The ``riskwatch`` command: parse, call, print, exit status. No logic lives here."""

from __future__ import annotations

import asyncio
import difflib
import getpass
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from riskwatch import __version__
from riskwatch.config import logs
from riskwatch.config.settings import Settings, load_settings
from riskwatch.core import builtin_alerts
from riskwatch.core.durations import parse_duration
from riskwatch.core.evaluate import Breach, breaches
from riskwatch.core.lifecycle import Alert, AlertKey, Notice, NoticeKind, State
from riskwatch.core.rules import BUILTIN_RULES
from riskwatch.core.silences import Silence, silenced
from riskwatch.core.snapshot import Snapshot, only_accounts
from riskwatch.errors import RiskwatchError, RulesError, SettingsError
from riskwatch.notify import render
from riskwatch.rulefiles.loader import load_rules, shipped_rules_dir
from riskwatch.rulefiles.ruletest import run_file
from riskwatch.rulefiles.schema import json_schema
from riskwatch.service.daemon import Daemon, utcnow
from riskwatch.service.wiring import (
    build_router,
    load_compiled_rules,
    open_client,
    open_existing_state,
    open_state,
)
from riskwatch.store import Store

T = TypeVar("T")


def _fail(error: RiskwatchError) -> None:
    for line in str(error).splitlines() or [type(error).__name__]:
        click.echo(f"riskwatch: {line}" if not isinstance(error, RulesError) else line,
                   err=True)
    sys.exit(error.exit_status)


def _guarded(debug: bool, work: Callable[[], T]) -> T:
    """Run ``work``; turn a RiskwatchError into its line(s) and exit status unless --debug."""
    try:
        return work()
    except RiskwatchError as error:
        if debug:
            raise
        _fail(error)
        raise  # pragma: no cover - _fail exits
    except BrokenPipeError:
        # a reader that stopped early (`riskwatch snapshot | head -1`): not an error, and
        # not a breach (exit 1). Python flushes stdout again at exit: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    settings = load_settings(**overrides)
    secrets = settings.secrets()
    ctx.obj["redactor"] = logs.configure(settings.log_level, settings.log_format, secrets)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="riskwatch")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """riskwatch watches Tread.fi accounts and alerts in Slack before a liquidation."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# ---------------------------------------------------------------------------- run / demo

@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: poll, evaluate, alert; stop cleanly on SIGTERM/SIGINT."""
    def work() -> None:
        settings = _settings(ctx)
        rules = _start_rules(settings.rules)
        _run_daemon(settings, rules, terminal=False, cycles=None)

    _guarded(ctx.obj["debug"], work)


def _start_rules(path: Path) -> Any:
    try:
        return load_compiled_rules([path])
    except RulesError as error:
        error.exit_status = 2  # bad rules at start: exit 2, as SPEC §1 says for `run`
        raise


def _run_daemon(settings: Settings, rules: Any, *, terminal: bool, cycles: int | None) -> None:
    store = open_state(settings)
    client = open_client(settings)
    daemon = Daemon(settings, rules, store, client, build_router(settings, terminal=terminal))

    async def main() -> None:
        try:
            await daemon.run(cycles=cycles)
        finally:
            await client.aclose()
            store.close()

    asyncio.run(main())


@cli.command()
@click.option("--cycles", type=click.IntRange(min=1), default=None,
              help="Stop after N polls (default: run until Ctrl-C).")
@click.option("--interval", default="2s", show_default=True, help="Time between polls.")
@click.pass_context
def demo(ctx: click.Context, cycles: int | None, interval: str) -> None:
    """Watch a simulated Tread.fi drift into and out of breaches, alerts in the terminal."""
    from riskwatch.demo import simulation

    def work() -> None:
        _, server = simulation.serve()
        try:
            with tempfile.TemporaryDirectory(prefix="riskwatch-demo-") as folder:
                quiet = {} if _env_set("RISKWATCH_LOG_LEVEL") else {"log_level": "warning"}
                if not _env_set("RISKWATCH_HTTP"):  # a demo must not fail on a busy port
                    quiet["http"] = "off"
                settings = _settings(
                    ctx, tread_url=server.url, tread_token=simulation.DEMO_TOKEN,
                    source="cached", accounts=None, rules=shipped_rules_dir(),
                    state=f"sqlite:///{folder}/demo-state.db", poll_interval=interval,
                    stale_after=None, **quiet,
                )
                click.echo(f"riskwatch demo: simulated Tread.fi at {server.url}, rules from "
                           f"{settings.rules}, a poll every {interval}. Ctrl-C stops.\n")
                _run_daemon(settings, _start_rules(settings.rules), terminal=True,
                            cycles=cycles)
        finally:
            server.close()

    _guarded(ctx.obj["debug"], work)


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


def breach_to_dict(breach: Breach) -> dict[str, Any]:
    """The JSON shape of SPEC §1 (decimal strings for numbers)."""
    data = asdict(breach)
    data["value"] = str(breach.value)
    data["threshold"] = str(breach.threshold)
    if not breach.detail:
        data.pop("detail")
    return data


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--notify", is_flag=True, help="Also send the breaches to Slack (or terminal).")
@click.pass_context
def check(ctx: click.Context, fmt: str, notify: bool) -> None:
    """One poll and one evaluation; exit 1 if anything is breached."""
    def work() -> int:
        settings = _settings(ctx)
        rules = _start_rules(settings.rules)
        snapshot = _poll(settings)
        found = breaches(rules, snapshot, utcnow()) + _missing(settings, snapshot)
        if fmt == "json":
            click.echo(json.dumps([breach_to_dict(b) for b in found], indent=2))
        else:
            _print_table(["RULE", "SEVERITY", "ACCOUNT", "EXCHANGE", "SYMBOL", "VALUE",
                          "THRESHOLD"],
                         [[b.rule, b.severity, b.account, b.exchange, b.symbol or "-",
                           render.format_value(b.metric, b.value) if not b.detail
                           else b.detail, render.format_value(b.metric, b.threshold)
                           if not b.detail else "-"] for b in found])
            click.echo(f"{len(found)} breach(es) in {len({b.account for b in found})} "
                       f"account(s); {len(snapshot.accounts)} account(s) read",
                       err=True)
        if notify and found:
            _notify_breaches(settings, found)
        return 1 if found else 0

    sys.exit(_guarded(ctx.obj["debug"], work))


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
            key=_key(b), state=State.FIRING, severity=b.severity,  # type: ignore[arg-type]
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


def _key(breach: Breach) -> AlertKey:
    return AlertKey(breach.rule, breach.account, breach.symbol or "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, msgspec.Struct):  # snapshot rows
        return msgspec.structs.asdict(value)
    raise TypeError(type(value).__name__)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def snapshot(ctx: click.Context, fmt: str) -> None:
    """One poll, printed as the normalised snapshot (for making test fixtures)."""
    def work() -> None:
        settings = _settings(ctx)
        taken = _poll(settings)
        data = asdict(taken)
        for problem in data["problems"]:
            problem.pop("raw", None)
        if fmt == "json":
            click.echo(json.dumps(data, default=_jsonable, indent=2))
            return
        rows = [[account.name, account.exchange, asset.symbol, asset.asset_type,
                 asset.market_type or "-", _s(asset.size), _s(asset.notional),
                 _s(asset.leverage), _s(asset.maint_margin), _s(asset.margin_balance)]
                for account in taken.accounts for asset in account.assets]
        _print_table(["ACCOUNT", "EXCHANGE", "SYMBOL", "TYPE", "MARKET", "SIZE", "NOTIONAL",
                      "LEVERAGE", "MAINT_MARGIN", "MARGIN_BALANCE"], rows)
        for problem in taken.problems:
            click.echo(f"problem: {render.plain(problem.account)}: "
                       f"{render.plain(problem.message, TABLE_CELL_LIMIT)}", err=True)

    _guarded(ctx.obj["debug"], work)


def _s(value: Decimal | None) -> str:
    return "null" if value is None else str(value)


# ---------------------------------------------------------------------------- alerts

@cli.command("alerts")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def alerts_command(ctx: click.Context, fmt: str) -> None:
    """List alert states from the state store."""
    def work() -> None:
        settings = _settings(ctx)
        store = _existing_store(settings)
        try:
            stored = sorted(store.load_alerts().values(), key=lambda a: tuple(a.key))
            active = store.silences()
        finally:
            store.close()
        now = utcnow()
        muted = {a.key for a in stored if silenced(a.key, active, now)}
        if fmt == "json":
            click.echo(json.dumps([{**alert_to_row(a), "silenced": a.key in muted}
                                   for a in stored], indent=2))
            return
        _print_table(["STATE", "SEVERITY", "RULE", "ACCOUNT", "SYMBOL", "VALUE", "SINCE", ""],
                     [[a.state.value, a.severity, a.key.rule, a.key.account or "-",
                       a.key.symbol or "-", render.format_value(a.metric, a.value),
                       a.since.isoformat(timespec="seconds"),
                       "silenced" if a.key in muted else ""] for a in stored])

    _guarded(ctx.obj["debug"], work)


def _existing_store(settings: Settings) -> Store:
    """The daemon's state store, named on standard error (never created here)."""
    store = open_existing_state(settings)
    click.echo(f"state store: {store.description}", err=True)
    return store


def alert_to_row(alert: Alert) -> dict[str, Any]:
    """An alert in the JSON shape of ``check`` plus ``state`` and ``since``."""
    return {
        "rule": alert.key.rule, "severity": alert.severity, "scope": _scope_of(alert),
        "account": alert.key.account or None, "exchange": alert.exchange or None,
        "symbol": alert.key.symbol or None, "metric": alert.metric,
        "value": None if alert.value is None else str(alert.value),
        "threshold": None if alert.threshold is None else str(alert.threshold),
        "state": alert.state.value, "since": alert.since.isoformat(),
    }


def _scope_of(alert: Alert) -> str:
    """The rule's scope, as stored; guessed from the key for alerts stored without it."""
    if alert.scope:
        return alert.scope
    if not alert.key.account:
        return "source"
    return "account" if not alert.key.symbol else "position"


# ---------------------------------------------------------------------------- actions

@cli.command("actions")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def actions_command(ctx: click.Context, fmt: str) -> None:
    """The audit log of leverage decisions: acted, dry-run, skipped (and why), failed, unknown.

    A call's row is written as ``calling`` before the call and completed with its outcome
    after it; a row still ``calling`` is a call whose outcome was never recorded.
    """
    def work() -> None:
        store = _existing_store(_settings(ctx))
        try:
            logged = store.actions()
        finally:
            store.close()
        if fmt == "json":
            rows = [{"time": d.at.isoformat(), "rule": d.rule, "account": d.account,
                     "exchange": d.exchange, "pair": d.pair,
                     "from_leverage": None if d.from_leverage is None else str(d.from_leverage),
                     "to_leverage": str(d.to_leverage), "mode": d.mode, "outcome": d.outcome,
                     "answer": d.detail} for d in logged]
            click.echo(json.dumps(rows, indent=2))
            return
        _print_table(["TIME", "ACCOUNT", "EXCHANGE", "PAIR", "FROM", "TO", "MODE", "OUTCOME",
                      "ANSWER"],
                     [[d.at.isoformat(timespec="seconds"), d.account, d.exchange, d.pair,
                       _s(d.from_leverage), str(d.to_leverage), d.mode, d.outcome,
                       d.detail[:80]] for d in logged])

    _guarded(ctx.obj["debug"], work)


# ---------------------------------------------------------------------------- silences

@cli.group()
def silence() -> None:
    """Mute notifications (and actions) for matching alerts for a while."""


@silence.command("add")
@click.option("--rule", required=True, help="Rule name (a glob: '*' silences every rule).")
@click.option("--account", default=None, help="Only this account (a glob).")
@click.option("--symbol", default=None, help="Only this symbol (a glob).")
@click.option("--duration", required=True, help="How long: 30m, 2h, 1d.")
@click.option("--reason", required=True, help="Why, for whoever reads `silence list`.")
@click.option("--by", "author", default=None, help="Who adds it (default: your user name).")
@click.pass_context
def silence_add(ctx: click.Context, rule: str, account: str | None, symbol: str | None,
                duration: str, reason: str, author: str | None) -> None:
    """Add a silence; prints its id. The rule must name (or match) a rule in force."""
    def work() -> None:
        length = _silence_length(duration)
        settings = _settings(ctx)
        _check_rule_glob(rule, settings.rules)
        now = utcnow()
        entry = Silence(uuid.uuid4().hex[:8], rule, account, symbol, now, now + length,
                        reason, now, author or getpass.getuser())
        store = _existing_store(settings)
        try:
            store.add_silence(entry)
        finally:
            store.close()
        click.echo(entry.id)

    _guarded(ctx.obj["debug"], work)


def _silence_length(duration: str) -> timedelta:
    """A silence's length: a duration above zero."""
    try:
        length = parse_duration(duration)
    except ValueError as error:
        raise SettingsError(f"--duration: {error}") from None
    if length <= timedelta(0):
        raise SettingsError("--duration: a silence must last longer than 0s")
    return length


def _check_rule_glob(rule: str, rules_path: Path) -> None:
    """Refuse a rule glob that matches no rule in force and no built-in alert (a typo
    would otherwise silence nothing, silently)."""
    names = {compiled.rule.name for compiled in _start_rules(rules_path)} | BUILTIN_RULES
    if not any(fnmatchcase(name, rule) for name in names):
        near = difflib.get_close_matches(rule, sorted(names), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise SettingsError(f"--rule: '{rule}' matches no rule in {rules_path} and no "
                            f"built-in alert{hint}")


@silence.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.pass_context
def silence_list(ctx: click.Context, fmt: str, show_all: bool) -> None:
    """List silences in force (or all with --all)."""
    def work() -> None:
        store = _existing_store(_settings(ctx))
        try:
            now = utcnow()
            found = [s for s in store.silences() if show_all or s.active(now)]
        finally:
            store.close()
        if fmt == "json":
            click.echo(json.dumps([asdict(s) for s in found], default=_jsonable, indent=2))
            return
        _print_table(["ID", "RULE", "ACCOUNT", "SYMBOL", "ENDS", "BY", "REASON"],
                     [[s.id, s.rule, s.account or "*", s.symbol or "*",
                       s.ends_at.isoformat(timespec="seconds"), s.created_by or "-", s.reason]
                      for s in found])

    _guarded(ctx.obj["debug"], work)


@silence.command("remove")
@click.argument("silence_id")
@click.pass_context
def silence_remove(ctx: click.Context, silence_id: str) -> None:
    """Remove a silence by id (exit 1 when there is none)."""
    def work() -> int:
        store = _existing_store(_settings(ctx))
        try:
            removed = store.remove_silence(silence_id)
        finally:
            store.close()
        if not removed:
            click.echo(f"riskwatch: no silence with id {silence_id!r}", err=True)
            return 1
        click.echo(f"removed {silence_id}")
        return 0

    sys.exit(_guarded(ctx.obj["debug"], work))


# ---------------------------------------------------------------------------- rules

@cli.group()
def rules() -> None:
    """Rule files: validate them, test them, print their JSON Schema."""


@rules.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def rules_validate(paths: tuple[Path, ...]) -> None:
    """Check rule files; each problem as file:line:col: message."""
    targets = list(paths) or [Path(os.environ.get("RISKWATCH_RULES", "rules"))]
    missing = [path for path in targets if not path.exists()]
    for path in missing:
        click.echo(f"{path}:1:1: no such file or directory", err=True)
    if missing:
        sys.exit(1)
    try:
        loaded = load_rules(targets)
    except RulesError as error:
        for problem in error.problems:
            click.echo(str(problem))
        click.echo(f"{len(error.problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"{len(loaded)} rule(s) valid")


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_test(files: tuple[Path, ...]) -> None:
    """Run rule unit tests; a failure shows what was expected and what happened."""
    passed = failed = 0
    for file in files:
        try:
            outcomes = run_file(file)
        except RulesError as error:
            for problem in error.problems:
                click.echo(str(problem))
            failed += 1
            continue
        for outcome in outcomes:
            if outcome.failures:
                failed += 1
                click.echo(f"FAIL {outcome.file}: {outcome.name}")
                for failure in outcome.failures:
                    click.echo(f"  {failure}")
            else:
                passed += 1
                click.echo(f"ok   {outcome.file}: {outcome.name}")
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@rules.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rule files (the file shipped in schema/)."""
    click.echo(json.dumps(json_schema(), indent=2))


# ---------------------------------------------------------------------------- helpers

TABLE_CELL_LIMIT = 600  # the detail column holds error texts; names are capped lower upstream


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns of text; every cell one inert, capped line (cells may quote the API)."""
    if not rows:
        click.echo("(none)")
        return
    rows = [[render.plain(str(cell), TABLE_CELL_LIMIT) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                           strict=False)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths,
                                                                            strict=False)))


def main() -> None:
    """Console-script entry point."""
    cli(obj={})
