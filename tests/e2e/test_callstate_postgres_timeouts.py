"""Statement and lock time limits on a real PostgreSQL server (see pgserver.py): a statement that
runs too long or waits too long for a lock is cancelled by the server, the caller gets a clear
StorageError, and the connection pool carries on."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import needs_psycopg  # noqa: F401 - skips this module without psycopg
import psycopg
import pytest

from base.model import StateDatabase
from callstate import StorageError
from callstate.factory import open_database
from callstate.postgres import PostgresDatabase, PostgresSettings
from callstate.schema import MIGRATIONS

pytest_plugins = ("pgserver",)


def test_a_statement_beyond_statement_timeout_is_cancelled(pg_database: PostgresSettings) -> None:
    db = PostgresDatabase(replace(pg_database, statement_timeout=0.5), pool_size=1)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"ran longer than statement_timeout \(0\.5 s\), cancelled"):
            db.read(lambda tx: tx.one("SELECT pg_sleep(30)"))
        assert time.monotonic() - started < 10  # cancelled by the server, not after 30 s
        # The one pooled connection is usable again.
        assert db.read(lambda tx: tx.one("SELECT MAX(version) FROM schema_version")) == (MIGRATIONS[-1].version,)
        assert db.read(lambda tx: tx.one("SELECT pg_sleep(0.1)")) is not None
    finally:
        db.close()


def test_a_write_waiting_beyond_lock_timeout_is_cancelled(pg_database: PostgresSettings) -> None:
    db = PostgresDatabase(replace(pg_database, lock_timeout=0.5, statement_timeout=20), pool_size=1)
    s = pg_database
    holder = psycopg.connect(host=s.host, port=s.port, dbname=s.name, user=s.user, password=s.password)
    try:
        # Another client holds every row of the table in an open transaction.
        holder.execute("SELECT * FROM schema_version FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"waited longer than lock_timeout \(0\.5 s\)"):
            db.write(lambda tx: tx.run("UPDATE schema_version SET version = version"))
        assert time.monotonic() - started < 10
        holder.rollback()
        assert db.write(lambda tx: tx.run("UPDATE schema_version SET version = version")) >= 1
    finally:
        holder.close()
        db.close()


def test_the_configured_limits_are_set_on_every_connection(pg_database: PostgresSettings, tmp_path: Path) -> None:
    s = pg_database
    settings = StateDatabase(backend="postgresql", host=s.host, port=s.port, name=s.name, user=s.user,
                             statement_timeout=7, lock_timeout=3)
    db = open_database(settings, tmp_path, lambda name: s.password)
    try:
        shown = db.read(lambda tx: (tx.one("SHOW statement_timeout"), tx.one("SHOW lock_timeout")))
        assert shown == (("7s",), ("3s",))
    finally:
        db.close()
