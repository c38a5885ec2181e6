"""What several commands do first: read settings, load the rules, open the daemon's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from riskwatch.config import logs
from riskwatch.config.settings import Settings, load_settings
from riskwatch.core.evaluate import CompiledRule
from riskwatch.service.wiring import load_compiled_rules, open_existing_state
from riskwatch.store import Store


def settings(**overrides: Any) -> Settings:
    """The RISKWATCH_* settings (SettingsError names a bad one), with logging set up from them."""
    loaded = load_settings(**overrides)
    logs.configure(loaded.log_level, loaded.log_format, loaded.secrets())
    return loaded


def start_rules(path: Path) -> list[CompiledRule]:
    """The rules a command needs to start; RulesError (exit 2 at the top) when they fail."""
    return load_compiled_rules([path])


def existing_store(loaded: Settings) -> Store:
    """The daemon's state store, named on standard error (never created here)."""
    store = open_existing_state(loaded)
    click.echo(f"state store: {store.description}", err=True)
    return store
