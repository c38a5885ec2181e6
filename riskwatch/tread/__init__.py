"""The Tread.fi API: the httpx client and the endpoints riskwatch calls."""

from riskwatch.tread.client import TreadClient, make_http_client

__all__ = ["TreadClient", "make_http_client"]
