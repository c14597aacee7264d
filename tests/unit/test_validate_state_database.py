"""platform.state_database: SQLite by default, PostgreSQL settings checked; never a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from asterisk_conf.validate import load_config, validate_files
from base.model import StateDatabase


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text("platform:\n  state_database:\n" + body + "tenants: []\n", encoding="utf-8")
    return str(path)


def test_default_is_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("tenants: []\n")
    assert load_config([str(path)]).platform.state_database == StateDatabase()
    assert StateDatabase().backend == "sqlite"


def test_postgresql_settings_load(tmp_path: Path) -> None:
    config = load_config([write(tmp_path, (
        "    backend: postgresql\n    host: db1.operator.example\n    port: 6432\n"
        "    name: vipbx_state\n    user: vipbx-node\n    connect_timeout: 10\n"
    ))])
    assert config.platform.state_database == StateDatabase(
        backend="postgresql", host="db1.operator.example", port=6432, name="vipbx_state",
        user="vipbx-node", connect_timeout=10)


def test_left_out_keys_keep_their_defaults(tmp_path: Path) -> None:
    config = load_config([write(tmp_path, "    backend: postgresql\n    host: \"::1\"\n")])
    assert config.platform.state_database == StateDatabase(backend="postgresql", host="::1")


def test_every_bad_value_is_reported_with_line_and_key(tmp_path: Path) -> None:
    problems = validate_files([write(tmp_path, (
        "    backend: mysql\n"
        "    host: \"db;drop\"\n"
        "    port: 70000\n"
        "    name: \"vipbx state\"\n"
        "    user: \"x'y\"\n"
        "    connect_timeout: 0\n"
        "    password: hunter2\n"
    ))])
    found = {(p.line, p.key) for p in problems}
    assert (3, "platform.state_database.backend") in found
    assert (4, "platform.state_database.host") in found
    assert (5, "platform.state_database.port") in found
    assert (6, "platform.state_database.name") in found
    assert (7, "platform.state_database.user") in found
    assert (8, "platform.state_database.connect_timeout") in found
    assert (9, "platform.state_database.password") in found
    assert len(problems) == 7
    unknown = next(p for p in problems if p.key.endswith("password"))
    assert "unknown key" in unknown.message and "backend" in unknown.message
    assert "sqlite, postgresql" in next(p for p in problems if p.key.endswith("backend")).message
    assert all(str(tmp_path / "p.yaml") in str(p) for p in problems)


@pytest.mark.parametrize("body", ["    - postgresql\n", "    postgresql\n"])
def test_state_database_must_be_a_mapping(tmp_path: Path, body: str) -> None:
    problems = validate_files([write(tmp_path, body)])
    assert [(p.key, "must be a mapping" in p.message) for p in problems] == [
        ("platform.state_database", True)]


@pytest.mark.parametrize(("key", "value"), [
    ("name", '"a b"'), ("name", "1abc"), ("name", '"' + "n" * 64 + '"'), ("user", '"vipbx=x"'),
    ("host", "DB.example"), ("port", '"5432"'), ("connect_timeout", "301"), ("backend", "true"),
])
def test_hostile_or_out_of_range_values_are_refused(tmp_path: Path, key: str, value: str) -> None:
    problems = validate_files([write(tmp_path, f"    {key}: {value}\n")])
    assert [p.key for p in problems] == [f"platform.state_database.{key}"]


def test_statement_and_lock_timeouts_load_and_are_bounded(tmp_path: Path) -> None:
    config = load_config([write(tmp_path, (
        "    backend: postgresql\n    statement_timeout: 30\n    lock_timeout: 2\n"))])
    assert (config.platform.state_database.statement_timeout, config.platform.state_database.lock_timeout) == (30, 2)
    assert (StateDatabase().statement_timeout, StateDatabase().lock_timeout) == (10, 5)
    problems = [str(p) for p in validate_files([write(tmp_path, (
        "    backend: postgresql\n    statement_timeout: 0\n    lock_timeout: forever\n"))])]
    assert any(":4:" in p and "statement_timeout" in p for p in problems), problems
    assert any(":5:" in p and "lock_timeout" in p for p in problems), problems
