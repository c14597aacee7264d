"""The call-state service on a real PostgreSQL server (see pgserver.py for the server).

Every test of tests/unit/test_callstate.py not marked `sqlite_only` runs here again, with
`make_service` and `raw_db` on a fresh PostgreSQL database per test. Below them: what only
PostgreSQL has — several nodes on one database, serialization retries, concurrent first starts,
connection errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import needs_psycopg  # noqa: F401 - skips this module without psycopg
import psycopg
import pytest
from pgserver import PgRaw, rerun_on_postgresql, unit_module

from base.model import Config, StateDatabase
from callstate import (
    CallStateService,
    PinStatus,
    StorageError,
    VoicemailSettings,
    open_service,
)
from callstate.db import Tx
from callstate.postgres import (
    PostgresDatabase,
    PostgresSettings,
    RetryPolicy,
    to_psycopg,
)
from callstate.schema import MIGRATIONS

pytest_plugins = ("pgserver",)

base = unit_module("test_callstate")
CONFIG: Config = base.CONFIG

# The backend-independent tests of the unit module, collected here as tests of this module,
# with `make_service` and `raw_db` on a fresh PostgreSQL database per test.
globals().update(rerun_on_postgresql(base))


def test_the_reused_tests_run_on_postgresql(svc: CallStateService, raw_db: PgRaw) -> None:
    assert isinstance(raw_db, PgRaw)
    svc.update_voicemail_settings("acme", "anna", actor="op", source="cli", play_activity=True)
    assert [row[:3] for row in raw_db.rows("voicemail_settings")] == [("acme", "anna", 1)]


def node_config(settings: PostgresSettings) -> Config:
    """CONFIG with `platform.state_database` pointing at the test database, as YAML would."""
    state = StateDatabase(backend="postgresql", host=settings.host, port=settings.port,
                          name=settings.name, user=settings.user, connect_timeout=5)
    return replace(CONFIG, platform=replace(CONFIG.platform, state_database=state))


def secrets_of(settings: PostgresSettings) -> Callable[[str], str]:
    def get(name: str) -> str:
        assert name == "postgresql", name
        return settings.password

    return get


# ---------------------------------------------------------------------- SQL and errors


@pytest.mark.parametrize(("given", "sent"), [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT '100%' || ?", "SELECT '100%%' || %s"),
    ("SELECT 'why?', \"odd?name\", ?", "SELECT 'why?', \"odd?name\", %s"),
    ("SELECT 'it''s?', ?", "SELECT 'it''s?', %s"),
    ("SELECT 1", "SELECT 1"),
])
def test_placeholders_become_psycopg_ones(given: str, sent: str) -> None:
    assert to_psycopg(given) == sent


def test_literal_percent_and_question_marks_reach_the_server(pg_database: PostgresSettings) -> None:
    db = PostgresDatabase(pg_database)
    try:
        assert db.read(lambda tx: tx.one("SELECT '100%', '?', ?, ? || '%'", ("x", "50"))) == (
            "100%", "?", "x", "50%")
    finally:
        db.close()


def test_sql_errors_are_storage_errors_and_the_pool_recovers(pg_database: PostgresSettings) -> None:
    db = PostgresDatabase(pg_database, pool_size=1)
    try:
        with pytest.raises(StorageError, match=r"vipbx@127\.0\.0\.1:15942/t_\w+: .*no_such_table"):
            db.write(lambda tx: tx.all("SELECT * FROM no_such_table"))
        assert db.read(lambda tx: tx.one("SELECT MAX(version) FROM schema_version")) == (
            MIGRATIONS[-1].version,)
    finally:
        db.close()


def test_wrong_password_is_refused_without_showing_it(pg_database: PostgresSettings) -> None:
    wrong = replace(pg_database, password="wrong-" + pg_database.password[::-1])
    with pytest.raises(StorageError, match="cannot connect") as caught:
        PostgresDatabase(wrong)
    text = str(caught.value)
    assert "password authentication failed" in text
    assert wrong.password not in text and pg_database.password not in text
    assert caught.value.__cause__ is None  # the driver's exception is not chained along
    assert wrong.password not in repr(wrong)


def test_no_server_is_a_storage_error(pg_database: PostgresSettings) -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        PostgresDatabase(replace(pg_database, port=1, connect_timeout=2))


def test_open_service_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "callstate.postgres", None)  # an import of it now fails
    config = node_config(PostgresSettings())
    with pytest.raises(StorageError, match=r"\[postgresql\]"):
        open_service(config, tmp_path, lambda name: "x")


# ---------------------------------------------------------------------- retries


def test_a_lost_conflict_is_run_again_and_retries_are_bounded(pg_database: PostgresSettings) -> None:
    db = PostgresDatabase(pg_database, retry=RetryPolicy(tries=3, first_pause=0.001))
    calls: list[int] = []

    def loses_once(tx: Tx) -> int:
        calls.append(1)
        tx.run("INSERT INTO audit_log (at, tenant_id, user_id, actor, source, event, field) "
               "VALUES ('x', 'acme', 'anna', 'op', 'test', 'set', 'f')")
        if len(calls) == 1:
            raise psycopg.errors.SerializationFailure("lost")
        return len(calls)

    def always_loses(tx: Tx) -> None:
        calls.append(1)
        raise psycopg.errors.DeadlockDetected("lost again")

    try:
        assert db.write(loses_once) == 2
        # The first run was rolled back: one row, from the second.
        assert db.read(lambda tx: tx.one("SELECT COUNT(*) FROM audit_log")) == (1,)
        calls.clear()
        with pytest.raises(StorageError, match="gave up after 3 tries"):
            db.write(always_loses)
        assert len(calls) == 3
    finally:
        db.close()


# ---------------------------------------------------------------------- several nodes


def test_two_nodes_see_each_others_changes_at_once(pg_database: PostgresSettings,
                                                   tmp_path: Path) -> None:
    config = node_config(pg_database)
    with open_service(config, tmp_path / "node1", secrets_of(pg_database)) as node1, \
            open_service(config, tmp_path / "node2", secrets_of(pg_database)) as node2:
        node1.update_voicemail_settings("acme", "anna", actor="op", source="cli", notify_sms=False)
        assert node2.voicemail_settings("acme", "anna") == VoicemailSettings(notify_sms=False)
        for _ in range(4):
            node2.check_pin("acme", "anna", "0000", source="ivr")
        assert node1.check_pin("acme", "anna", "0000", source="ivr").locked
        assert node2.pin_status("acme", "anna").locked
        node2.reset_pin_lockout("acme", "anna", actor="op", source="cli")
        assert node1.check_pin("acme", "anna", base.ANNA_PIN, source="ivr").ok
        assert [e.id for e in node1.audit()] == [e.id for e in node2.audit()]
    # Neither node made a SQLite file.
    assert not list(tmp_path.rglob("*.sqlite3"))


def test_concurrent_writers_on_two_nodes_lose_nothing(make_service: Callable[..., CallStateService]) -> None:
    nodes, threads, each = 2, 4, 15
    services = [make_service(lockout_attempts=10_000) for _ in range(nodes)]
    barrier = threading.Barrier(nodes * threads)
    errors: list[BaseException] = []

    def hammer(svc: CallStateService, name: str) -> None:
        try:
            barrier.wait()
            for _ in range(each):
                svc.check_pin("acme", "mikko", "0000", source="test", actor=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(svc, f"n{n}t{t}"))
               for n, svc in enumerate(services) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    total = nodes * threads * each
    assert services[1].pin_status("acme", "mikko") == PinStatus(total, None)
    trail = services[0].audit("acme", "mikko", limit=1000)
    # Each failure saw the count the one before it left: a lost update would repeat a number.
    assert sorted(int(e.new or 0) for e in trail) == list(range(1, total + 1))


def test_nodes_starting_at_once_migrate_once(pg_database: PostgresSettings) -> None:
    starters = 4
    barrier = threading.Barrier(starters)
    opened: list[PostgresDatabase] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresDatabase(pg_database))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=start) for _ in range(starters)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        assert errors == []
        assert [db.schema_version for db in opened] == [MIGRATIONS[-1].version] * starters
        versions = opened[0].read(lambda tx: tx.all("SELECT version FROM schema_version ORDER BY version"))
        assert versions == [(m.version,) for m in MIGRATIONS]
    finally:
        for db in opened:
            db.close()




def test_an_older_database_gains_the_lock_level_and_keeps_its_locks(pg_database: PostgresSettings) -> None:
    """Migration 4 on a database made by the three before it: existing lock rows read as level 0."""
    old = PostgresDatabase(pg_database, migrations=MIGRATIONS[:3])
    until = "2030-01-01T00:00:00.000000Z"
    try:
        old.write(lambda tx: tx.run("INSERT INTO pin_lockout (tenant_id, user_id, failures, locked_until, "
                                    "updated_at) VALUES ('acme', 'anna', 5, ?, ?)", (until, until)))
    finally:
        old.close()
    new = PostgresDatabase(pg_database)
    try:
        assert new.schema_version == MIGRATIONS[-1].version
        row = new.read(lambda tx: tx.one("SELECT failures, locked_until, lock_level, held FROM pin_lockout"))
        assert row == (5, until, 0, 0)
    finally:
        new.close()
