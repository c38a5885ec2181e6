"""Every test runs with no RISKWATCH_* variable from the machine and in its own folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("RISKWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RISKWATCH_SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.chdir(tmp_path)
