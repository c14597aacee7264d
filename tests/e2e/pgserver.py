"""A throw-away PostgreSQL server for the call-state tests, and the fixtures that put the call-state
service on it. Load it with `pytest_plugins = ("pgserver",)` in a test module beside it.

- `pg_server` (session): a cluster of its own in a temporary folder, on 127.0.0.1:15942 only, with
  password (scram) login for the role `vipbx`; the superuser logs in over a socket in that folder.
  Stopped with `pg_ctl stop` on its own data folder (its pid as a last resort), then removed.
- `pg_database`: a new, empty database per test (dropped after it); its `PostgresSettings`.
- `pg_services` / `pg_raw_db`: what tests/unit/test_callstate.py's `make_service` / `raw_db` are,
  on that database (`pg_services.factory(CONFIG)` is a `make_service`).
- `rerun_on_postgresql(module)`: a unit module's tests not marked `sqlite_only`, with those two
  fixtures on PostgreSQL, to put into a test module's namespace.

The server binaries come from `pg_config --bindir`, a Debian-style /usr/lib/postgresql/N/bin, or
PATH. Without them the tests skip, except under CI (CI=true), where `deploy.sh test` installs them
and a skip would hide that it did not.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin, and it has no
test assertions to rewrite.
"""

from __future__ import annotations

import glob
import importlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import psycopg
import pytest
from conftest import unavailable
from psycopg import sql

from base.model import Config
from callstate import CallStateService
from callstate.postgres import PostgresDatabase, PostgresSettings

PORT = 15942
HOST = "127.0.0.1"
ROLE = "vipbx"
SERVER_USER = "postgres"  # initdb and postgres refuse to run as root
PROGRAMS = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The folder with initdb, pg_ctl and postgres, or None."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip())
    # Debian keeps the server out of PATH, one folder per major version: the newest first.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                         reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for folder in candidates:
        if folder and all((Path(folder) / name).is_file() for name in PROGRAMS):
            return Path(folder)
    return None


def missing(reason: str) -> NoReturn:
    unavailable(f"{reason} (Debian package: postgresql)")


