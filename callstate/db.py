"""The storage contract (`Backend`, `Tx`, `Dialect`, migrations) and its SQLite implementation.

Everything above this module writes portable SQL with `?` parameters and calls `read` / `write`
with a function of a `Tx`. The contract a backend must keep: `write` transactions are
serializable (SQLite: `BEGIN IMMEDIATE` takes the single write lock up front, so a
read-modify-write never loses an update and never deadlocks upgrading a read lock; PostgreSQL,
in `postgres.py`, runs SERIALIZABLE and retries on serialization failures — which is why
transactions are functions, not `with` blocks: a function can be run again).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from base.private import private_file, tighten_sqlite

from .errors import StorageError
from .pool import ConnectionPool
from .schema import MIGRATIONS, Migration
from .times import to_text, utc_now

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any]



@dataclass(frozen=True)
class Dialect:
    """What differs between backends; kept to DDL words and how a write transaction starts."""

    name: str
    identity_pk: str  # an auto-numbered primary key column type
    begin_write: str
    begin_read: str


SQLITE = Dialect(
    name="sqlite",
    identity_pk="INTEGER PRIMARY KEY AUTOINCREMENT",  # AUTOINCREMENT: ids never reused, audit order stays
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN",
)


class Cursor(Protocol):
    """What `Tx` needs of a driver's cursor (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Statements(Protocol):
    """Runs one statement with `?` parameters: an sqlite3 connection, or a translating wrapper."""

    def execute(self, sql: str, params: Params, /) -> Cursor: ...


class Backend(Protocol):
    """What `CallStateService` needs of a database: `Database` (SQLite) and `PostgresDatabase`."""

    dialect: Dialect
    schema_version: int

    def read(self, work: Callable[[Tx], T]) -> T: ...

    def write(self, work: Callable[[Tx], T]) -> T: ...

    def close(self) -> None: ...


class Tx:
    """One transaction's statements. Parameters are always bound, never formatted into SQL."""

    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self._conn.execute(sql, params).fetchall())

    def run(self, sql: str, params: Params = ()) -> int:
        """Executes a change; the number of rows it touched."""
        return self._conn.execute(sql, params).rowcount


class Database:
    """A pool of SQLite connections to one file, shared by the threads of one process.

    Other processes (the CLI beside the ARI app) open their own `Database` on the same file; WAL
    lets their readers run while one writer commits, and `busy_timeout` makes writers queue
    instead of failing at once.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 5.0,
                 migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self.dialect = SQLITE
        self._busy_timeout = busy_timeout
        self._pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(self._connect, sqlite3.Connection.close)
        self._create_file()
        self._enable_wal()
        self.schema_version = self.write(lambda tx: migrate(tx, self.dialect, migrations))

    # ------------------------------------------------------------------ transactions

    def read(self, work: Callable[[Tx], T]) -> T:
        """`work` in one read transaction: a consistent snapshot, never blocked by a writer."""
        return self._run(self.dialect.begin_read, work)

    def write(self, work: Callable[[Tx], T]) -> T:
        """`work` in one short write transaction, committed if it returns, rolled back if it raises."""
        return self._run(self.dialect.begin_write, work)

    def _run(self, begin: str, work: Callable[[Tx], T]) -> T:
        conn = self._pool.acquire()
        try:
            try:
                conn.execute(begin)
            except sqlite3.Error as exc:
                raise StorageError(f"state database {self.path.name}: {exc}") from exc
            try:
                result = work(Tx(conn))
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"state database {self.path.name}: {exc}") from exc
                raise
            return result
        finally:
            self._pool.release(conn)

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: the driver starts no transactions of its own; we say BEGIN.
            # check_same_thread=False: a pooled connection serves one thread at a time, any thread.
            return sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open state database {self.path}: {exc}") from exc

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ set-up

    def _create_file(self) -> None:
        """Owner-only from the first byte: the audit trail is personal data."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)  # also a file an older version left readable
        tighten_sqlite(self.path)

    def _enable_wal(self) -> None:
        # WAL is a property of the file, set once; several processes opening a new file at the
        # same moment may find it locked, so retry within the busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        conn = self._connect()
        try:
            while True:
                try:
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise StorageError(f"state database {self.path}: {exc}") from exc
                    time.sleep(0.02)
        finally:
            conn.close()
        if str(mode).lower() != "wal":
            log.warning("state database %s: journal mode is %s, not WAL (file system without "
                        "shared memory?); readers will wait for writers", self.path, mode)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # nothing open (BEGIN or the failed statement already ended it)


def migrate(tx: Tx, dialect: Dialect, migrations: Sequence[Migration]) -> int:
    """Applies the migrations this database has not seen, in order; the resulting schema version.

    The caller runs this in one transaction that no other migrator can interleave with (SQLite:
    the write lock; PostgreSQL: an advisory lock), so each migration is applied once."""
    tx.run("CREATE TABLE IF NOT EXISTS schema_version ("
           "version INTEGER NOT NULL PRIMARY KEY, description VARCHAR(200) NOT NULL, "
           "applied_at VARCHAR(32) NOT NULL)")
    row = tx.one("SELECT MAX(version) FROM schema_version")
    current = int(row[0]) if row and row[0] is not None else 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        # An older program must not write into a schema it does not know.
        raise StorageError(f"the state database has schema version {current}, newer than this "
                           f"program's {latest}: upgrade vipbx")
    for migration in migrations:
        if migration.version <= current:
            continue
        for statement in migration.statements:
            tx.run(statement.format(identity_pk=dialect.identity_pk))
        tx.run("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
               (migration.version, migration.description, to_text(utc_now())))
        log.info("state database: applied migration %d (%s)", migration.version, migration.description)
        current = migration.version
    return current
