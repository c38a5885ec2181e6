"""Rule files: bounded YAML with positions, loading with ``file:line:col`` problems, the
JSON Schema, and the rule test runner."""
