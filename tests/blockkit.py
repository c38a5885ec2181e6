"""Checks every Block Kit message must pass: slack_sdk's models, Slack's limits, inert text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk.models.blocks import Block

from riskwatch.notify import blocks, render
from riskwatch.notify.blocks import SlackMessage

RUNBOOK = "https://wiki.example/margin"  # the one link the test alerts may carry


def _texts(value: Any) -> Iterator[str]:
    """Every string in a block tree."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def check_limits(message: SlackMessage) -> None:
    """A message riskwatch renders: its blocks pass :func:`check_blocks`, its text fits."""
    assert 0 < len(message.text) <= render.MAX_TEXT
    check_blocks(message.blocks)


def check_blocks(sent: list[dict[str, Any]]) -> None:
    """Blocks parse with slack_sdk's Block Kit models, round-trip unchanged (nothing
    unknown or lost) and validate, and keep Slack's limits (some of which slack_sdk does
    not check)."""
    parsed = Block.parse_all(sent)
    assert [model.to_dict() for model in parsed] == sent
    for model in parsed:
        model.validate_json()
    assert 0 < len(sent) <= blocks.MAX_BLOCKS
    assert blocks.size(sent) <= blocks.MAX_BLOCKS_CHARS
    for block in sent:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= blocks.MAX_HEADER_TEXT
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= blocks.MAX_SECTION_TEXT
            assert len(block.get("fields", [])) <= blocks.MAX_FIELDS
            assert all(len(f["text"]) <= blocks.MAX_FIELD_TEXT for f in block.get("fields", []))
        if block["type"] == "context":
            assert all(len(e["text"]) <= blocks.MAX_FIELD_TEXT for e in block["elements"])
        if block["type"] == "actions":
            assert all(len(e["value"]) <= 2000 and e["action_id"] in blocks.ACTION_IDS
                       for e in block["elements"])


def check_inert(sent: SlackMessage | list[dict[str, Any]]) -> None:
    """No text object can mention, or link anywhere but the rule's runbook."""
    tree = sent.blocks if isinstance(sent, SlackMessage) else sent
    shown = "\n".join(_texts(tree)).replace(f"<{RUNBOOK}|Runbook>", "")
    assert "<!channel>" not in shown and "<!here" not in shown and "<http" not in shown
    assert "://evil" not in shown and "evil.example" not in shown and "\u202e" not in shown
