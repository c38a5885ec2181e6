"""``riskwatch demo``: a simulated Tread.fi on loopback whose accounts drift into and out of
breaches, watched by the real daemon through its normal HTTP client.

Every balance request advances the simulation one step, so the story is the same at any
poll interval: within a dozen polls a position's margin ratio goes to warning, then
critical, back to warning and to safe; another position's leverage crosses the cap and
comes back.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from riskwatch.core.history import points_of
from riskwatch.demo.loopback import LoopbackServer, Reply, Request
from riskwatch.source.adapters import from_cached
from riskwatch.store import Store

DEMO_TOKEN = "demo-token"  # noqa: S105 - the simulated API's own token, not a secret
CYCLE = 16  # steps before the story starts again

# maint_margin / margin_balance of desk-1's ETH position at each step
ETH_MARGIN_RATIO = [Decimal(x) for x in
                    ("0.30", "0.32", "0.58", "0.61", "0.86", "0.89", "0.90", "0.63",
                     "0.60", "0.31", "0.29", "0.28", "0.30", "0.29", "0.30", "0.31")]
# desk-2's equity at each step: a 13 % fall from 30,000 and back (the daily drawdown rule)
DESK2_EQUITY = ("30000", "30000", "30000", "30000", "29000", "28000", "26500", "26000",
                "26200", "27500", "29500", "30000", "30000", "30000", "30000", "30000")
# leverage of desk-2's SOL position at each step
SOL_LEVERAGE = [Decimal(x) for x in
                ("10", "10", "10", "10", "10", "10", "25", "25", "25", "25", "10", "10",
                 "10", "10", "10", "10")]


class SimulatedTread:
    """The simulated API: state per step, served as both balance endpoints."""

    def __init__(self, token: str = DEMO_TOKEN) -> None:
        self.token = token
        self.step = 0
        self.lock = threading.Lock()
        self.leverage_calls: list[Any] = []

    def handle(self, request: Request) -> Reply:
        """Answer one HTTP request like Tread.fi would."""
        if request.headers.get("authorization") != f"Token {self.token}":
            return Reply.json({"message": "Invalid credentials"}, 401)
        if request.path == "/api/sor/get_cached_account_balance":
            return Reply.json(self.cached_payload(self._advance()))
        if request.path == "/api/balances/":
            return Reply.json(self.live_payload(self._advance()))
        if request.path == "/api/accounts/":
            return Reply.json(ACCOUNTS)
        if request.path == "/api/set_leverage/" and request.method == "POST":
            self.leverage_calls.append(request.json())
            return Reply.json({"message": "Leverage changed successfully."})
        return Reply.json({"message": "Not found"}, 404)

    def _advance(self) -> int:
        with self.lock:
            step = self.step
            self.step += 1
            return step % CYCLE

    def accounts_at(self, step: int) -> list[dict[str, Any]]:
        """The accounts at ``step`` in a neutral shape (numbers as Decimal)."""
        ratio = ETH_MARGIN_RATIO[step]
        margin_balance = Decimal("20000")
        eth_notional = Decimal("-100000")
        sol_leverage = SOL_LEVERAGE[step]
        sol_notional = Decimal("40000")
        return [
            _account("desk-1", "Bybit", "2fd72fdc-e010-400f-886c-2e45fa0104c4", "25000", [
                _token("USDT", "20000", "20000", "unified", margin_balance),
                _position("ETH:PERP-USDT", "-50", eth_notional, "unified",
                          maint=(ratio * margin_balance).quantize(Decimal("0.01")),
                          initial=Decimal("15000"), margin_balance=margin_balance,
                          leverage=Decimal("10"), pnl=Decimal("-1200")),
            ]),
            _account("desk-2", "Binance", "b82512b5-450f-4329-9943-0e037d0782b2",
                     DESK2_EQUITY[step], [
                _token("USDT", "30000", "30000", "perp", Decimal("30000")),
                _position("SOL:PERP-USDT", "250", sol_notional, "perp",
                          maint=Decimal("400"), initial=sol_notional / sol_leverage,
                          margin_balance=Decimal("30000"), leverage=sol_leverage,
                          pnl=Decimal("850")),
                _position("BTC:PERP-USDT", "0.2", Decimal("19000"), "perp",
                          maint=Decimal("95"), initial=Decimal("1900"),
                          margin_balance=Decimal("30000"), leverage=Decimal("10"),
                          pnl=Decimal("120")),
            ]),
            _account("desk-3", "OKX", "4be4cba9-23ea-453a-a235-f2c8e1ba7d51", "50000", [
                _token("USDC", "48000", "48000", "spot", None),
                _token("BTC", "0.03", "2850", "spot", None),
            ]),
        ]

    def cached_payload(self, step: int, equity_share: Decimal = Decimal(1)) -> dict[str, Any]:
        """The cached-balance endpoint's body at ``step`` (every equity times
        ``equity_share``, for a past day)."""
        now_ms = int(time.time() * 1000)
        balances = []
        for account in self.accounts_at(step):
            if equity_share != 1:
                account["equity"] = str((Decimal(account["equity"]) * equity_share)
                                        .quantize(Decimal("0.01")))
            balances.append({
                "exchange_name": account["exchange"], "account_name": account["name"],
                "user_id": 1, "account_id": account["id"], "username": "demo",
                "equity": account["equity"],
                "equities": [{"total_equity": account["equity"], "market_type": "unified"}],
                "assets": [{**_strings(asset, drop={"market_type", "notional_pct_total"}),
                            "amount": str(asset["size"]), "wallet_type": asset["market_type"]}
                           for asset in account["assets"]],
                "transfers": [], "timestamp_millis": now_ms, "vcefi_enabled": False,
            })
        return {"balances": balances, "errors": []}

    def live_payload(self, step: int) -> dict[str, Any]:
        """The ``/api/balances/`` body at ``step`` (numbers as JSON numbers)."""
        return {
            account["name"]: {
                "exchange": account["exchange"],
                "assets": [{key: (float(v) if isinstance(v, Decimal) else v)
                            for key, v in asset.items()} for asset in account["assets"]],
            }
            for account in self.accounts_at(step)
        }


def _strings(asset: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    return {key: (str(value) if isinstance(value, Decimal) else value)
            for key, value in asset.items() if key not in drop and key != "size"}


def _account(name: str, exchange: str, account_id: str, equity: str,
             assets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "exchange": exchange, "id": account_id, "equity": equity,
            "assets": assets}


def _token(symbol: str, size: str, notional: str, market: str,
           margin_balance: Decimal | None) -> dict[str, Any]:
    return {"symbol": symbol, "size": Decimal(size), "notional": Decimal(notional),
            "market_type": market, "asset_type": "token", "unrealized_profit": Decimal(0),
            "initial_margin": None, "maint_margin": None, "margin_balance": margin_balance,
            "leverage": None, "funding_fee": None}


def _position(symbol: str, size: str, notional: Decimal, market: str, *, maint: Decimal,
              initial: Decimal, margin_balance: Decimal, leverage: Decimal,
              pnl: Decimal) -> dict[str, Any]:
    return {"symbol": symbol, "size": Decimal(size), "notional": notional,
            "market_type": market, "asset_type": "position", "unrealized_profit": pnl,
            "initial_margin": initial, "maint_margin": maint, "margin_balance": margin_balance,
            "leverage": leverage, "funding_fee": Decimal("0.1")}


ACCOUNTS = [
    {"id": "2fd72fdc-e010-400f-886c-2e45fa0104c4", "name": "desk-1", "exchange": "Bybit"},
    {"id": "b82512b5-450f-4329-9943-0e037d0782b2", "name": "desk-2", "exchange": "Binance"},
    {"id": "4be4cba9-23ea-453a-a235-f2c8e1ba7d51", "name": "desk-3", "exchange": "OKX"},
]


def seed_history(store: Store, now: datetime) -> int:
    """Give the simulated accounts the history a desk would already have: their opening
    figures since 00:00 UTC (every 5 minutes, then every minute for the last 20), so the
    daily drawdown rule has its whole window and the status page's charts a past.
    Returns the number of points written."""
    simulated = SimulatedTread()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    recent = now - timedelta(minutes=20)
    times: list[datetime] = []
    at = midnight
    while at < now - timedelta(seconds=30):
        times.append(at)
        at += timedelta(minutes=5) if at < recent else timedelta(minutes=1)
    written = 0
    for at in times:
        points = points_of(from_cached(simulated.cached_payload(0, _calm(at)), now), at)
        store.record_history(points, at)
        written += len(points)
    return written


def _calm(at: datetime) -> Decimal:
    """A calm day's equity, as a share of the opening: a slow wave, up to 4 % below."""
    hours = at.hour + at.minute / 60
    return Decimal(1) - Decimal(str(round(0.02 * (1 - math.cos(hours / 24 * 6 * math.pi)), 4)))


def serve() -> tuple[SimulatedTread, LoopbackServer]:
    """Start the simulated API on a free loopback port."""
    simulation = SimulatedTread()
    return simulation, LoopbackServer(simulation.handle)
