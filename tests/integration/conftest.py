"""Fixtures for integration tests: loopback fakes of Tread.fi and Slack, a clean environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
