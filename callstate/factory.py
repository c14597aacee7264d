"""Opening the call-state service on the backend the configuration names: the one way every
entry point (the ARI app, the CLI) gets it, so they all use the same database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.model import Config, StateDatabase
from base.secrets import POSTGRESQL_SECRET

from .db import Backend, Database
from .errors import StorageError
from .service import CallStateService

if TYPE_CHECKING:
    from .postgres import PostgresDatabase

DB_FILE_NAME = "state.sqlite3"
PASSWORD_SECRET = POSTGRESQL_SECRET  # the generated secret in secrets.json, never YAML

SecretGetter = Callable[[str], str]


def open_database(settings: StateDatabase, home: str | Path, secret: SecretGetter, *,
                  busy_timeout: float = 5.0) -> Backend:
    """SQLite `home/state.sqlite3`, or the PostgreSQL database `settings` describe."""
    if settings.backend == "sqlite":
        return Database(Path(home) / DB_FILE_NAME, busy_timeout=busy_timeout)
    if settings.backend != "postgresql":
        raise StorageError(f"unknown state database backend {settings.backend!r}")
    return open_postgres(settings, secret)


def open_postgres(settings: StateDatabase, secret: SecretGetter, *, migrate: bool = True) -> PostgresDatabase:
    """The PostgreSQL database `settings` describe; `migrate=False` leaves its schema as it is
    (backups and restores, which must not change a database before they mean to)."""
    try:
        # Imported here: psycopg is an optional extra that SQLite-only installations lack.
        from .postgres import PostgresDatabase, PostgresSettings
    except ImportError as exc:
        raise StorageError("the postgresql state database needs psycopg 3: install vipbx with "
                           f"the extra [postgresql] ({exc})") from exc
    return PostgresDatabase(PostgresSettings(
        host=settings.host, port=settings.port, name=settings.name, user=settings.user,
        password=secret(PASSWORD_SECRET), connect_timeout=settings.connect_timeout,
        statement_timeout=settings.statement_timeout, lock_timeout=settings.lock_timeout,
    ), migrate=migrate)


def open_service(config: Config, home: str | Path, secret: SecretGetter, *,
                 busy_timeout: float = 5.0, **options: Any) -> CallStateService:
    """The service on `config.platform.state_database`; `options` go to `CallStateService`
    (lockout_attempts, lockout_minutes, clock)."""
    db = open_database(config.platform.state_database, home, secret, busy_timeout=busy_timeout)
    try:
        return CallStateService(db, config, **options)
    except BaseException:
        db.close()
        raise
