"""The cyclic garbage collector paused while a large, acyclic structure is built.

Rendering, checking and diffing a node's files make millions of small objects (lines, tuples,
sections) that reference counting frees. Each allocation burst triggers collections that rescan
them, and everything else the process holds (a Config of 100,000 users), again and again: a
third of the time of a one-user change at 20,000 users a node."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
