"""The PostgreSQL backend: the same contract as `db.Database`, for several Asterisk nodes sharing
one state database.

Writes run SERIALIZABLE, so a read-modify-write never loses an update; PostgreSQL resolves
conflicts by failing one transaction (serialization failure or deadlock), which is then run again
after a short random pause. That is why transactions are functions. Reads run REPEATABLE READ,
READ ONLY: one consistent snapshot, and they never wait for or fail because of a writer.

This is the only module that imports the driver, psycopg 3, an optional extra
(`vipbx[postgresql]`): `factory.py` imports this module only when the configuration asks for it.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from .db import Dialect, Params, T, Tx, migrate
from .errors import StorageError
from .pool import ConnectionPool
from .schema import MIGRATIONS, Migration

log = logging.getLogger(__name__)

POSTGRESQL = Dialect(
    name="postgresql",
    # GENERATED ALWAYS: ids come from the sequence only, so audit order cannot be forged by a
    # client that writes its own id.
    identity_pk="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    begin_write="BEGIN ISOLATION LEVEL SERIALIZABLE",
    begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
)
# Migrations lock out each other (not the normal traffic) with this advisory lock. READ COMMITTED:
# a statement after the lock must see what the node that held it before committed; a serializable
# snapshot would be older than the lock wait.
BEGIN_MIGRATION = "BEGIN ISOLATION LEVEL READ COMMITTED"
MIGRATION_LOCK = 0x7669_7062_7800  # b"vipbx\0": any fixed number, the same on every node

# Failures that mean "another transaction won, run yours again".
_RETRYABLE = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)

Connection = psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class PostgresSettings:
    host: str = "127.0.0.1"
    port: int = 5432
    name: str = "vipbx"  # the database
    user: str = "vipbx"
    password: str = field(default="", repr=False)  # never in a repr, a log line or an error
    connect_timeout: int = 5  # seconds
    # The server cancels a statement that runs longer, or waits longer for a lock: a stalled
    # database costs a call a few seconds and a clear error, never a hung IVR or pool slot.
    statement_timeout: float = 10.0  # seconds
    lock_timeout: float = 5.0  # seconds

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}/{self.name}"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of a transaction that lost a conflict, with jittered exponential pauses."""

    tries: int = 12
    first_pause: float = 0.005  # seconds
    max_pause: float = 0.25

    def pause(self, attempt: int) -> float:
        # Jitter: writers that collided must not collide again on the next round.
        return random.uniform(0, min(self.max_pause, self.first_pause * 2 ** attempt))


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """`?` placeholders → psycopg's `%s`; a literal `%` becomes `%%` so psycopg keeps it.

    A `?` inside a quoted literal or identifier stays as it is."""
    return _QMARK_OR_QUOTED.sub(_translate, sql.replace("%", "%%"))


_QMARK_OR_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?")


def _translate(match: re.Match[str]) -> str:
    return "%s" if match.group(0) == "?" else match.group(0)


class _Statements:
    """`Tx`'s view of a psycopg connection: `?` SQL in, a cursor out."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params, /) -> psycopg.Cursor[TupleRow]:
        # Always a sequence, never None: with None psycopg would send `%%` unconverted.
        return self._conn.execute(to_psycopg(sql), tuple(params))


class CopyTx(Tx):
    """A transaction that can also stream whole tables in PostgreSQL's COPY text format (backups).
    The COPY statement is sent as it is: its table and column names must come from the schema."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(_Statements(conn))
        self._raw = conn

    def copy_out(self, sql: str) -> Iterator[bytes]:
        """What `COPY ... TO STDOUT` sends, in chunks."""
        with self._raw.cursor() as cursor, cursor.copy(sql) as copy:
            for chunk in copy:
                yield bytes(chunk)

    def copy_in(self, sql: str, chunks: Iterable[bytes]) -> None:
        """Feeds `COPY ... FROM STDIN`."""
        with self._raw.cursor() as cursor, cursor.copy(sql) as copy:
            for chunk in chunks:
                copy.write(chunk)


def _plain_tx(conn: Connection) -> Tx:
    return Tx(_Statements(conn))


