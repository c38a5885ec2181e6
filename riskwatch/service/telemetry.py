"""Prometheus metrics (SPEC §7), on a registry passed in — never the global one — so that
every daemon, and every test, has its own."""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from riskwatch import __version__
from riskwatch.core.lifecycle import Alert

POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Telemetry:
    """Every series riskwatch exposes on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.polls = Counter("riskwatch_polls", "Polls of the Tread.fi API by result.",
                             ["result"], registry=r)
        self.poll_duration = Histogram("riskwatch_poll_duration_seconds",
                                       "Time of one poll: fetch, evaluate, store.",
                                       buckets=POLL_BUCKETS, registry=r)
        self.last_success = Gauge("riskwatch_last_successful_poll_timestamp_seconds",
                                  "Unix time of the last successful poll.", registry=r)
        self.alerts = Gauge("riskwatch_alerts", "Alerts by state and severity.",
                            ["state", "severity"], registry=r)
        self.notifications = Counter("riskwatch_notifications",
                                     "Slack/terminal deliveries by result "
                                     "(sent, retry, failed).", ["result"], registry=r)
        self.actions = Counter("riskwatch_actions", "Leverage decisions by mode and outcome.",
                               ["mode", "outcome"], registry=r)
        self.rules_loaded = Gauge("riskwatch_rules_loaded", "Rules in force.", registry=r)
        self.skips = Counter("riskwatch_rule_skips",
                             "Rows a rule could not evaluate because an input was unknown.",
                             ["rule"], registry=r)
        self.outbox = Gauge("riskwatch_outbox_messages",
                            "Messages in the state store by status (pending, failed).",
                            ["status"], registry=r)
        self.leader = Gauge("riskwatch_leader", "1 while this process is the leader.",
                            registry=r)
        self.oldest_waiting = Gauge(
            "riskwatch_outbox_oldest_message_age_seconds",
            "Seconds the oldest message still waiting for Slack has waited (0: none).",
            registry=r)
        self.old_answers = Counter(
            "riskwatch_out_of_order_answers",
            "Account answers older than one already seen, ignored (time never goes back).",
            registry=r)
        self.folded = Counter(
            "riskwatch_outbox_folded_messages",
            "Waiting messages folded into the current state of their alerts (a backlog).",
            registry=r)
        self.heartbeats = Counter("riskwatch_heartbeats", "Heartbeat calls by result.",
                                  ["result"], registry=r)
        self.build = Info("riskwatch_build", "The running riskwatch.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        for result in ("ok", "error", "auth_error"):
            self.polls.labels(result)
        for result in ("sent", "retry", "failed"):
            self.notifications.labels(result)
        for mode in ("off", "dry-run", "enforce"):
            for outcome in ("acted", "dry-run", "skipped", "failed"):
                self.actions.labels(mode, outcome)
        for status in ("pending", "failed"):
            self.outbox.labels(status)
        for result in ("ok", "failed"):
            self.heartbeats.labels(result)
        self.count_alerts(())  # every state and severity at 0 from the first scrape

    def rules_in_force(self, names: Iterable[str]) -> None:
        """Every rule's skip counter exists from the first scrape, at 0 until it skips."""
        count = 0
        for name in names:
            self.skips.labels(name)
            count += 1
        self.rules_loaded.set(count)

    def count_alerts(self, alerts: Iterable[Alert]) -> None:
        """Set the alerts gauge from the current alert states."""
        tally = Tally((alert.state.value, alert.severity) for alert in alerts)
        for state in ("pending", "firing", "resolved"):
            for severity in ("info", "warning", "critical"):
                self.alerts.labels(state, severity).set(tally.get((state, severity), 0))
