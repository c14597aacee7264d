"""The platform's state database: SQLite (the default) or PostgreSQL for several nodes."""

from __future__ import annotations

import re
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc
from asterisk_conf.values import choice, host, integer, pattern, port
from base.model import STATE_BACKENDS, StateDatabase

STATE_DATABASE_KEYS = ("backend", "host", "port", "name", "user", "connect_timeout",
                       "statement_timeout", "lock_timeout")
# PostgreSQL names: at most 63 bytes; no quotes, spaces or '=' (they would change a libpq conninfo).
PG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
pg_name = pattern(PG_NAME, "letters, digits, '_' and '-', not starting with a digit, at most 63", "vipbx")


def state_database(chk: Checker, loc: Loc, value: Any) -> StateDatabase:
    """Where the call-state service keeps its state; the password is the secret `postgresql`."""
    f = Fields(chk, loc, value, STATE_DATABASE_KEYS, "state_database", "backend: postgresql")
    d = StateDatabase()
    return StateDatabase(
        backend=f.get("backend", choice(STATE_BACKENDS), d.backend) or d.backend,
        host=f.get("host", host, d.host) or d.host,
        port=f.get("port", port, d.port),
        name=f.get("name", pg_name, d.name) or d.name,
        user=f.get("user", pg_name, d.user) or d.user,
        connect_timeout=f.get("connect_timeout", integer(1, 300), d.connect_timeout),
        statement_timeout=f.get("statement_timeout", integer(1, 3600), d.statement_timeout),
        lock_timeout=f.get("lock_timeout", integer(1, 3600), d.lock_timeout),
    )
