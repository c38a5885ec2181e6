"""Shared test helpers: fixture payloads, a fixed clock, tiny builders."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from riskwatch.core.snapshot import Account, Asset

FIXTURES = Path(__file__).parent / "fixtures"
# RISKWATCH_FUZZ=full: the deep run of every generated test (docs/RELIABILITY.md's counts);
# by default each tries a few hundred examples, enough for CI to meet the usual failures.
DEEP = os.environ.get("RISKWATCH_FUZZ") == "full"
T0 = datetime(2026, 1, 22, 10, 0, 0, tzinfo=UTC)


def payload(name: str) -> Any:
    """A JSON fixture from tests/fixtures/payloads, numbers as Decimal like the client reads."""
    text = (FIXTURES / "payloads" / name).read_text()
    return json.loads(text, parse_float=Decimal)


def raw_payload(name: str) -> bytes:
    """A JSON fixture's bytes, served as they are (numbers stay numbers)."""
    return (FIXTURES / "payloads" / name).read_bytes()


def closed_port() -> int:
    """A loopback port nothing listens on: one the system just handed out and took back
    (a fixed one, such as 9, may be taken on some machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scratch_folder() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for a store made per generated example: in memory where the system
    has such a place (/dev/shm), as SQLite's syncs to a disk take longer than the example."""
    memory = Path("/dev/shm")
    usable = memory.is_dir() and os.access(memory, os.W_OK)
    return tempfile.TemporaryDirectory(dir=memory if usable else None)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def position(symbol: str = "ETH:PERP-USDT", **numbers: str | None) -> Asset:
    """A position row with the given numbers (strings, for exact Decimals)."""
    values = {key: (None if value is None else Decimal(value)) for key, value in numbers.items()}
    market = values.pop("market_type", None)
    return Asset(symbol=symbol, asset_type="position",
                 market_type=str(market) if market else "perp", **values)


def token(symbol: str = "USDT", market_type: str = "perp", **numbers: str | None) -> Asset:
    """A token row."""
    values = {key: (None if value is None else Decimal(value)) for key, value in numbers.items()}
    return Asset(symbol=symbol, asset_type="token", market_type=market_type, **values)


def account(name: str = "desk-1", *assets: Asset, exchange: str = "Bybit",
            equity: str | None = None, taken_at: datetime = T0, complete: bool = True) -> Account:
    """An account holding ``assets``."""
    return Account(name=name, exchange=exchange, assets=tuple(assets), taken_at=taken_at,
                   equity=None if equity is None else Decimal(equity), complete=complete)