class PgServer:
    """One cluster: `start()`, `admin()` connections, databases made and dropped, `stop()`."""

    def __init__(self, bindir: Path, workdir: Path, port: int = PORT) -> None:
        self.bindir, self.dir, self.port = bindir, workdir, port
        self.data, self.sockets, self.log = workdir / "data", workdir / "run", workdir / "server.log"
        self.password = secrets.token_urlsafe(18)
        self.pid: int | None = None
        # As root, run the server programs as the `postgres` user; as anyone else, as oneself.
        self._as_server_user: list[str] = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as_server_user, *args], capture_output=True, text=True,
                              check=False, timeout=120, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        self.sockets.mkdir(mode=0o700)
        if self._as_server_user:
            owner = pwd.getpwnam(SERVER_USER)
            for path in (self.dir, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        # Socket logins (only the owner of the 0700 socket folder gets there) trust; TCP wants
        # the password.
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                         "--no-locale", "--no-sync")
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        # Durability is not under test: fsync off keeps CREATE DATABASE per test fast.
        options = (f"-c listen_addresses={HOST} -c port={self.port} "
                   f"-c unix_socket_directories={self.sockets} -c password_encryption=scram-sha-256 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                         "-o", options, "-w", "-t", "60", "start")
        if done.returncode:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on {HOST}:{self.port}:\n{done.stdout}"
                               f"{done.stderr}{log}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(self.password)))

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection over the server's own socket folder."""
        return psycopg.connect(host=str(self.sockets), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True)

    def settings(self, dbname: str) -> PostgresSettings:
        return PostgresSettings(host=HOST, port=self.port, name=dbname, user=ROLE,
                                password=self.password, connect_timeout=5)

    def create_database(self, name: str) -> PostgresSettings:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)))
        return self.settings(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        if self.pid is not None:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                      "stop")
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)  # our own postmaster, by the pid it wrote
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        missing("the PostgreSQL server programs (initdb, pg_ctl, postgres) are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            missing(f"there is no {SERVER_USER!r} user to run the PostgreSQL server as")
    if _port_taken(PORT):
        pytest.fail(f"{HOST}:{PORT} is taken: a PostgreSQL test server left running? "
                    "(stop it by its pid, then run again)")
    server = PgServer(bindir, Path(tempfile.mkdtemp(prefix="vipbx-pg-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[PostgresSettings]:
    name = "t_" + secrets.token_hex(6)
    settings = pg_server.create_database(name)
    yield settings
    pg_server.drop_database(name)


class PgServices:
    """Services on one test's database; every backend it opened is closed after the test."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._made: list[PostgresDatabase] = []

    def factory(self, default_config: Config) -> Callable[..., CallStateService]:
        """A `make_service(config=default_config, **options)` on this database."""

        def make(config: Config = default_config, **options: Any) -> CallStateService:
            return self.make(config, **options)

        return make

    def make(self, config: Config, **options: Any) -> CallStateService:
        db = PostgresDatabase(self.settings)
        self._made.append(db)  # closed in close(), even when the service refuses an option
        return CallStateService(db, config, **options)

    def close(self) -> None:
        for db in self._made:
            db.close()


@pytest.fixture
def pg_services(pg_database: PostgresSettings) -> Iterator[PgServices]:
    services = PgServices(pg_database)
    yield services
    services.close()


@dataclass
class PgRaw:
    settings: PostgresSettings

    def _connect(self) -> psycopg.Connection[Any]:
        s = self.settings
        return psycopg.connect(host=s.host, port=s.port, dbname=s.name, user=s.user,
                               password=s.password, autocommit=True)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            return conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()

    def execute(self, statement: str) -> None:
        with self._connect() as conn:
            conn.execute(statement)  # no parameters: psycopg sends it as it is


@pytest.fixture
def pg_raw_db(pg_database: PostgresSettings) -> PgRaw:
    return PgRaw(pg_database)


# Fixtures that the PostgreSQL modules define for themselves.
BACKEND_FIXTURES = ("make_service", "raw_db")
UNIT_TESTS = Path(__file__).resolve().parents[1] / "unit"


def unit_module(name: str) -> ModuleType:
    """A module of tests/unit by the name pytest gives it (its folder goes first on sys.path, as
    pytest's default import mode does), so that a run of both folders shares one copy."""
    if str(UNIT_TESTS) not in sys.path:
        sys.path.insert(0, str(UNIT_TESTS))
    return importlib.import_module(name)


def contract_tests(module: ModuleType) -> dict[str, Any]:
    """The tests and fixtures of a call-state test module that hold for any backend: every
    `test_*` not marked `sqlite_only`, and every fixture but `make_service` and `raw_db`.

    A module's `globals().update(contract_tests(m))` collects them there, where its own
    `make_service` / `raw_db` (PostgreSQL ones) replace the module's."""
    picked: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("test_") and callable(value):
            if not any(mark.name == "sqlite_only" for mark in getattr(value, "pytestmark", [])):
                picked[name] = value
        elif _is_fixture(value) and name not in BACKEND_FIXTURES:
            picked[name] = value
    return picked


def rerun_on_postgresql(module: ModuleType, config: Config | None = None) -> dict[str, Any]:
    """`contract_tests(module)` plus PostgreSQL `make_service` (default config: `config`, else the
    module's CONFIG) and `raw_db`. A test module beside this one that does

        pytest_plugins = ("pgserver",)
        globals().update(rerun_on_postgresql(unit_module("test_callstate_forwards")))

    runs that module's backend-independent tests on PostgreSQL."""
    default_config: Config = config if config is not None else module.CONFIG

    @pytest.fixture
    def make_service(pg_services: PgServices) -> Callable[..., CallStateService]:
        return pg_services.factory(default_config)

    @pytest.fixture
    def raw_db(pg_raw_db: PgRaw) -> PgRaw:
        return pg_raw_db

    return {**contract_tests(module), "make_service": make_service, "raw_db": raw_db}


def _is_fixture(value: object) -> bool:
    # pytest 8.4+ wraps fixtures in FixtureFunctionDefinition; older ones mark the function.
    return (type(value).__name__ == "FixtureFunctionDefinition"
            or hasattr(value, "_pytestfixturefunction") or hasattr(value, "_fixture_function_marker"))
