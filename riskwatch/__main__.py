"""Allows ``python -m riskwatch``."""

from riskwatch.cli import main

main()
