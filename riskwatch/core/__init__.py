"""The functional core of a poll, pure: snapshot, measures, rules, evaluation, lifecycle,
built-in alerts, silences and leverage decisions. No I/O, no clock, no globals; nothing
here imports the shell (tests/unit/test_layout.py holds it to that)."""
