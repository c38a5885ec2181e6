"""The JSON Schema of a rule file, generated from the rule models (shipped in ``schema/``)."""

from __future__ import annotations

from typing import Any

from riskwatch.core.history import CHANGE_METRICS
from riskwatch.core.measures import ALL_METRICS, scopes_of
from riskwatch.core.rules import BUILTIN_RULES, SEVERITIES, RuleFile


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, generated from the models (shipped in ``schema/``).

    It judges a file as the loader does, except for what JSON Schema cannot express:
    thresholds in order (it cannot compare two values) and rule names unique.
    """
    schema = RuleFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "riskwatch rule file"
    schema["$comment"] = ("`riskwatch rules validate` also checks what JSON Schema cannot "
                          "state: thresholds in order, rule names unique across files, and "
                          "window and change between 0s and the 90 days history is kept.")
    rule = schema["$defs"]["Rule"]
    properties = rule["properties"]
    properties["metric"]["enum"] = list(ALL_METRICS)
    properties["name"]["not"] = {"enum": sorted(BUILTIN_RULES)}
    for key, default in (("for", "0s"), ("keep_firing_for", "0s"), ("repeat", "1h"),
                         ("hysteresis", 0)):
        properties[key]["default"] = default
    levels = schema["$defs"]["Levels"]
    levels["minProperties"] = 1
    for level in levels["properties"].values():
        level.pop("default", None)

    def scope_is(*scopes: str) -> dict[str, Any]:
        return {"properties": {"scope": {"enum": list(scopes)}}, "required": ["scope"]}

    def action_at(level: str) -> dict[str, Any]:
        at: dict[str, Any] = {"const": level}
        action = {"type": "object", "properties": {"at": at}}
        if level != "critical":  # critical is the default
            action["required"] = ["at"]
        return {"if": {"properties": {"action": action}, "required": ["action"]},
                "then": {"properties": {"levels": {"required": [level]}}}}

    rule["allOf"] = [
        *({"if": scope_is(scope),
           "then": {"properties": {"metric": {"enum": [m for m in ALL_METRICS
                                                       if scope in scopes_of(m)]}}}}
          for scope in ("account", "asset", "position")),
        {"if": scope_is("account"),
         "then": {"properties": {"match": {"properties": {"symbol": {"type": "null"},
                                                          "market_type": {"type": "null"}}}}}},
        {"if": scope_is("account", "asset"),
         "then": {"properties": {"action": {"type": "null"}}}},
        *(action_at(level) for level in SEVERITIES),
        *_history_conditions(),
    ]
    return schema


def _given(key: str) -> dict[str, Any]:
    """The rule sets ``key`` to something other than null."""
    return {"properties": {key: {"not": {"type": "null"}}}, "required": [key]}


def _history_conditions() -> list[dict[str, Any]]:
    """drawdown needs a window and only it takes one; change fits the metrics history keeps."""
    drawdown = {"properties": {"metric": {"const": "drawdown"}}, "required": ["metric"]}
    return [
        {"if": drawdown, "then": _given("window")},
        {"if": _given("window"), "then": drawdown},
        {"if": _given("change"),
         "then": {"properties": {"scope": {"const": "account"},
                                 "metric": {"enum": list(CHANGE_METRICS)}}}},
    ]
