"""The state store: alerts, the notification outbox and Slack message references.

SQLite by default (``sqlite:///path``). Everything a restart must not forget lives here.
"""

from __future__ import annotations

from pathlib import Path

from riskwatch.errors import SettingsError
from riskwatch.store.sqlite import NewMessage, OutboxRow, SlackMessage, SqliteStore

__all__ = ["NewMessage", "OutboxRow", "SlackMessage", "SqliteStore", "open_store"]


def open_store(url: str) -> SqliteStore:
    """Open the store named by ``RISKWATCH_STATE``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("RISKWATCH_STATE: the PostgreSQL store is not available in this "
                            "version; use sqlite:///path")
    raise SettingsError("RISKWATCH_STATE: expected sqlite:///path or postgresql://...")
