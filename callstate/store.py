"""What the three call-state services share: one database, the configuration in force, the clock,
and the one way a change is written (its audit rows in the same transaction, log lines after the
commit).

`VoicemailState`, `RoutingState` and `PresenceState` each hold the same `StateStore`, so a
`reload` reaches all three at once and they never open a second connection pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from base.model import Config

from . import audit as audit_log
from .audit import AuditEntry
from .db import Backend, Tx
from .errors import SettingsError
from .times import Clock, aware_utc
from .users import Origin

# One logger for every service: the name operators filter on stayed the same through the split.
log = logging.getLogger("callstate.service")

T = TypeVar("T")

AUDIT_LIMIT_MAX = 10_000


@dataclass(frozen=True)
class Event:
    """An audit row about to be written, kept to log the same facts after the commit."""

    event: str
    field: str
    old: str | None
    new: str | None


class StateStore:
    def __init__(self, db: Backend, config: Config, clock: Clock) -> None:
        self.db = db
        self._config = config
        self._clock = clock

    @property
    def config(self) -> Config:
        return self._config

    def reload(self, config: Config) -> None:
        """Swap in a new configuration; a call in progress keeps the one it started with."""
        self._config = config  # one reference assignment: atomic for other threads

    def now(self) -> datetime:
        return aware_utc(self._clock())

    def read(self, work: Callable[[Tx], T]) -> T:
        return self.db.read(work)

    def write(self, work: Callable[[Tx], T]) -> T:
        return self.db.write(work)

    @staticmethod
    def record(tx: Tx, now: datetime, tenant_id: str, user_id: str, origin: Origin,
               events: list[Event]) -> None:
        """The audit rows of `events`, inside the transaction that made the change."""
        for e in events:
            audit_log.record(tx, now, tenant_id, user_id, origin, e.event, e.field, e.old, e.new)

    def audit(self, tenant_id: str | None = None, user_id: str | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit rows, newest first, optionally of one tenant and/or user."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise SettingsError(f"limit must be 1 to {AUDIT_LIMIT_MAX}, not {limit!r}")
        return self.db.read(lambda tx: audit_log.query(tx, tenant_id, user_id, limit))

    def close(self) -> None:
        self.db.close()


def log_changes(tenant_id: str, user_id: str, origin: Origin, events: list[Event]) -> None:
    """One log line per changed field, after the commit."""
    for e in events:
        log.info("%s/%s %s: %s -> %s (by %s via %s)", tenant_id, user_id, e.field, e.old, e.new,
                 origin.actor, origin.source)
