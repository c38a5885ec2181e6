"""The container image's environment: its ENV lines leave the state store to the code's
default and to a `RISKWATCH_STATE` secret file, which must win (no Docker engine here, so
riskwatch runs with exactly the runtime stage's ENV lines, in a stand-in for its WORKDIR)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg

from tests.integration.command import riskwatch
from tests.integration.conftest import PG_BASE

REPO = Path(__file__).parent.parent.parent


def runtime_stage() -> list[tuple[str, str]]:
    """The Dockerfile's instructions after its last FROM, as (INSTRUCTION, arguments)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            steps.append((name.upper(), rest.strip()))
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from + 1:]


def image_env(base: dict[str, str]) -> dict[str, str]:
    """The runtime stage's ENV lines applied over ``base`` (``$NAME`` expanded as Docker does)."""
    env = dict(base)
    for name, rest in runtime_stage():
        if name != "ENV":
            continue
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = re.sub(r"\$\{?(\w+)\}?", lambda ref: env.get(ref.group(1), ""), value)
    return env


def run_as_image(workdir: Path, secrets: Path) -> subprocess.CompletedProcess[str]:
    """`riskwatch alerts` with the image's ENV lines, in ``workdir``, reading ``secrets``
    (through the entry point in this process, with exactly that environment)."""
    clean = {key: value for key, value in os.environ.items()
             if not key.upper().startswith("RISKWATCH_")}
    env: dict[str, str | None] = {**image_env(clean), "RISKWATCH_SECRETS_DIR": str(secrets)}
    env.update({key: None for key in os.environ if key not in env})
    return riskwatch("alerts", "--format", "json", cwd=workdir, env=env)


def tables_in(url: str) -> set[str]:
    """The tables in the schema that ``url``'s search_path names."""
    options = parse_qs(urlsplit(url).query)["options"][0]
    schema = options.removeprefix("-csearch_path=")
    with psycopg.connect(PG_BASE) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = %s", (schema,)).fetchall()
    return {row[0] for row in rows}


def test_image_env_lines_plus_a_state_secret_file_use_postgresql(
    pg_url: str, tmp_path: Path,
) -> None:
    """The image's ENV lines and a RISKWATCH_STATE secret file: PostgreSQL is the store."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "RISKWATCH_STATE").write_text(pg_url + "\n")
    workdir = tmp_path / "var-lib-riskwatch"
    workdir.mkdir()
    assert tables_in(pg_url) == set()

    done = run_as_image(workdir, secrets)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert "alerts" in tables_in(pg_url)
    assert list(workdir.iterdir()) == [], "a SQLite file was made instead"


def test_image_without_a_state_secret_keeps_sqlite_in_its_working_directory(
    tmp_path: Path,
) -> None:
    """No RISKWATCH_STATE anywhere: the code's default puts SQLite in the WORKDIR volume
    (`alerts` looks for it there, and creates none)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    workdir = tmp_path / "var-lib-riskwatch"
    workdir.mkdir()
    volumes = [rest for name, rest in runtime_stage() if name == "VOLUME"]
    workdirs = [rest for name, rest in runtime_stage() if name == "WORKDIR"]
    assert workdirs and json.loads(volumes[-1]) == [workdirs[-1]]

    done = run_as_image(workdir, secrets)

    assert done.returncode == 2, done.stderr
    assert f"no state store at {workdir / 'riskwatch-state.db'}" in done.stderr
