"""Consistent copies of the call-state database (`vipbx backup`), and loading them back
(`vipbx restore`).

- SQLite: the online backup API copies the database in one step, inside one read transaction, so
  the copy is one committed state however the service writes meanwhile (in WAL mode writers never
  wait for it). It is loaded back the same way into an existing database file, so processes that
  have the file open see the restored state (replacing the file under them would leave them
  writing into a deleted one); a home without a database gets the copy renamed into place.
- PostgreSQL: `COPY <table> TO STDOUT` of every table of the schema, all in one REPEATABLE READ
  READ ONLY transaction (one snapshot). A restore drops the tables, migrates to the dump's schema
  version, copies the rows in, resets the identity sequences and migrates forward, all in one
  transaction behind the migration lock: other sessions see the old state or the restored one.

A dump of a newer schema than this program's is refused, as opening such a database is; an older
one is loaded, then migrated forward.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import quote

from base.durable import fsync_dir
from base.model import StateDatabase
from base.private import private_file, tighten_sqlite

from .db import Database, Tx, migrate
from .errors import StorageError
from .factory import DB_FILE_NAME, open_postgres
from .schema import MIGRATIONS, Migration

if TYPE_CHECKING:
    from .postgres import CopyTx, PostgresDatabase

SecretGetter = Callable[[str], str]

SQLITE_FILE = DB_FILE_NAME  # the one file of a SQLite dump
COPY_SUFFIX = ".copy"  # a PostgreSQL dump: one file per table, in COPY's text format
_CREATE_TABLE = re.compile(r"\s*CREATE TABLE (\w+)", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")  # names that go into SQL text unbound
_CHUNK = 1 << 16


class StateNotEmpty(StorageError):
    """The database to restore into already holds call state."""


@dataclass(frozen=True)
class Dump:
    """What a dump holds: the backend it came from, its schema version, rows per table, and for
    PostgreSQL the columns of each table in the order of its COPY file."""

    backend: str
    schema_version: int
    rows: dict[str, int]
    columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        """The dump's file names, in the order they are loaded."""
        if self.backend == "sqlite":
            return [SQLITE_FILE]
        return [table + COPY_SUFFIX for table in self.columns]


