"""Planning a poll's messages: which destinations hear of each notice, grouped into
messages per destination and Slack thread, and cut to Slack's limits. Pure, given the
router: the messages are stored with the poll and sent later by the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from riskwatch.core.lifecycle import SILENCE_KINDS, AlertKey, Notice, NoticeKind
from riskwatch.notify import blocks, render
from riskwatch.notify.sinks import Sink
from riskwatch.store import NewMessage
from riskwatch.store.codec import notice_to_dict

THREADED_KINDS = frozenset({NoticeKind.ESCALATED, NoticeKind.DEESCALATED, NoticeKind.RESOLVED,
                            NoticeKind.ACTION_CHECK, *SILENCE_KINDS})


@dataclass
class Router:
    """Which destinations a notice goes to, and the sink behind each destination."""

    sinks: dict[str, Sink]
    default: list[str]
    slack_web: Callable[[str], Sink] | None = None  # makes a sink for a rule's own channel
    web_default_channel: str | None = None
    links: bool = False  # alerts link to their account's status page (RISKWATCH_PUBLIC_URL)

    def destinations(self, notice: Notice) -> list[str]:
        """The destinations of ``notice``: a rule's ``channel`` overrides the Web API default."""
        if self.slack_web is None or not notice.channel:
            return list(self.default)
        web = f"slack:{notice.channel}"
        return [web if d == f"slack:{self.web_default_channel}" else d for d in self.default]

    def sink(self, destination: str) -> Sink:
        """The sink for a destination, made on first use for a rule's own Slack channel."""
        if destination not in self.sinks:
            if self.slack_web is None or not destination.startswith("slack:"):
                raise KeyError(destination)
            self.sinks[destination] = self.slack_web(destination.removeprefix("slack:"))
        return self.sinks[destination]


@dataclass(frozen=True)
class MessagePlan:
    """A poll's messages, and the id of the message that starts each new alert's thread."""

    messages: list[NewMessage]
    threads: dict[AlertKey, str]


def plan_messages(notices: Sequence[Notice], router: Router) -> MessagePlan:
    """Group notices into messages, one per destination and thread.

    In threaded destinations a firing starts a new message, whose id the alert keeps as
    its thread (``threads``), and later changes of that alert reply in its thread,
    followed by an in-place update of the firing message.
    """
    groups: dict[tuple[str, str | None], list[Notice]] = {}
    for notice in notices:
        for destination in router.destinations(notice):
            threaded = router.sink(destination).threads
            parent = notice.alert.thread if threaded and notice.kind in THREADED_KINDS else None
            if parent is None and notice.kind in SILENCE_KINDS:
                continue  # a silence is told only in the threads of the alerts it covers
            groups.setdefault((destination, parent), []).append(notice)
    messages: list[NewMessage] = []
    threads: dict[AlertKey, str] = {}
    for (destination, parent), grouped in groups.items():
        for chunk, compact in _chunks(grouped, linked=router.links):
            message = NewMessage(uuid.uuid4().hex, destination,
                                 {"notices": [notice_to_dict(n) for n in chunk], "thread": parent,
                                  "compact": compact})
            messages.append(message)
            if router.sink(destination).threads:
                threads.update((n.alert.key, message.id) for n in chunk
                               if n.kind is NoticeKind.FIRING)
        if parent is not None:
            messages.append(NewMessage(uuid.uuid4().hex, destination, {"update": parent}))
    return MessagePlan(messages, threads)


def _chunks(items: Sequence[Notice], *,
            linked: bool = False) -> Iterable[tuple[Sequence[Notice], bool]]:
    """Detailed messages for the first alerts of a poll, one-line summaries past that.

    A poll that changes 500 alerts makes about a dozen detailed messages and a few compact
    ones, not sixty, and every alert still appears. A message also ends before it would
    pass :data:`render.MESSAGE_BUDGET`, as text and as Block Kit blocks, so long API
    strings split a message, never clip it.
    """
    detailed, rest = items[:render.MAX_DETAILED_PER_POLL], items[render.MAX_DETAILED_PER_POLL:]
    for chunk in fill(detailed, render.MAX_ALERTS_PER_MESSAGE, compact=False, linked=linked):
        yield chunk, False
    for chunk in fill(rest, render.MAX_LINES_PER_MESSAGE, compact=True):
        yield chunk, True


def fill(items: Sequence[Notice], most: int, *, compact: bool,
         linked: bool = False) -> Iterable[Sequence[Notice]]:
    """Consecutive runs of ``items``, each at most ``most`` long and within the budget
    (``linked``: each alert carries a link to its status page)."""
    chunk: list[Notice] = []
    used = 0
    for notice in items:
        size = blocks.planned_size(notice, compact=compact, linked=linked)
        if chunk and (len(chunk) == most or used + size > render.MESSAGE_BUDGET):
            yield chunk
            chunk, used = [], 0
        chunk.append(notice)
        used += size
    if chunk:
        yield chunk
