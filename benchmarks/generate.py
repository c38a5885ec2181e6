"""Synthetic Tread.fi payloads of N accounts x M assets, in both endpoint shapes.

Realistic on purpose: tokens and positions mixed, several exchanges and market types,
decimal strings (including exponents and long zero tails), nulls, shorts with negative
notional. Seeded, so every run measures the same bytes.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

EXCHANGES = ["Bybit", "Binance", "OKX", "Deribit", "Hyperliquid", "Gate"]
BASES = ["BTC", "ETH", "SOL", "XRP", "DOGE", "AVAX", "LINK", "ARB", "OP", "SUI", "PEPE",
         "WIF", "TIA", "SEI", "APT", "NEAR", "ATOM", "DOT", "ADA", "LTC", "BCH", "TRX"]
TOKENS = ["USDT", "USDC", "BTC", "ETH", "SOL", "BNB"]


def _money(rng: random.Random, low: float, high: float) -> str:
    value = rng.uniform(low, high)
    style = rng.random()
    if style < 0.1:
        return f"{value:.8E}"
    if style < 0.2:
        return f"{value:.22f}"
    return f"{value:.8f}"


def _maybe(rng: random.Random, value: str, null_rate: float = 0.05) -> str | None:
    return None if rng.random() < null_rate else value


def _position(rng: random.Random, index: int) -> dict[str, Any]:
    base = BASES[index % len(BASES)]
    short = rng.random() < 0.4
    notional = rng.uniform(1_000, 500_000) * (-1 if short else 1)
    leverage = rng.choice([2, 3, 5, 10, 20, 25, 50])
    initial = abs(notional) / leverage
    maint = initial * rng.uniform(0.05, 0.9)
    return {
        "symbol": f"{base}:PERP-USDT", "asset_type": "position",
        "amount": f"{notional / rng.uniform(1, 60_000):.6f}",
        "notional": f"{notional:.6f}", "margin_balance": _maybe(rng, _money(rng, 5e3, 3e5)),
        "unrealized_profit": _maybe(rng, f"{rng.uniform(-5e4, 5e4):.8f}"),
        "initial_margin": _maybe(rng, f"{initial:.8f}"),
        "maint_margin": _maybe(rng, f"{maint:.8f}"),
        "leverage": _maybe(rng, str(leverage)), "funding_fee": rng.choice([None, 0.1813]),
        "borrowed": None, "margin_mode": rng.choice([None, "CROSS", "ISOLATED"]),
        "wallet_type": rng.choice(["unified", "perp", "futures"]),
    }


def _token(rng: random.Random, index: int) -> dict[str, Any]:
    symbol = TOKENS[index % len(TOKENS)]
    amount = _money(rng, 1e-7, 1e6)
    return {
        "symbol": symbol, "asset_type": "token", "amount": amount,
        "notional": _maybe(rng, _money(rng, 0.01, 1e6)),
        "margin_balance": _maybe(rng, amount, 0.3), "unrealized_profit": "0",
        "initial_margin": "0", "maint_margin": "0", "leverage": None, "funding_fee": None,
        "borrowed": None, "margin_mode": None,
        "wallet_type": rng.choice(["spot", "unified", "margin"]),
    }


def cached_payload(accounts: int, assets: int = 20, seed: int = 7) -> dict[str, Any]:
    """The cached-balance endpoint's body for ``accounts`` accounts of ``assets`` assets."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    balances = []
    for number in range(accounts):
        positions = rng.randint(assets // 2, assets - 4)
        rows = [_position(rng, i) for i in range(positions)]
        rows += [_token(rng, i) for i in range(assets - positions)]
        rng.shuffle(rows)
        equity = _money(rng, 1e4, 5e6)
        balances.append({
            "exchange_name": EXCHANGES[number % len(EXCHANGES)],
            "account_name": f"desk-{number:05d}", "user_id": 13,
            "account_id": f"{number:08x}-e010-400f-886c-2e45fa0104c4", "username": "bench",
            "equity": equity, "equities": [{"total_equity": equity, "market_type": "unified"}],
            "assets": rows, "transfers": [], "timestamp_millis": now_ms - rng.randint(0, 9000),
            "created_at": "2025-10-08T21:27:09.473156Z", "vcefi_enabled": False,
        })
    return {"balances": balances, "errors": []}


def live_payload(accounts: int, assets: int = 20, seed: int = 7) -> dict[str, Any]:
    """The ``/api/balances/`` body for the same accounts (JSON numbers, market_type)."""
    live: dict[str, Any] = {}
    for balance in cached_payload(accounts, assets, seed)["balances"]:
        rows = []
        for row in balance["assets"]:
            converted = {key: (float(value) if key in NUMERIC and value is not None else value)
                         for key, value in row.items() if key not in {"wallet_type", "amount",
                                                                      "borrowed", "margin_mode"}}
            converted["size"] = float(row["amount"])
            converted["market_type"] = row["wallet_type"]
            rows.append(converted)
        live[balance["account_name"]] = {"exchange": balance["exchange_name"], "assets": rows}
    return live


NUMERIC = {"notional", "margin_balance", "unrealized_profit", "initial_margin", "maint_margin",
           "leverage", "funding_fee"}


def payload_bytes(shape: str, accounts: int, assets: int = 20) -> bytes:
    """The response bytes of ``shape`` (``cached`` or ``live``)."""
    data = cached_payload(accounts, assets) if shape == "cached" else live_payload(accounts,
                                                                                    assets)
    return json.dumps(data).encode()
