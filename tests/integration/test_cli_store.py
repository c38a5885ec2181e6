"""The commands that read or edit the daemon's state store, as a user runs them (through
the entry point in this process; a pipe to `head` in a real one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from riskwatch.core.lifecycle import AlertKey, Observation, Policy
from riskwatch.core.lifecycle import step as lifecycle_step
from riskwatch.store import SqliteStore
from tests.helpers import FIXTURES, T0
from tests.integration.command import riskwatch
from tests.integration.fakes import TOKEN, FakeTread
from tests.integration.scenario import cached_with_ratio

RULES = FIXTURES / "rules" / "good" / "check.yaml"


def _riskwatch(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return riskwatch(*args, cwd=cwd, env={"RISKWATCH_RULES": str(RULES), **env})


@pytest.mark.parametrize("args", [["alerts"], ["actions"], ["silence", "list"],
                                  ["silence", "remove", "abc"],
                                  ["silence", "add", "--rule", "*", "--duration", "1h",
                                   "--reason", "x"]])
def test_store_commands_never_create_a_store_and_say_which_they_looked_for(
    args: list[str], tmp_path: Path,
) -> None:
    """Run where there is no state store: one line naming the path looked for, exit 2,
    and no file (nor folder) created."""
    state = tmp_path / "not" / "here.db"
    result = _riskwatch(*args, cwd=tmp_path, RISKWATCH_STATE=f"sqlite:///{state}")
    assert result.returncode == 2, result
    assert f"no state store at {state}" in result.stderr
    assert not state.parent.exists() and "Traceback" not in result.stderr


def test_silence_add_refuses_an_unknown_rule_and_no_duration_and_records_its_author(
    tmp_path: Path,
) -> None:
    """A rule glob matching no rule (with a suggestion) and --duration 0 are refused; a
    silence records who added it, shown by `silence list`; the store used is named;
    `silence remove` says whether it ended the silence now or deleted an ended one."""
    state = tmp_path / "state.db"
    SqliteStore(state).close()
    env = {"RISKWATCH_STATE": f"sqlite:///{state}"}
    typo = _riskwatch("silence", "add", "--rule", "pos-leverag", "--duration", "1h",
                      "--reason", "x", cwd=tmp_path, **env)
    assert typo.returncode == 2 and "did you mean 'pos-leverage'?" in typo.stderr
    zero = _riskwatch("silence", "add", "--rule", "pos-leverage", "--duration", "0",
                      "--reason", "x", cwd=tmp_path, **env)
    assert zero.returncode == 2 and "longer than 0s" in zero.stderr
    added = _riskwatch("silence", "add", "--rule", "pos-*", "--duration", "1h",
                       "--reason", "rebalancing", "--by", "ana", cwd=tmp_path, **env)
    assert added.returncode == 0 and f"state store: {state}" in added.stderr
    listed = _riskwatch("silence", "list", "--format", "json", cwd=tmp_path, **env)
    [silence] = json.loads(listed.stdout)
    assert silence["created_by"] == "ana" and silence["rule"] == "pos-*"
    # removing it ends it now and keeps it; removing the ended one deletes it; then none
    ended = _riskwatch("silence", "remove", silence["id"], cwd=tmp_path, **env)
    assert ended.returncode == 0 and "ended" in ended.stdout and "kept" in ended.stdout
    kept = _riskwatch("silence", "list", "--all", "--format", "json", cwd=tmp_path, **env)
    assert [s["id"] for s in json.loads(kept.stdout)] == [silence["id"]]
    deleted = _riskwatch("silence", "remove", silence["id"], cwd=tmp_path, **env)
    assert deleted.returncode == 0 and "already ended; deleted" in deleted.stdout
    gone = _riskwatch("silence", "remove", silence["id"], cwd=tmp_path, **env)
    assert gone.returncode == 1


def test_alerts_json_names_the_scope_of_asset_rules(tmp_path: Path) -> None:
    """An asset-scope alert is listed with scope "asset" (the scope is stored with it)."""
    state = tmp_path / "state.db"
    store = SqliteStore(state)
    policy = Policy(name="big-token", metric="notional", scope="asset",
                    levels=(("warning", 1),))  # type: ignore[arg-type]
    alert, _ = lifecycle_step(policy, None, Observation(
        AlertKey("big-token", "desk-1", "USDT"), "Bybit", 5), T0)  # type: ignore[arg-type]
    assert alert is not None
    store.save_poll({alert.key: alert}, [], [], T0)
    store.close()
    listed = _riskwatch("alerts", "--format", "json", cwd=tmp_path,
                        RISKWATCH_STATE=f"sqlite:///{state}")
    assert [row["scope"] for row in json.loads(listed.stdout)] == ["asset"]


@pytest.mark.e2e
def test_a_reader_that_stops_early_is_not_an_error(tread: FakeTread, tmp_path: Path) -> None:
    """`riskwatch snapshot | head -1` on a large answer exits 0, with nothing on stderr."""
    payload = cached_with_ratio("0.1")
    payload["balances"] = [{**payload["balances"][0], "account_name": f"desk-{n}"}
                           for n in range(3000)]
    tread.set_cached(payload)
    result = subprocess.run(  # noqa: S602 - a shell pipe is the point
        f"{sys.executable} -m riskwatch snapshot | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True, executable="/bin/bash", cwd=tmp_path, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "RISKWATCH_TREAD_URL": tread.url,
             "RISKWATCH_TREAD_TOKEN": TOKEN}, timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.startswith("ACCOUNT")
    assert result.stderr == ""
