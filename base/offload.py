"""Blocking work (database, spool, locks) off the event loop that serves calls.

One bounded thread pool for the whole process: a stalled database then holds at most that many
threads, and the loop keeps answering other calls' keys meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

MAX_WORKERS = 16  # SQLite serialises writers anyway; PostgreSQL pools hold fewer connections

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="vipbx-blocking")
    return _pool


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the shared pool; the caller's context variables go along."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_executor(), call)


def shutdown() -> None:
    """Wait for running work and drop the pool (a later call makes a new one)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
