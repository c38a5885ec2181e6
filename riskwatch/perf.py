"""Keeping the cyclic garbage collector out of the hot path.

A poll makes hundreds of thousands of small, acyclic objects (parsed JSON, Decimals,
rows, observations). Each full collection walks every live object, so at 10,000
accounts the collector alone made a poll grow faster than linearly. Reference counting
frees these objects anyway; the collector is paused while a poll computes and runs
again afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause automatic cyclic collection for the block (re-entrant; restores the old state)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
