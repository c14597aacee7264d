"""What the call-state service tests share: a settable clock, and services and raw rows on this
test's database through the `make_service` / `raw_db` fixtures (SQLite here; the PostgreSQL
modules of tests/e2e replace those two and run the same tests again)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from base.model import Config
from callstate import CallStateService

T0 = datetime(2024, 8, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MakeService(Protocol):
    """`make_service(config=CONFIG, **options)`: a new service on this test's database (every call
    the same database, as a second process or node would open it); closed after the test. The
    default configuration is the test module's CONFIG."""

    def __call__(self, config: Config = ..., **options: Any) -> CallStateService: ...


class RawDb(Protocol):
    """This test's database below the service: `rows(table)` and `execute(sql)`."""

    def rows(self, table: str) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str) -> None: ...


def table_rows(db_path: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()  # table: a fixed name from the test


class SqliteRaw:
    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return table_rows(self.path, table)

    def execute(self, sql: str) -> None:
        with closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute(sql)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "state.sqlite3"


@pytest.fixture
def make_service(db_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeService]:
    default: Config = request.module.CONFIG
    made: list[CallStateService] = []

    def make(config: Config = default, **options: Any) -> CallStateService:
        made.append(CallStateService(db_path, config, **options))
        return made[-1]

    yield make
    for service in made:
        service.close()


@pytest.fixture
def raw_db(db_path: Path) -> RawDb:
    return SqliteRaw(db_path)


@pytest.fixture
def svc(make_service: MakeService, clock: FakeClock) -> CallStateService:
    """A service on this test's database whose clock the test moves."""
    return make_service(clock=clock)


Change = tuple[str, str | None, str | None]


def changes(svc: CallStateService, tenant: str | None = None, uid: str | None = None) -> list[Change]:
    """The audit trail oldest first, as (field, old, new)."""
    return [(e.field, e.old, e.new) for e in reversed(svc.audit(tenant, uid))]
