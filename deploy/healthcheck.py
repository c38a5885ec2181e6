"""The container's HEALTHCHECK: GET /healthz where RISKWATCH_HTTP says the daemon listens.

Exit 0 when /healthz answers 200 (or when the endpoints are off: nothing to ask), 1
otherwise. A wildcard listen address (0.0.0.0, ::) is asked on loopback. Standard library
only, so it runs with the image's interpreter and nothing else.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT = "127.0.0.1:9464"  # riskwatch's own default for RISKWATCH_HTTP


def healthz_url(listen: str) -> str | None:
    """The /healthz URL for a RISKWATCH_HTTP value, or None when the endpoints are off."""
    listen = listen.strip() or DEFAULT
    if listen == "off":
        return None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):  # noqa: S104 - the wildcard is asked on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    """Ask /healthz once; 0 when healthy."""
    url = healthz_url(os.environ.get("RISKWATCH_HTTP", DEFAULT))
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:  # noqa: S310 - http only
            return 0 if answer.status == 200 else 1
    except OSError as error:
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
