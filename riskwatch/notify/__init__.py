"""Delivery: rendering notices, the Slack and terminal sinks, and the outbox that retries."""
