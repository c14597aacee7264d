"""The idle connections of one database, shared by the threads of one process (any backend).

Fork-aware: a connection opened before a fork belongs to the parent. The child must not use it,
nor even close it (SQLite's file locks, PostgreSQL's shared socket); it is kept referenced so
that garbage collection does not close it either, and the child opens its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import StorageError

C = TypeVar("C")

# Connections inherited over a fork: referenced, never used or closed (see above).
_FORKED_AWAY: list[object] = []


class ConnectionPool(Generic[C]):
    def __init__(self, connect: Callable[[], C], close: Callable[[C], None], *,
                 reusable: Callable[[C], bool] = lambda conn: True) -> None:
        self._connect = connect
        self._close = close
        self._reusable = reusable  # False: drop it instead (closed, broken, mid-transaction)
        self._lock = threading.Lock()
        self._idle: list[C] = []
        self._pid = os.getpid()
        self._closed = False

    def acquire(self) -> C:
        """An idle connection that is still usable, else a new one."""
        with self._lock:
            if self._closed:
                raise StorageError("the state database has been closed")
            if self._pid != os.getpid():
                _FORKED_AWAY.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if self._reusable(conn):
                    return conn
        return self._connect()

    def release(self, conn: C) -> None:
        reusable = self._reusable(conn)
        with self._lock:
            ours = self._pid == os.getpid()
            if reusable and ours and not self._closed:
                self._idle.append(conn)
                return
        if ours:
            self._close(conn)
        else:
            _FORKED_AWAY.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)
