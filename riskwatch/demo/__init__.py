"""``riskwatch demo``: a simulated Tread.fi served on loopback."""
