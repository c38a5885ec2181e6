"""The commands that read or edit the daemon's state store: alerts, actions, silences.

They never create a store (see :func:`riskwatch.service.wiring.open_existing_state`) and
name the one they use on standard error.
"""

from __future__ import annotations

import difflib
import getpass
import uuid
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import click

from riskwatch.cli import common
from riskwatch.cli.output import action_row, alert_row, number_text, print_json, print_table
from riskwatch.core.durations import parse_duration
from riskwatch.core.rules import BUILTIN_RULES
from riskwatch.core.silences import Silence, silenced
from riskwatch.errors import SettingsError
from riskwatch.notify import render
from riskwatch.service.daemon import utcnow

FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")


@click.command()
@FORMAT
def alerts(fmt: str) -> None:
    """List alert states from the state store."""
    with common.existing_store(common.settings()) as store:
        stored = sorted(store.load_alerts().values(), key=lambda a: tuple(a.key))
        active = store.silences()
    now = utcnow()
    muted = {a.key for a in stored if silenced(a.key, active, now)}
    if fmt == "json":
        print_json([alert_row(a, a.key in muted) for a in stored])
        return
    print_table(["STATE", "SEVERITY", "RULE", "ACCOUNT", "SYMBOL", "VALUE", "SINCE", ""],
                [[a.state.value, a.severity, a.key.rule, a.key.account or "-",
                  a.key.symbol or "-", render.format_value(a.metric, a.value),
                  a.since.isoformat(timespec="seconds"),
                  "silenced" if a.key in muted else ""] for a in stored])


@click.command()
@FORMAT
def actions(fmt: str) -> None:
    """The audit log of leverage decisions: acted, dry-run, skipped (and why), failed, unknown.

    A call's row is written as ``calling`` before the call and completed with its outcome
    after it; a row still ``calling`` is a call whose outcome was never recorded.
    """
    with common.existing_store(common.settings()) as store:
        logged = store.actions()
    if fmt == "json":
        print_json([action_row(d) for d in logged])
        return
    print_table(["TIME", "ACCOUNT", "EXCHANGE", "PAIR", "FROM", "TO", "MODE", "OUTCOME",
                 "ANSWER"],
                [[d.at.isoformat(timespec="seconds"), d.account, d.exchange, d.pair,
                  number_text(d.from_leverage), str(d.to_leverage), d.mode, d.outcome,
                  d.detail[:80]] for d in logged])


@click.group()
def silence() -> None:
    """Mute notifications (and actions) for matching alerts for a while."""


@silence.command("add")
@click.option("--rule", required=True, help="Rule name (a glob: '*' silences every rule).")
@click.option("--account", default=None, help="Only this account (a glob).")
@click.option("--symbol", default=None, help="Only this symbol (a glob).")
@click.option("--duration", required=True, help="How long: 30m, 2h, 1d.")
@click.option("--reason", required=True, help="Why, for whoever reads `silence list`.")
@click.option("--by", "author", default=None, help="Who adds it (default: your user name).")
def silence_add(rule: str, account: str | None, symbol: str | None, duration: str,
                reason: str, author: str | None) -> None:
    """Add a silence; prints its id. The rule must name (or match) a rule in force."""
    length = _silence_length(duration)
    settings = common.settings()
    _check_rule_glob(rule, settings.rules)
    now = utcnow()
    entry = Silence(uuid.uuid4().hex[:8], rule, account, symbol, now, now + length,
                    reason, now, author or getpass.getuser())
    with common.existing_store(settings) as store:
        store.add_silence(entry)
    click.echo(entry.id)


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
    names = {compiled.rule.name for compiled in common.start_rules(rules_path)} | BUILTIN_RULES
    if not any(fnmatchcase(name, rule) for name in names):
        near = difflib.get_close_matches(rule, sorted(names), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise SettingsError(f"--rule: '{rule}' matches no rule in {rules_path} and no "
                            f"built-in alert{hint}")


@silence.command("list")
@FORMAT
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
def silence_list(fmt: str, show_all: bool) -> None:
    """List silences in force (or all with --all)."""
    with common.existing_store(common.settings()) as store:
        now = utcnow()
        found = [s for s in store.silences() if show_all or s.active(now)]
    if fmt == "json":
        print_json(found)
        return
    print_table(["ID", "RULE", "ACCOUNT", "SYMBOL", "ENDS", "BY", "REASON"],
                [[s.id, s.rule, s.account or "*", s.symbol or "*",
                  s.ends_at.isoformat(timespec="seconds"), s.created_by or "-", s.reason]
                 for s in found])


@silence.command("remove")
@click.argument("silence_id")
def silence_remove(silence_id: str) -> int:
    """Remove a silence by id (exit 1 when there is none).

    A silence still in force ends now (the threads of its alerts are told, and `silence
    list --all` shows it ended); one already over is deleted.
    """
    now = utcnow()
    with common.existing_store(common.settings()) as store:
        was = next((s for s in store.silences() if s.id == silence_id), None)
        removed = store.remove_silence(silence_id, now, getpass.getuser())
    if not removed or was is None:
        click.echo(f"riskwatch: no silence with id {silence_id!r}", err=True)
        return 1
    if was.ends_at > now:
        click.echo(f"ended {silence_id} now (kept: `silence list --all` shows it)")
    else:
        click.echo(f"removed {silence_id} (it had already ended; deleted from the record)")
    return 0