def latest_version(migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def check_restorable(version: int) -> None:
    """The migrations' rule: a schema newer than this program's is never written into."""
    if version > latest_version():
        raise StorageError(f"the call state has schema version {version}, newer than this "
                           f"program's {latest_version()}: use a newer vipbx")


def schema_tables(version: int) -> list[str]:
    """The tables of schema `version`, in the order the migrations made them (`schema_version`
    first): the same list on every backend."""
    tables = ["schema_version"]
    for migration in MIGRATIONS:
        if migration.version > version:
            break
        for statement in migration.statements:
            made = _CREATE_TABLE.match(statement)
            if made:
                tables.append(made.group(1))
    return tables


def _quoted(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise StorageError(f"unexpected table or column name {name!r}")
    return f'"{name}"'


# ---------------------------------------------------------------------------------- dumping


def dump(settings: StateDatabase, home: Path, secret: SecretGetter, folder: Path) -> Dump:
    """A consistent copy of the call state that `settings` name, as files in `folder`."""
    if settings.backend == "sqlite":
        return dump_sqlite(Path(home) / DB_FILE_NAME, folder)
    db = open_postgres(settings, secret, migrate=False)  # a backup never changes the schema
    try:
        return dump_postgres(db, folder)
    finally:
        db.close()


def dump_sqlite(db_file: Path, folder: Path, *, busy_timeout: float = 10.0) -> Dump:
    target = private_file(folder / SQLITE_FILE)
    if not db_file.exists():
        # A home whose service never ran: an empty database of this program's schema.
        target.unlink()
        Database(target).close()
    else:
        try:
            with closing(sqlite3.connect(db_file, timeout=busy_timeout)) as source, \
                    closing(sqlite3.connect(target)) as copy:
                source.backup(copy)  # all pages in one step: one read transaction, one state
        except sqlite3.Error as exc:
            raise StorageError(f"state database {db_file}: {exc}") from exc
    try:
        with closing(sqlite3.connect(target, isolation_level=None)) as copy:
            # The copy must be one self-contained file: no write-ahead log beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
            checked = copy.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise StorageError(f"copy of the state database: {exc}") from exc
    if checked != "ok":
        raise StorageError(f"state database {db_file} is damaged: {checked}")
    version, rows = describe_sqlite(target)
    if version > latest_version():
        raise StorageError(f"state database {db_file} has schema version {version}, newer than this "
                           f"program's {latest_version()}: back it up with the newer vipbx")
    return Dump("sqlite", version, rows)


def describe_sqlite(path: Path) -> tuple[int, dict[str, int]]:
    """(schema version, rows per table) of a SQLite call-state file."""
    try:
        # Read-only: describing a database never creates or changes one.
        with closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as conn:
            tables = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            rows = {table: int(conn.execute(f"SELECT COUNT(*) FROM {_quoted(table)}").fetchone()[0])
                    for table in tables}
            version = 0
            if "schema_version" in rows:
                found = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                version = int(found) if found is not None else 0
    except sqlite3.Error as exc:
        raise StorageError(f"state database {path.name}: {exc}") from exc
    return version, rows


def dump_postgres(db: PostgresDatabase, folder: Path) -> Dump:
    from .postgres import current_version  # psycopg is an optional extra

    def copy_tables(tx: CopyTx) -> Dump:
        version = current_version(tx)
        if version > latest_version():
            raise StorageError(f"the state database has schema version {version}, newer than this "
                               f"program's {latest_version()}: back it up with the newer vipbx")
        rows: dict[str, int] = {}
        columns: dict[str, list[str]] = {}
        for table in schema_tables(version):
            names = [str(row[0]) for row in tx.all(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = ? ORDER BY ordinal_position", (table,))]
            if not names:
                raise StorageError(f"the state database lacks the table {table} of schema version {version}")
            counted = tx.one(f"SELECT COUNT(*) FROM {_quoted(table)}")
            rows[table] = int(counted[0]) if counted else 0
            columns[table] = names
            listed = ", ".join(map(_quoted, names))
            path = private_file(folder / (table + COPY_SUFFIX))
            with open(path, "wb") as out:
                out.writelines(tx.copy_out(f"COPY {_quoted(table)} ({listed}) TO STDOUT"))
        return Dump("postgresql", version, rows, columns)

    return db.snapshot(copy_tables)


# ---------------------------------------------------------------------------------- loading


def state_rows(settings: StateDatabase, home: Path, secret: SecretGetter) -> int:
    """Rows of call state already in the target (the schema's own bookkeeping not counted)."""
    if settings.backend == "sqlite":
        path = Path(home) / DB_FILE_NAME
        if not path.exists():
            return 0
        _, rows = describe_sqlite(path)
        return sum(count for table, count in rows.items() if table != "schema_version")
    db = open_postgres(settings, secret, migrate=False)
    try:
        return db.read(_postgres_rows)
    finally:
        db.close()


def _postgres_rows(tx: Tx) -> int:
    total = 0
    for table in schema_tables(latest_version())[1:]:
        exists = tx.one("SELECT to_regclass(?) IS NOT NULL", (table,))
        if exists and exists[0]:
            counted = tx.one(f"SELECT COUNT(*) FROM {_quoted(table)}")
            total += int(counted[0]) if counted else 0
    return total


class Loader(Protocol):
    """Loading a dump in two steps, so the caller can put the spool in place between them:
    `prepare` does all that can fail without changing the target; `install` changes it at once."""

    def prepare(self) -> None: ...

    def install(self) -> int: ...


def loader(settings: StateDatabase, home: Path, secret: SecretGetter, folder: Path, dump: Dump, *,
           replace: bool) -> Loader:
    """How `dump` (its files in `folder`, which must be inside `home` for SQLite) goes into the
    call state `settings` name; `replace`: even over existing rows."""
    if dump.backend != settings.backend:
        raise StorageError(f"the dump holds a {dump.backend} call state and this configuration uses "
                           f"{settings.backend}: restore it with a configuration of the same backend")
    check_restorable(dump.schema_version)
    if settings.backend == "sqlite":
        return _SqliteLoader(folder / SQLITE_FILE, Path(home) / DB_FILE_NAME)
    return _PostgresLoader(settings, secret, folder, dump, replace)


class _SqliteLoader:
    def __init__(self, staged: Path, target: Path, busy_timeout: float = 10.0) -> None:
        self.staged, self.target, self.busy_timeout = staged, target, busy_timeout

    def prepare(self) -> None:
        version, _ = describe_sqlite(self.staged)
        check_restorable(version)
        Database(self.staged).close()  # migrated forward when older
        try:
            with closing(sqlite3.connect(self.staged, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=DELETE")  # one file to rename: no log beside it
        except sqlite3.Error as exc:
            raise StorageError(f"restored state database: {exc}") from exc

    def install(self) -> int:
        if not self.target.exists():
            os.rename(self.staged, self.target)
            fsync_dir(self.target.parent)
        else:
            try:
                with closing(sqlite3.connect(self.staged)) as source, \
                        closing(sqlite3.connect(self.target, timeout=self.busy_timeout)) as live:
                    # One write transaction on the live file: its readers see all or nothing.
                    source.backup(live)
            except sqlite3.Error as exc:
                raise StorageError(f"state database {self.target}: {exc}") from exc
        tighten_sqlite(self.target)
        return describe_sqlite(self.target)[0]


class _PostgresLoader:
    def __init__(self, settings: StateDatabase, secret: SecretGetter, folder: Path, dump: Dump,
                 replace: bool) -> None:
        self.settings, self.secret, self.folder, self.dump, self.replace = settings, secret, folder, dump, replace
        self._db: PostgresDatabase | None = None

    def prepare(self) -> None:
        for name in self.dump.files:
            if not (self.folder / name).is_file():
                raise StorageError(f"the dump lacks {name}")
        for table, names in self.dump.columns.items():
            for name in (table, *names):
                _quoted(name)
        self._db = open_postgres(self.settings, self.secret, migrate=False)

    def install(self) -> int:
        assert self._db is not None, "prepare() first"
        try:
            return self._db.replace_all(self._load)
        finally:
            self._db.close()

    def _load(self, tx: CopyTx) -> int:
        from .postgres import POSTGRESQL  # psycopg is an optional extra

        known = schema_tables(latest_version())
        if not self.replace and _postgres_rows(tx):
            raise StateNotEmpty("the state database already holds call state")
        for table in reversed(known):
            tx.run(f"DROP TABLE IF EXISTS {_quoted(table)}")
        migrate(tx, POSTGRESQL, [m for m in MIGRATIONS if m.version <= self.dump.schema_version])
        tx.run("DELETE FROM schema_version")  # the dump's own history comes back below
        for table, names in self.dump.columns.items():
            listed = ", ".join(map(_quoted, names))
            with open(self.folder / (table + COPY_SUFFIX), "rb") as source:
                tx.copy_in(f"COPY {_quoted(table)} ({listed}) FROM STDIN", _chunks(source))
        # COPY writes ids without drawing them: each identity sequence goes on after the largest.
        for table, column in tx.all("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = current_schema() AND is_identity = 'YES'"):
            tx.one(f"SELECT setval(pg_get_serial_sequence(?, ?), "
                   f"COALESCE((SELECT MAX({_quoted(column)}) FROM {_quoted(table)}), 0) + 1, false)",
                   (table, column))
        return migrate(tx, POSTGRESQL, MIGRATIONS)


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(_CHUNK):
        yield chunk


