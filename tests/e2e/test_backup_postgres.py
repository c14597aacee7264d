"""`vipbx backup` / `vipbx restore` of a PostgreSQL call state, on a real server (pgserver.py).

The dump is every table's COPY in one REPEATABLE READ snapshot; the restore re-creates the schema
at the dump's version in a fresh database, copies the rows in, resets the identity sequences and
migrates forward, in one transaction. Checked: a round trip keeps every row and new ids follow
the restored ones; an older schema is migrated forward; a database with call state is refused
unless forced; backups taken while a writer runs are consistent; the CLI with YAML and
secrets.json as operators have them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import needs_psycopg  # noqa: F401 - skips this module without psycopg
import pytest
import yaml
from click.testing import CliRunner
from pgserver import PgRaw, PgServer

from asterisk_conf.validate import load_config
from backup import Refused, make_backup, restore_backup
from base.model import Config, StateDatabase
from base.paths import Paths
from callstate import CallStateService
from callstate.dump import schema_tables
from callstate.postgres import PostgresDatabase, PostgresSettings
from callstate.schema import MIGRATIONS
from cli.backup import backup_command, restore_command
from testphone.media import write_tone
from vmstore import Envelope, VoicemailStore, new_msg_id

pytest_plugins = ("pgserver",)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [EXAMPLES / name for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
CONFIG = load_config([str(f) for f in FILES])
LATEST = MIGRATIONS[-1].version
ANNA = ("acme", "anna.virtanen")


def on(settings: PostgresSettings) -> Config:
    state = StateDatabase(backend="postgresql", host=settings.host, port=settings.port, name=settings.name,
                          user=settings.user, connect_timeout=5)
    return replace(CONFIG, platform=replace(CONFIG.platform, state_database=state))


def secret(settings: PostgresSettings) -> Callable[[str], str]:
    return lambda name: settings.password


def every_row(settings: PostgresSettings) -> dict[str, list[tuple[Any, ...]]]:
    raw = PgRaw(settings)
    return {table: sorted(raw.rows(table), key=repr) for table in schema_tables(LATEST)
            if table != "schema_version"}


@pytest.fixture
def databases(pg_server: PgServer) -> Iterator[Callable[[], PostgresSettings]]:
    """`make()`: one more empty database (dropped after the test)."""
    made: list[str] = []

    def make() -> PostgresSettings:
        name = f"t_restore_{len(made)}_{os.getpid()}"
        made.append(name)
        return pg_server.create_database(name)

    yield make
    for name in made:
        pg_server.drop_database(name)


def fill(settings: PostgresSettings, spool: Path, work: Path) -> None:
    """State on every kind of table, ids from identity columns among them, and one message."""
    with CallStateService(PostgresDatabase(settings), CONFIG) as state:
        state.update_voicemail_settings(*ANNA, actor="t", source="cli", play_activity=True)
        state.set_presence("acme", "mikko.korhonen", "meeting", note="budget; 100% \\ \"quoted\"",
                           actor="t", source="cli")
        # What COPY's text format must escape: tab, newline, backslash; and NULL beside "\N".
        state.store.db.write(lambda tx: tx.run(
            "INSERT INTO audit_log (at, tenant_id, user_id, actor, source, event, field, old_value, new_value) "
            "VALUES ('2024-08-01T09:00:00.000000Z', 'acme', 'anna.virtanen', 't', 'test', 'raw', 'x', NULL, ?)",
            ("tab\there\nnew line \\N back\\slash ä",)))
        state.check_pin(*ANNA, "000000", source="ivr", actor="+358451234567")
        state.fax.record(*ANNA, caller="+358401", remote_id="X", pages=2, ok=True, error="", tiff="1.2.tif")
        state.fax.record(*ANNA, caller="+358402", remote_id="", pages=0, ok=False, error="no tone", tiff="1.3.tif")
    wav = work / "m.wav"
    write_tone(wav, 700, 1.0)
    VoicemailStore(spool).add("acme", "358401110001", wav, Envelope(
        caller_number="+358451234567", caller_name=None, called_number="+358401110001",
        orig_time=datetime.now(UTC), duration=1, msg_id=new_msg_id()))


def test_a_round_trip_keeps_every_row_and_new_ids_follow_the_restored_ones(
        pg_database: PostgresSettings, databases: Callable[[], PostgresSettings], tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    fill(pg_database, Paths(home).spool, work)
    out = tmp_path / "b.tar.gz"
    manifest, _ = make_backup(Paths(home), on(pg_database), secret(pg_database), out)
    assert (manifest.backend, manifest.schema_version) == ("postgresql", LATEST)
    assert manifest.tables["fax_received"] == 2 and manifest.tables["presence"] == 1
    assert manifest.columns["fax_received"][0] == "id"
    assert {n for n in manifest.files if n.startswith("callstate/")} == {
        f"callstate/{t}.copy" for t in schema_tables(LATEST)}

    target = databases()
    done = restore_backup(Paths(tmp_path / "fresh"), on(target), secret(target), out)
    assert done.schema_version == LATEST
    assert every_row(target) == every_row(pg_database)
    applied = PgRaw(target).rows("schema_version")
    assert applied == PgRaw(pg_database).rows("schema_version")  # the history, dates included
    assert VoicemailStore(Paths(tmp_path / "fresh").spool).counts("acme", "358401110001") == (1, 0)
    with CallStateService(PostgresDatabase(target), CONFIG) as state:
        assert state.presence("acme", "mikko.korhonen").note.startswith("budget; 100% \\")
        newer = state.fax.record(*ANNA, caller="+358403", remote_id="", pages=1, ok=True, error="", tiff="1.4.tif")
        assert newer > max(row[0] for row in PgRaw(pg_database).rows("fax_received"))
        state.update_voicemail_settings(*ANNA, actor="t", source="cli", play_activity=False)
    audit_ids = [row[0] for row in PgRaw(target).rows("audit_log")]
    assert len(audit_ids) == len(set(audit_ids))


def test_an_older_schema_is_restored_then_migrated_forward(
        pg_database: PostgresSettings, databases: Callable[[], PostgresSettings], tmp_path: Path) -> None:
    old = PostgresDatabase(pg_database, migrations=MIGRATIONS[:3])
    old.write(lambda tx: tx.run("INSERT INTO pin_lockout (tenant_id, user_id, failures, locked_until, updated_at) "
                                "VALUES ('acme', 'anna.virtanen', 3, NULL, '2024-08-01T09:00:00.000000Z')"))
    old.close()
    out = tmp_path / "old.tar.gz"
    manifest, _ = make_backup(Paths(tmp_path / "home"), on(pg_database), secret(pg_database), out)
    assert manifest.schema_version == 3 and set(manifest.columns) == set(schema_tables(3))
    assert PostgresDatabase(pg_database, migrate=False).schema_version == 3  # the backup changed nothing

    target = databases()
    done = restore_backup(Paths(tmp_path / "fresh"), on(target), secret(target), out)
    assert done.schema_version == LATEST
    assert [row[:3] + row[5:] for row in PgRaw(target).rows("pin_lockout")] == [("acme", "anna.virtanen", 3, 0, 0)]
    with CallStateService(PostgresDatabase(target), CONFIG) as state:
        assert state.pin_status(*ANNA).failures == 3


def test_a_database_with_call_state_is_refused_unless_forced(
        pg_database: PostgresSettings, databases: Callable[[], PostgresSettings], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    fill(pg_database, Paths(tmp_path / "home").spool, work)
    out = tmp_path / "b.tar.gz"
    make_backup(Paths(tmp_path / "home"), on(pg_database), secret(pg_database), out)
    target = databases()
    with CallStateService(PostgresDatabase(target), CONFIG) as state:
        state.set_presence("acme", "anna.virtanen", "meeting", note="theirs", actor="t", source="cli")
    before = every_row(target)
    with pytest.raises(Refused, match="already has call state"):
        restore_backup(Paths(tmp_path / "fresh"), on(target), secret(target), out)
    assert every_row(target) == before
    restore_backup(Paths(tmp_path / "fresh"), on(target), secret(target), out, force=True)
    assert every_row(target) == every_row(pg_database)


def test_backups_while_a_writer_runs_are_consistent(
        pg_database: PostgresSettings, databases: Callable[[], PostgresSettings], tmp_path: Path) -> None:
    """One transaction adds an audit row and sets a presence note to the count of such rows: a
    snapshot has them equal, whatever commits while COPY runs table after table."""
    db = PostgresDatabase(pg_database)
    stop, errors, ticks = threading.Event(), [], [0]

    def tick(tx) -> None:  # type: ignore[no-untyped-def]
        tx.run("INSERT INTO audit_log (at, tenant_id, user_id, actor, source, event, field) "
               "VALUES ('2024-08-01T09:00:00.000000Z', 'acme', 'anna.virtanen', 't', 'test', 'tick', 'n')")
        count = tx.one("SELECT COUNT(*) FROM audit_log WHERE event = 'tick'")[0]
        tx.run("INSERT INTO presence (tenant_id, user_id, activity, until_at, note, updated_at) "
               "VALUES ('acme', 'anna.virtanen', 'meeting', NULL, ?, 'x') ON CONFLICT (tenant_id, user_id) "
               "DO UPDATE SET note = excluded.note", (str(count),))

    def write() -> None:
        try:
            while not stop.is_set():
                db.write(tick)
                ticks[0] += 1
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    archives = []
    try:
        time.sleep(0.2)
        for index in range(3):
            out = tmp_path / f"b{index}.tar.gz"
            make_backup(Paths(tmp_path / "home"), on(pg_database), secret(pg_database), out)
            archives.append(out)
    finally:
        stop.set()
        writer.join(10)
        db.close()
    assert not errors and ticks[0] > 10, (errors, ticks)
    for out in archives:
        target = databases()
        restore_backup(Paths(tmp_path / f"fresh-{out.stem}"), on(target), secret(target), out)
        raw = PgRaw(target)
        count = len([row for row in raw.rows("audit_log") if row[6] == "tick"])
        assert count > 0 and [row[4] for row in raw.rows("presence")] == [str(count)]


def test_the_commands_with_yaml_and_secrets_as_operators_have_them(
        pg_database: PostgresSettings, databases: Callable[[], PostgresSettings], tmp_path: Path) -> None:
    def home_for(settings: PostgresSettings, name: str) -> tuple[Path, list[str]]:
        home = tmp_path / name
        home.mkdir()
        (home / "secrets.json").write_text(json.dumps({"postgresql": settings.password}))
        platform = yaml.safe_load(FILES[0].read_text())
        platform["platform"]["state_database"] = {"backend": "postgresql", "host": settings.host,
                                                  "port": settings.port, "name": settings.name,
                                                  "user": settings.user}
        (home / "platform.yaml").write_text(yaml.safe_dump(platform))
        return home, [str(home / "platform.yaml"), str(FILES[1]), str(FILES[2])]

    work = tmp_path / "work"
    work.mkdir()
    source, files = home_for(pg_database, "source")
    fill(pg_database, Paths(source).spool, work)
    out = tmp_path / "b.tar.gz"
    made = CliRunner().invoke(backup_command, [*files, "--out", str(out)],
                              env={"VIPBX_HOME": str(source), "VIPBX_CONFIG": None})
    assert made.exit_code == 0, made.output
    assert f"call state (postgresql, schema {LATEST})" in made.stdout and made.stderr == ""
    assert pg_database.password not in made.output

    target = databases()
    fresh, files = home_for(target, "fresh")
    done = CliRunner().invoke(restore_command, [*files, "--from", str(out)],
                              env={"VIPBX_HOME": str(fresh), "VIPBX_CONFIG": None})
    assert done.exit_code == 0, done.output
    assert done.stderr == "" and len(done.stdout.splitlines()) == 1
    assert every_row(target) == every_row(pg_database)
    again = CliRunner().invoke(restore_command, [*files, "--from", str(out)],
                               env={"VIPBX_HOME": str(fresh), "VIPBX_CONFIG": None})
    assert again.exit_code == 1 and "already has voicemail" in again.stderr
