"""`vipbx backup` / `vipbx restore` on SQLite homes: the round trip into a fresh home, the
archive's privacy, the refusals (newer schema, damaged archive, a target with voicemail or call
state), a failed restore that leaves the home as it was, and the output in scripts."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tarfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from backupcase import (
    ANNA,
    CONFIG,
    FILES,
    MIKKO,
    add_message,
    members,
    populated_home,
    rewrite,
    spool_files,
    tables,
    write_raw,
)
from click.testing import CliRunner, Result

from backup import SILENT, BackupError, make_backup
from backup.archive import MANIFEST
from base.ami import AmiSettings
from base.paths import Paths
from base.secrets import SecretStore
from callstate import CallStateService, dump
from callstate.db import Database
from callstate.schema import MIGRATIONS
from cli.backup import backup_command, restore_command
from vmstore import RecordingJournal, VoicemailStore, deliver_orphans

LATEST = MIGRATIONS[-1].version


def cli_backup(home: Path, out: Path) -> Result:
    return CliRunner().invoke(backup_command, [*FILES, "--out", str(out)],
                              env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None})


def cli_restore(home: Path, archive: Path, *extra: str) -> Result:
    return CliRunner().invoke(restore_command, [*FILES, "--from", str(archive), *extra],
                              env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None})


def refused(result: Result, *words: str) -> str:
    """The one line a refused command printed (exit status 1)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return populated_home(tmp_path)


@pytest.fixture
def archive(home: Path, tmp_path: Path) -> Path:
    out = tmp_path / "backup.tar.gz"
    result = cli_backup(home, out)
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------ round trip


def test_a_fresh_home_gets_every_message_greeting_recording_and_row(home: Path, archive: Path,
                                                                    tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    result = cli_restore(fresh, archive)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"restored {archive} (made ")
    assert "3 messages in 2 mailboxes, 1 recording not delivered yet" in result.stdout

    assert spool_files(fresh) == spool_files(home)  # byte for byte, greetings and journal included
    assert tables(Paths(fresh).state_db) == tables(Paths(home).state_db)
    with CallStateService(Paths(fresh).state_db, CONFIG) as state:
        assert state.voicemail_settings("acme", "anna.virtanen").play_activity is True
        assert state.presence("acme", "mikko.korhonen").note == "budget"
        assert state.pin_status("acme", "anna.virtanen").failures == 1
    store = VoicemailStore(Paths(fresh).spool)
    assert store.counts("acme", ANNA[2]) == (1, 1)
    assert store.greeting("acme", ANNA[2]) is not None
    # No staging folder is left in the home or the spool.
    assert sorted(p.name for p in fresh.iterdir()) == ["pbx", "state.sqlite3"]
    assert sorted(p.name for p in Paths(fresh).spool.iterdir()) == ["recording", "voicemail"]


def test_a_symlink_planted_in_the_spool_is_not_followed(home: Path, tmp_path: Path) -> None:
    """The spool is Asterisk's account's; a backup run as root must not archive what a link
    planted there points at."""
    secret = tmp_path / "root-only"
    secret.write_text("not for the archive")
    secret.chmod(0o600)
    inbox = Paths(home).spool / "voicemail" / "acme" / ANNA[2] / "INBOX"
    (inbox / "msg0007.txt").write_text("[message]\ncallerid=+358450000000\n")
    (inbox / "msg0007.wav").symlink_to(secret)
    (inbox.parent / "temp.wav").symlink_to(secret)  # a greeting, too
    out = tmp_path / "linked.tar.gz"
    assert cli_backup(home, out).exit_code == 0
    archived = members(out)
    assert not any(b"not for the archive" in data for data in archived.values())
    assert not any(name.endswith(("msg0007.wav", "temp.wav")) for name in archived)