class PostgresDatabase:
    """A bounded pool of connections to one PostgreSQL database, shared by a process's threads.

    Several processes and nodes open their own; the database serializes their writes.
    """

    def __init__(self, settings: PostgresSettings, *, pool_size: int = 8,
                 retry: RetryPolicy = RetryPolicy(),
                 migrations: Sequence[Migration] = MIGRATIONS, migrate: bool = True) -> None:
        """`migrate=False` opens the database as it is (a restore migrates inside its own
        transaction); `schema_version` is then what the database has, 0 when it has no schema."""
        self.settings = settings
        self.dialect = POSTGRESQL
        self._retry = retry
        self._slots = threading.BoundedSemaphore(pool_size)  # the server has few connections
        self._pool: ConnectionPool[Connection] = ConnectionPool(self._connect, psycopg.Connection.close,
                                                                reusable=_reusable)
        try:
            if migrate:
                self.schema_version = self._run(BEGIN_MIGRATION, lambda tx: self._migrate(tx, migrations))
            else:
                self.schema_version = self._run(self.dialect.begin_read, current_version)
        except BaseException:
            self.close()  # e.g. a newer schema: no connection is left behind
            raise

    # ------------------------------------------------------------------ transactions

    def read(self, work: Callable[[Tx], T]) -> T:
        """`work` in one read-only snapshot."""
        return self._run(self.dialect.begin_read, work)

    def write(self, work: Callable[[Tx], T]) -> T:
        """`work` in one SERIALIZABLE transaction; run again if it lost to a concurrent one."""
        return self._run(self.dialect.begin_write, work)

    def snapshot(self, work: Callable[[CopyTx], T]) -> T:
        """`work` in one REPEATABLE READ READ ONLY transaction without the statement limit: one
        consistent view of every table, however long copying them takes (backups). A read-only
        snapshot never loses to a writer, so it is not retried."""
        def unlimited(tx: CopyTx) -> T:
            tx.one("SELECT set_config('statement_timeout', '0', true)")
            return work(tx)

        return self._single(self.dialect.begin_read, unlimited)

    def replace_all(self, work: Callable[[CopyTx], T], *, lock_timeout: float = 30.0) -> T:
        """`work` in one transaction behind the migration lock, at READ COMMITTED and without the
        statement limit: a restore drops, re-creates and fills the tables in it, so every other
        session sees the old state or the restored one, never a mix. `lock_timeout` bounds the
        wait for sessions that still use the tables (a running `vipbx serve`)."""
        def locked(tx: CopyTx) -> T:
            tx.one("SELECT set_config('statement_timeout', '0', true)")
            tx.one("SELECT set_config('lock_timeout', ?, true)", (str(_ms(lock_timeout)),))
            tx.one("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            return work(tx)

        return self._single(BEGIN_MIGRATION, locked)

    def _single(self, begin: str, work: Callable[[CopyTx], T]) -> T:
        try:
            return self._once(begin, work, CopyTx)
        except _RETRYABLE as exc:
            raise self._error(exc) from exc

    def _run(self, begin: str, work: Callable[[Tx], T]) -> T:
        for attempt in range(self._retry.tries):
            try:
                return self._once(begin, work)
            except _RETRYABLE as exc:
                if attempt + 1 >= self._retry.tries:
                    raise self._error(exc, f"gave up after {self._retry.tries} tries") from exc
                log.debug("state database: %s; trying again", type(exc).__name__)
                time.sleep(self._retry.pause(attempt))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _once(self, begin: str, work: Callable[[Any], T],
              make_tx: Callable[[Connection], Tx] = _plain_tx) -> T:
        with self._slots:
            conn = self._pool.acquire()
            try:
                try:
                    conn.execute(begin)
                except psycopg.OperationalError:
                    # A pooled connection the server has dropped (e.g. restarted): nothing ran
                    # yet, so one fresh connection is a safe second chance.
                    conn.close()
                    conn = self._connect()
                    conn.execute(begin)
                try:
                    result = work(make_tx(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                return result
            except _RETRYABLE:
                raise
            except pgerrors.LockNotAvailable as exc:
                raise self._error(exc, f"waited longer than lock_timeout "
                                       f"({self.settings.lock_timeout:g} s) for a lock, cancelled") from exc
            except pgerrors.QueryCanceled as exc:
                raise self._error(exc, f"a statement ran longer than statement_timeout "
                                       f"({self.settings.statement_timeout:g} s), cancelled") from exc
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            finally:
                self._pool.release(conn)

    def _migrate(self, tx: Tx, migrations: Sequence[Migration]) -> int:
        # Schema changes may take long on a large table, and another node's may hold the lock
        # below: no statement or lock limit in this transaction.
        tx.run("SET LOCAL statement_timeout = 0")
        tx.run("SET LOCAL lock_timeout = 0")
        # Two nodes starting at once: the second waits here, then finds the migrations applied.
        tx.one("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        return migrate(tx, self.dialect, migrations)

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Connection:
        s = self.settings
        try:
            # autocommit: the driver starts no transactions of its own; `_once` says BEGIN.
            return psycopg.connect(host=s.host, port=s.port, dbname=s.name, user=s.user,
                                   password=s.password, connect_timeout=s.connect_timeout,
                                   application_name="vipbx", autocommit=True,
                                   options=f"-c statement_timeout={_ms(s.statement_timeout)} "
                                           f"-c lock_timeout={_ms(s.lock_timeout)}")
        except psycopg.Error as exc:
            # `from None`: the driver's exception is not chained, only its (masked) text kept.
            raise self._error(exc, "cannot connect") from None

    def close(self) -> None:
        self._pool.close()

    # ------------------------------------------------------------------ errors

    def _error(self, exc: BaseException, what: str = "") -> StorageError:
        text = " ".join(str(exc).split())  # the driver's messages span lines
        if self.settings.password:
            text = text.replace(self.settings.password, "********")
        prefix = f"state database {self.settings.describe()}" + (f": {what}" if what else "")
        return StorageError(f"{prefix}: {text}")


def current_version(tx: Tx) -> int:
    """The schema version of the database, 0 when it has none (no `schema_version` table)."""
    row = tx.one("SELECT to_regclass('schema_version') IS NOT NULL")
    if not row or not row[0]:
        return 0
    found = tx.one("SELECT MAX(version) FROM schema_version")
    return int(found[0]) if found and found[0] is not None else 0


def _ms(seconds: float) -> int:
    """A timeout setting in milliseconds; 0 would mean none, so at least 1."""
    return max(1, round(seconds * 1000))


def _reusable(conn: Connection) -> bool:
    """Back into the pool only if alive and outside any transaction."""
    return not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE


def _rollback(conn: Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass  # the connection is gone; `_release` will not pool it
