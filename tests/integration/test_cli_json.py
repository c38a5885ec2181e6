"""Every `--format json` document, key for key and value for value, as the release before
the msgspec codecs printed it (tests/fixtures/cli/, made by that release)."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from riskwatch.cli import cli
from riskwatch.config import logs
from tests.helpers import FIXTURES, raw_payload
from tests.integration.fakes import TOKEN, FakeTread

GOLDEN = FIXTURES / "cli"
RULES = FIXTURES / "rules" / "good" / "check.yaml"


@pytest.fixture(autouse=True)
def _logs_aside(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands run in this process configure its logging: send their logs to a stream of
    their own (not the runner's stdout), and put the configuration back afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure = logs.configure

    def aside(level: str = "info", fmt: str = "auto", secrets: Iterable[str] = (),
              stream: Any = None) -> logs.Redactor:
        return configure(level, fmt, secrets, io.StringIO())

    monkeypatch.setattr(logs, "configure", aside)
    yield
    structlog.configure(**saved)
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture
def fixed_tread(tread: FakeTread) -> Iterator[FakeTread]:
    """The fake API serving the reference payloads with the times they carry."""
    tread.stamp_now = False
    yield tread


def _json_of(*args: str, env: dict[str, str], status: int = 0) -> Any:
    result = CliRunner().invoke(cli, [*args, "--format", "json"],
                                env={"RISKWATCH_RULES": str(RULES), **env})
    assert result.exit_code == status, result.stderr
    return json.loads(result.stdout)


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


@pytest.mark.parametrize(("name", "args"), [
    ("alerts", ["alerts"]), ("actions", ["actions"]), ("silences", ["silence", "list", "--all"]),
])
def test_store_listings_print_what_they_printed(name: str, args: list[str],
                                                tmp_path: Path) -> None:
    """alerts, actions and silence list of the fixture store: the same documents."""
    shutil.copy(FIXTURES / "store" / "v6.db", tmp_path / "state.db")
    found = _json_of(*args, env={"RISKWATCH_STATE": f"sqlite:///{tmp_path}/state.db"})
    assert found == _golden(name)


@pytest.mark.parametrize("source", ["cached", "live"])
def test_check_and_snapshot_print_what_they_printed(fixed_tread: FakeTread,
                                                    source: str) -> None:
    """check and snapshot of the reference payloads: the same documents (the times of this
    run aside)."""
    fixed_tread.set_cached(raw_payload(f"reference_{source}.json"))
    fixed_tread.live = raw_payload(f"reference_{source}.json")
    env = {"RISKWATCH_TREAD_URL": fixed_tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN,
           "RISKWATCH_SOURCE": source}
    assert _json_of("check", env=env, status=1) == _golden(f"check-{source}")
    assert _untimed(_json_of("snapshot", env=env), source) == _golden(f"snapshot-{source}")


def test_a_bad_row_and_a_missing_account_print_what_they_printed(
    fixed_tread: FakeTread,
) -> None:
    """An unreadable row (account-error, with its detail) and a watched account missing
    from the answer: the same check and snapshot documents."""
    data = json.loads(raw_payload("reference_cached.json"))
    data["balances"][1]["assets"][0]["notional"] = {"oops": True}
    fixed_tread.set_cached(data)
    env = {"RISKWATCH_TREAD_URL": fixed_tread.url, "RISKWATCH_TREAD_TOKEN": TOKEN}
    found = _json_of("check", env={**env, "RISKWATCH_ACCOUNTS": "acc456,ghost"}, status=1)
    assert found == _golden("check-bad-row")
    assert _untimed(_json_of("snapshot", env=env), "cached") == _golden("snapshot-bad-row")


def _untimed(snapshot: dict[str, Any], source: str) -> dict[str, Any]:
    """A snapshot without the times of this run: when it was received, and, from the live
    endpoint (which carries no times), when its accounts were taken."""
    if source == "live":
        for account in snapshot["accounts"]:
            account["taken_at"] = None
    return {**snapshot, "received_at": None}
