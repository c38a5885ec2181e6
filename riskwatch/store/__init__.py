"""The state store: alerts, the notification outbox and Slack message references.

SQLite by default (``sqlite:///path``). Everything a restart must not forget lives here.
"""

from __future__ import annotations

from pathlib import Path

from riskwatch.errors import SettingsError
from riskwatch.store.base import NewMessage, OutboxRow, SlackMessage, Store
from riskwatch.store.sqlite import SqliteStore

__all__ = ["NewMessage", "OutboxRow", "SlackMessage", "SqliteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """Open the store named by ``RISKWATCH_STATE``; ``with open_store(url) as store:``
    closes it when the block ends, however it ends."""
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from riskwatch.store.postgres import PostgresStore

        return PostgresStore(url)
    raise SettingsError("RISKWATCH_STATE: expected sqlite:///path or postgresql://...")
