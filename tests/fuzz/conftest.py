"""How many fuzzed examples a run tries: a CI-sized count by default, the full count with
RISKWATCH_FUZZ=full (10,000 payloads and 5,000 rule files, as docs/RELIABILITY.md says).

The fuzz tests run without coverage measurement (pytest-cov's ``no_cover``): they are here
to find inputs that break riskwatch, the unit and integration tests reach every line they
reach, and tracing would triple their cost.
"""

from __future__ import annotations

import pytest

from tests.helpers import DEEP

PAYLOAD_EXAMPLES = 10_000 if DEEP else 200
RULE_FILE_EXAMPLES = 5_000 if DEEP else 150


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``no_cover``."""
    here = str(__file__).rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here + "/"):
            item.add_marker(pytest.mark.no_cover)
