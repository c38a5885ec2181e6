"""Calling ``POST /api/set_leverage/`` for a decision, with care.

5xx and network errors are retried a few times with a doubling pause; a 400 or 422 is
a failed action, not retried; a 2xx whose body cannot be read is an ``unknown`` outcome,
never retried (the call may have worked). Four attempts with one rule per error class
are a dozen lines; a retry library would add a dependency without taking one of them
away, so the loop stays written out here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from riskwatch.core.leverage import Decision, leverage_text
from riskwatch.errors import TreadBadResponse, TreadClientError, TreadError

RETRIES = 3
BACKOFF = 0.5  # seconds before the first retry; doubled at each


class LeverageApi(Protocol):
    """What :func:`execute` needs of the Tread.fi client."""

    async def set_leverage(self, leverage: str, pair: str, account_ids: list[str]) -> str:
        """Call ``POST /api/set_leverage/``; return the API's message."""


def masked(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret in it (of four characters or more) replaced by ``***``."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _client_secrets(api: LeverageApi) -> list[str]:
    """The token the Tread.fi client sends (kept as ``_token`` to mask echoes of it)."""
    token = getattr(api, "_token", None)
    return [token] if isinstance(token, str) and token else []


async def execute(decision: Decision, api: LeverageApi, backoff: float = BACKOFF,
                  secrets: Iterable[str] | None = None) -> Decision:
    """Make the call of a ``call`` decision; return it as ``acted``, ``failed`` or ``unknown``.

    The API's answer, or its error, is the decision's detail (the audit log, ``riskwatch
    actions``) once every secret is masked: ``secrets``, by default the client's token.
    """
    hidden = list(secrets) if secrets is not None else _client_secrets(api)
    done = await _call(decision, api, backoff)
    return replace(done, detail=masked(done.detail, hidden)) if hidden else done


async def _call(decision: Decision, api: LeverageApi, backoff: float) -> Decision:
    if decision.account_id is None:
        return replace(decision, outcome="failed", detail="no account id for this account")
    last_error = ""
    for attempt in range(RETRIES + 1):
        try:
            answer = await api.set_leverage(leverage_text(decision.to_leverage), decision.pair,
                                            [decision.account_id])
        except TreadClientError as error:  # 400, 422: the API said no; not retried
            return replace(decision, outcome="failed", detail=str(error))
        except TreadBadResponse as error:  # a 2xx we cannot read: it may have worked
            return replace(decision, outcome="unknown", detail=str(error))
        except TreadError as error:
            last_error = str(error)
            if not error.retryable or attempt == RETRIES:
                break
            await asyncio.sleep(backoff * 2 ** attempt)
            continue
        return replace(decision, outcome="acted", detail=answer)
    return replace(decision, outcome="failed", detail=last_error)
