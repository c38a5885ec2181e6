"""The heartbeat: riskwatch tells an outside monitor that it is alive and working.

An always-on alerter must itself be watched: if riskwatch dies, hangs or stops handing
its messages to Slack, nothing in riskwatch can say so. After each poll that succeeded
and whose messages were all handed to Slack, riskwatch POSTs a one-line JSON status to
``RISKWATCH_HEARTBEAT_URL`` — the contract of healthchecks.io, Uptime Kuma push monitors
and Opsgenie heartbeats, which alert when the calls stop. The call has a total deadline,
runs beside the poll (never blocking it), and the URL is a secret: it is never logged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import structlog

from riskwatch.service.telemetry import Telemetry

log = structlog.get_logger("riskwatch.heartbeat")


class Heartbeat:
    """Calls the heartbeat URL, one call at a time, each within ``deadline`` seconds."""

    def __init__(self, url: str, deadline: float, telemetry: Telemetry,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url
        self.deadline = deadline
        self.telemetry = telemetry
        self.transport = transport
        self._task: asyncio.Task[bool] | None = None
        self.failing = False

    def beat(self, status: dict[str, Any]) -> None:
        """Start one call in the background, unless the previous one is still running."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.ensure_future(self.send(status))

    async def wait(self) -> None:
        """Let a call in flight finish (at a clean stop, and in tests)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def send(self, status: dict[str, Any]) -> bool:
        """POST ``status`` as one line of JSON; True when the monitor answered 2xx."""
        body = json.dumps(status, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(self.deadline):
                async with httpx.AsyncClient(timeout=self.deadline, transport=self.transport,
                                             follow_redirects=True) as client:
                    response = await client.post(
                        self._url, content=body,
                        headers={"Content-Type": "application/json", "User-Agent": "riskwatch"})
            problem = None if response.is_success else f"HTTP {response.status_code}"
        except TimeoutError:
            problem = f"no answer within the {self.deadline:g}s deadline"
        except Exception as error:  # the heartbeat must never break a poll
            problem = f"network: {type(error).__name__}"
        self.telemetry.heartbeats.labels("failed" if problem else "ok").inc()
        if problem and not self.failing:
            log.warning("heartbeat call failed", error=problem)  # never the URL: a secret
        elif not problem and self.failing:
            log.info("heartbeat calls succeed again")
        self.failing = problem is not None
        return problem is None
