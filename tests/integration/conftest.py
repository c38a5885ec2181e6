"""Fixtures for integration tests: loopback fakes of Tread.fi and Slack, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from riskwatch.store import Store, open_store
from tests.integration.fakes import FakeSlack, FakeTread


@pytest.fixture
def tread() -> Iterator[FakeTread]:
    """A fake Tread.fi on 127.0.0.1."""
    fake = FakeTread()
    yield fake
    fake.close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack on 127.0.0.1."""
    fake = FakeSlack()
    yield fake
    fake.close()


# read at import, before the autouse fixture clears RISKWATCH_* from each test's environment
PG_BASE = os.environ.get("RISKWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema of the `test` database.

    PostgreSQL must be running (`.ci/run` starts it); these tests never skip.
    """
    import uuid

    import psycopg

    schema = f"rw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of each engine: a SQLite file, and a schema of PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, fresh store of each engine (closed after the test)."""
    with open_store(store_url) as opened:
        yield opened
