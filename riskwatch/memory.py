"""Keeping the cyclic garbage collector out of the hot path.

A poll makes hundreds of thousands of small, acyclic objects (parsed JSON, Decimals,
rows, observations). Each full collection walks every live object, so at 10,000
accounts the collector alone made a poll grow faster than linearly. Reference counting
frees these objects anyway; the collector is paused while a poll computes and runs
again afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
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


def _load_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    return trim


_TRIM = _load_trim()


def release_memory() -> None:
    """Hand the heap that a poll's parsing freed back to the system (glibc's malloc_trim).

    Without it the resident size stays at the high-water mark of the largest response.
    """
    if _TRIM is not None:
        _TRIM(0)
