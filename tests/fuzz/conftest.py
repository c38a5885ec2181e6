"""How many fuzzed examples a run tries: a CI-sized count by default, the full count with
RISKWATCH_FUZZ=full (10,000 payloads and 5,000 rule files, as docs/RELIABILITY.md says)."""

from __future__ import annotations

import os

FULL = os.environ.get("RISKWATCH_FUZZ") == "full"
PAYLOAD_EXAMPLES = 10_000 if FULL else 1_500
RULE_FILE_EXAMPLES = 5_000 if FULL else 750