def test_the_undelivered_recording_is_delivered_once_by_the_orphan_scan(archive: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert cli_restore(fresh, archive).exit_code == 0
    spool = Paths(fresh).spool
    journal = RecordingJournal(spool / "recording")
    entry = next((spool / "recording").rglob("*.json"))
    promised = json.loads(entry.read_text())["msg_id"]
    # The restored audio keeps its age, so it counts as an orphan at once.
    delivered = deliver_orphans(journal, VoicemailStore(spool), older_than=2.0)
    assert [m.envelope.msg_id for m in delivered] == [promised]
    assert VoicemailStore(spool).counts("acme", ANNA[2]) == (2, 1)
    assert deliver_orphans(journal, VoicemailStore(spool), older_than=0.0) == []


def test_restored_files_have_the_modes_and_owner_the_running_system_expects(archive: Path,
                                                                             tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    spool = Paths(fresh).spool
    spool.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(spool, 4321, 4322)  # as Asterisk's account owns it
    assert cli_restore(fresh, archive).exit_code == 0
    owner = (4321, 4322) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    for path in (spool / "voicemail", *(spool / "voicemail").rglob("*"), *(spool / "recording").rglob("*")):
        st = path.stat()
        expected = 0o2770 if path.is_dir() else 0o660
        assert stat.S_IMODE(st.st_mode) == expected, path
        assert (st.st_uid, st.st_gid) == owner, path
    assert stat.S_IMODE(Paths(fresh).state_db.stat().st_mode) == 0o600


def test_force_replaces_what_the_target_had(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    store = VoicemailStore(Paths(target).spool)
    work = tmp_path / "w"
    work.mkdir()
    add_message(store, ("borealis", "x", "358405550001"), work, "+358451111111")
    with CallStateService(Paths(target).state_db, CONFIG) as state:
        state.set_presence("acme", "anna.virtanen", "meeting", note="other", actor="t", source="cli")
        # The service keeps the file open while the restore writes into it: it must see the result.
        result = cli_restore(target, archive, "--force")
        assert result.exit_code == 0, result.output
        assert state.presence("acme", "anna.virtanen").activity == "available"
        assert state.presence("acme", "mikko.korhonen").note == "budget"
    assert not (store.root / "borealis").exists()
    assert store.counts("acme", MIKKO[2]) == (1, 0)


def test_an_older_schema_is_restored_then_migrated_forward(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    db = Database(Paths(old).state_db, migrations=MIGRATIONS[:3])
    db.write(lambda tx: tx.run("INSERT INTO pin_lockout (tenant_id, user_id, failures, locked_until, updated_at) "
                               "VALUES ('acme', 'anna.virtanen', 3, NULL, '2024-08-01T09:00:00.000000Z')"))
    db.close()
    out = tmp_path / "old.tar.gz"
    assert cli_backup(old, out).exit_code == 0
    assert json.loads(members(out)[MANIFEST])["callstate"]["schema_version"] == 3
    fresh = tmp_path / "fresh"
    result = cli_restore(fresh, out)
    assert result.exit_code == 0, result.output
    assert f"migrated to schema {LATEST}" in result.stdout
    with CallStateService(Paths(fresh).state_db, CONFIG) as state:
        status = state.pin_status("acme", "anna.virtanen")
        assert (status.failures, status.level) == (3, 0)
    assert dump.describe_sqlite(Paths(fresh).state_db)[0] == LATEST


# ------------------------------------------------------------------------------ the archive


def test_the_archive_is_owner_only_whatever_the_umask_and_lists_its_contents(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "b.tar.gz"
    out.parent.mkdir()
    before = os.umask(0)
    try:
        result = cli_backup(home, out)
    finally:
        os.umask(before)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert os.listdir(out.parent) == ["b.tar.gz"]  # no temporary file or copy left beside it
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith(f"backup {out}: 3 messages in 2 mailboxes, 1 recording not delivered yet; "
                                    f"call state (sqlite, schema {LATEST}) ")
    manifest = json.loads(members(out)[MANIFEST])
    assert manifest["format"] == 1 and manifest["created_at"].endswith("Z")
    assert manifest["callstate"]["backend"] == "sqlite"
    assert manifest["callstate"]["rows"]["presence"] == 1
    assert manifest["voicemail"] == {"messages": {f"acme/{ANNA[2]}": 2, f"acme/{MIKKO[2]}": 1},
                                     "pending_recordings": 1}
    names = set(manifest["files"])
    assert "callstate/state.sqlite3" in names
    assert f"spool/voicemail/acme/{ANNA[2]}/unavail.wav" in names
    assert f"spool/voicemail/acme/{ANNA[2]}/Old/msg0000.txt" in names
    assert not any("/." in name for name in names)  # no lock file, no staging file
    assert len([n for n in names if n.startswith("spool/recording/")]) == 2  # the entry and its audio
    # The spool has no staging folder left either.
    assert not [p for p in Paths(home).spool.iterdir() if p.name.startswith(".vipbx")]


def test_a_failed_backup_leaves_no_file(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backup.archive import ArchiveWriter

    calls: list[str] = []
    real = ArchiveWriter.add

    def failing(self: ArchiveWriter, name: str, path: Path) -> None:
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(self.out))
        real(self, name, path)

    monkeypatch.setattr(ArchiveWriter, "add", failing)
    out = tmp_path / "out" / "b.tar.gz"
    out.parent.mkdir()
    result = cli_backup(home, out)
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and len(result.stderr.splitlines()) == 1
    assert os.listdir(out.parent) == []
    assert not [p for p in Paths(home).spool.iterdir() if p.name.startswith(".vipbx")]


def test_the_database_copy_is_one_file_without_a_log(home: Path, tmp_path: Path) -> None:
    make_backup(Paths(home), CONFIG, lambda name: "", tmp_path / "b.tar.gz")
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(members(tmp_path / "b.tar.gz")["callstate/state.sqlite3"])
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert tables(copy) == tables(Paths(home).state_db)


# ------------------------------------------------------------------------------ refusals


def untouched(path: Path) -> None:
    assert not path.exists(), sorted(p.name for p in path.rglob("*"))


def test_a_newer_schema_is_refused(archive: Path, tmp_path: Path) -> None:
    def newer(files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        db = tmp_path / "newer.sqlite3"
        db.write_bytes(files["callstate/state.sqlite3"])
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', '2030-01-01T00:00:00.000000Z')",
                         (LATEST + 1,))
        files["callstate/state.sqlite3"] = db.read_bytes()
        manifest["callstate"]["schema_version"] = LATEST + 1
        manifest["vipbx_version"] = "9.0"

    rewrite(archive, newer)
    fresh = tmp_path / "fresh"
    line = refused(cli_restore(fresh, archive), "vipbx 9.0", f"schema version {LATEST + 1}",
                   f"newer than this program's {LATEST}")
    assert line.startswith("Error: ")
    untouched(fresh)


def test_a_newer_schema_inside_the_database_is_refused_too(archive: Path, tmp_path: Path) -> None:
    """A manifest that understates the schema: the database file itself is checked before use."""
    def lying(files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        db = tmp_path / "newer.sqlite3"
        db.write_bytes(files["callstate/state.sqlite3"])
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("INSERT INTO schema_version VALUES (?, 'x', '2030-01-01T00:00:00.000000Z')", (LATEST + 1,))
        files["callstate/state.sqlite3"] = db.read_bytes()

    rewrite(archive, lying)
    fresh = tmp_path / "fresh"
    result = cli_restore(fresh, archive)
    assert result.exit_code == 1 and "newer than this program's" in result.stderr
    assert not Paths(fresh).state_db.exists()
    assert spool_files(fresh) == {}
    assert not [p for p in fresh.rglob(".vipbx-*")]


def test_a_member_that_does_not_match_its_checksum_is_refused(archive: Path, tmp_path: Path) -> None:
    def damaged(files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        name = f"spool/voicemail/acme/{ANNA[2]}/INBOX/msg0000.wav"
        data = bytearray(files[name])
        data[len(data) // 2] ^= 0xFF
        files[name] = bytes(data)

    rewrite(archive, damaged, rehash=False)
    fresh = tmp_path / "fresh"
    refused(cli_restore(fresh, archive), "damaged", "INBOX/msg0000.wav does not match its checksum")
    untouched(fresh)


def test_a_missing_member_a_truncated_file_and_a_foreign_tar_are_refused(archive: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"

    def missing(files: dict[str, bytes], manifest: dict[str, Any]) -> None:
        del files[f"spool/voicemail/acme/{MIKKO[2]}/INBOX/msg0000.txt"]

    copy = tmp_path / "missing.tar.gz"
    copy.write_bytes(archive.read_bytes())
    rewrite(copy, missing, rehash=False)
    refused(cli_restore(fresh, copy), "damaged", "msg0000.txt is missing")

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused(cli_restore(fresh, truncated), "damaged or not a vipbx backup")

    foreign = tmp_path / "foreign.tar.gz"
    info = tarfile.TarInfo("../../etc/passwd")
    info.size = 4
    write_raw(foreign, [(info, b"root")])
    refused(cli_restore(fresh, foreign), "no vipbx backup holds")

    link = tarfile.TarInfo("spool/voicemail/acme/x")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc"
    write_raw(foreign, [(link, b"")])
    refused(cli_restore(fresh, foreign), "no vipbx backup holds")

    plain = tmp_path / "plain.txt"
    plain.write_text("not an archive")
    refused(cli_restore(fresh, plain), "damaged or not a vipbx backup")
    untouched(fresh)


def test_a_target_with_messages_or_call_state_is_refused_without_force(archive: Path, tmp_path: Path) -> None:
    with_messages = tmp_path / "with-messages"
    work = tmp_path / "w"
    work.mkdir()
    add_message(VoicemailStore(Paths(with_messages).spool), ANNA, work, "+358451111111")
    before = spool_files(with_messages)
    refused(cli_restore(with_messages, archive), f"{with_messages} already has voicemail",
            "1 message", "--force")
    assert spool_files(with_messages) == before
    assert not Paths(with_messages).state_db.exists()

    with_state = tmp_path / "with-state"
    with CallStateService(Paths(with_state).state_db, CONFIG) as state:
        state.set_presence("acme", "anna.virtanen", "meeting", actor="t", source="cli")
    rows = tables(Paths(with_state).state_db)
    refused(cli_restore(with_state, archive), f"{with_state} already has call state", "--force")
    assert tables(Paths(with_state).state_db) == rows
    assert not Paths(with_state).spool.exists()


def test_an_empty_database_and_empty_mailbox_folders_are_no_reason_to_refuse(archive: Path,
                                                                            tmp_path: Path) -> None:
    target = tmp_path / "target"
    CallStateService(Paths(target).state_db, CONFIG).close()  # a service that started once
    (Paths(target).spool / "voicemail" / "acme" / ANNA[2] / "INBOX").mkdir(parents=True)
    assert cli_restore(target, archive).exit_code == 0


def test_a_restore_that_fails_at_the_end_leaves_the_home_as_it_was(archive: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "target"
    work = tmp_path / "w"
    work.mkdir()
    add_message(VoicemailStore(Paths(target).spool), ("borealis", "x", "358405550001"), work, "+358451111111")
    with CallStateService(Paths(target).state_db, CONFIG) as state:
        state.set_presence("acme", "anna.virtanen", "meeting", note="kept", actor="t", source="cli")
    files, rows = spool_files(target), tables(Paths(target).state_db)

    def broken(self: Any) -> int:
        raise dump.StorageError("state database state.sqlite3: database is locked")

    monkeypatch.setattr(dump._SqliteLoader, "install", broken)
    result = cli_restore(target, archive, "--force")
    assert result.exit_code == 1
    line = refused(result, "failed, nothing was changed", "database is locked")
    assert line.startswith(f"Error: restore into {target}")
    assert spool_files(target) == files
    assert tables(Paths(target).state_db) == rows
    assert sorted(p.name for p in target.iterdir()) == ["pbx", "state.sqlite3"]
    assert sorted(p.name for p in Paths(target).spool.iterdir()) == ["voicemail"]


def test_another_backend_is_refused(archive: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from backup import Refused, restore_backup
    from base.model import StateDatabase

    config = replace(CONFIG, platform=replace(CONFIG.platform, state_database=StateDatabase(backend="postgresql")))
    with pytest.raises(Refused, match="holds a sqlite call state and this configuration uses postgresql"):
        restore_backup(Paths(tmp_path / "fresh"), config, lambda name: "", archive)
    untouched(tmp_path / "fresh")


# ------------------------------------------------------------------------------ output


def test_a_terminal_shows_progress_on_stderr_a_script_only_the_summary(home: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = cli_backup(home, tmp_path / "a.tar.gz")
    assert quiet.stderr == "" and len(quiet.stdout.splitlines()) == 1

    import cli.backup as command
    import cli.progress as terminal

    class Tty:
        def isatty(self) -> bool:
            return True

    assert terminal.progress() is SILENT  # stderr is no terminal under pytest
    monkeypatch.setattr(terminal.sys, "stderr", Tty())
    assert isinstance(terminal.progress(), terminal.TerminalProgress)
    monkeypatch.undo()
    # Under CliRunner stderr is no terminal either: click then writes each stage's label once.
    monkeypatch.setattr(command, "progress", terminal.TerminalProgress)
    shown = cli_backup(home, tmp_path / "b.tar.gz")
    assert shown.exit_code == 0, shown.output
    assert "backing up" in shown.stderr
    assert len(shown.stdout.splitlines()) == 1
    restored = cli_restore(tmp_path / "fresh", tmp_path / "b.tar.gz")
    assert restored.exit_code == 0, restored.output
    assert "checking" in restored.stderr and "restoring" in restored.stderr


def test_a_missing_output_folder_is_one_line(home: Path, tmp_path: Path) -> None:
    result = cli_backup(home, tmp_path / "nowhere" / "b.tar.gz")
    refused(result, "no folder")
    with pytest.raises(BackupError):
        make_backup(Paths(home), CONFIG, lambda name: "", tmp_path / "nowhere" / "b.tar.gz")


def test_message_lights_are_refreshed_when_the_homes_asterisk_runs(archive: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import cli.backup as command

    asked: list[AmiSettings] = []

    async def refresh(settings: AmiSettings) -> bool:
        asked.append(settings)
        return answer

    monkeypatch.setattr(command, "refresh_all_mwi", refresh)
    fresh = tmp_path / "fresh"
    answer = True
    assert "message lights" not in cli_restore(fresh, archive).output  # no Asterisk: nothing asked
    assert asked == []
    SecretStore(Paths(fresh).secrets).ensure(["ami"])
    monkeypatch.setattr(command, "running_pid", lambda paths: 4242)
    done = cli_restore(fresh, archive, "--force")
    assert done.exit_code == 0 and done.stdout.splitlines()[-1] == "message lights refreshed"
    assert [(s.port, s.secret) for s in asked] == [(CONFIG.platform.ami.port, SecretStore(Paths(fresh).secrets).get("ami"))]
    answer = False  # Asterisk did not take it: the restore stands, the operator is told
    done = cli_restore(fresh, archive, "--force")
    assert done.exit_code == 0 and "did not take the message-light refresh" in done.stderr
