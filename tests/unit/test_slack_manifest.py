"""The Slack app manifest a desk pastes to create the app asks for what riskwatch uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).parent.parent.parent / "deploy" / "slack" / "manifest.yaml"


def _manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_manifest_enables_socket_mode_and_interactivity() -> None:
    """Clicks and the slash command arrive over Socket Mode: no public URL anywhere."""
    manifest = _manifest()
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert "event_subscriptions" not in manifest["settings"]


def test_manifest_has_the_bot_scopes_and_the_slash_command() -> None:
    """chat:write posts and updates; commands serves /riskwatch; operators may be a group."""
    manifest = _manifest()
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"chat:write", "commands", "usergroups:read"} <= set(scopes)
    assert len(scopes) == len(set(scopes))
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/riskwatch"]
    assert manifest["features"]["bot_user"]["display_name"] == "riskwatch"
    assert manifest["_metadata"]["major_version"] == 1


def test_manifest_says_how_to_make_the_app_level_token() -> None:
    """The app-level token's scope cannot be set in a manifest; the file says where it is."""
    text = MANIFEST.read_text()
    assert "connections:write" in text and "xapp-" in text
    assert "connections:write" not in yaml.safe_dump(_manifest())
