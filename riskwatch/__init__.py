"""riskwatch: watches Tread.fi accounts and tells a trading desk, in Slack, before a liquidation."""

__version__ = "0.1.0"
