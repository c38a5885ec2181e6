"""The rules in force: reloaded on SIGHUP or when the files change, the old kept if the new fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from riskwatch.core.evaluate import CompiledRule
from riskwatch.rulefiles.loader import rule_files
from riskwatch.service.telemetry import Telemetry
from riskwatch.service.wiring import load_compiled_rules

log = structlog.get_logger("riskwatch.daemon")


class RuleSource:
    """Holds the compiled rules and the reason the last reload failed, if it did."""

    def __init__(self, path: Path, rules: Sequence[CompiledRule], telemetry: Telemetry) -> None:
        self.path = path
        self.rules = list(rules)
        self.error: str | None = None  # why the last reload failed; the old rules stay
        self.telemetry = telemetry
        self._reload_requested = False
        self._signature = rules_signature(path)
        telemetry.rules_in_force(c.rule.name for c in self.rules)

    def request_reload(self) -> None:
        """Reload the rules before the next poll (SIGHUP)."""
        self._reload_requested = True

    def refresh(self) -> list[CompiledRule]:
        """The rules for this poll: reloaded first when asked or when the files changed.

        Whatever makes a reload fail, the previous rules stay in force and ``error`` says why.
        """
        signature = rules_signature(self.path)
        if not self._reload_requested and signature == self._signature:
            return self.rules
        self._reload_requested = False
        self._signature = signature
        try:
            rules = load_compiled_rules([self.path])
        except Exception as error:  # whatever the failure, the old rules stay in force
            self.error = (str(error) or type(error).__name__)[:2000]
            log.error("rules reload failed; the previous rules stay in force", error=self.error)
            return self.rules
        self.rules = rules
        self.error = None
        self.telemetry.rules_in_force(c.rule.name for c in self.rules)
        log.info("rules reloaded", rules=len(self.rules))
        return self.rules


def rules_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the rule files: a change means reload."""
    try:
        files = rule_files([path]) if path.exists() else []
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:
        return ()
