"""Backups taken while the service keeps writing are consistent.

Three writers run in threads while backups are taken and each is restored into a fresh home:
- the call state: one transaction adds an audit row and sets a presence note to the number of
  such rows, so a copy is consistent exactly when the note equals the count;
- a mailbox: messages added, heard (moved to Old) and deleted, so numbers shift under the copy;
  every message copied must have its envelope and its audio, and each folder stay numbered from 0;
- deposits: journal entry, audio, delivery into another mailbox, as a call leaves a message. Every
  recording finished before a backup began must be in it, as a message or as an entry the orphan
  scan then delivers, and no message may be there twice.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from backupcase import ANNA, CONFIG, MIKKO, add_message, members

from backup import make_backup, restore_backup
from base.paths import Paths
from callstate.db import Database
from testphone.media import write_tone
from vmstore import (
    RecordingJournal,
    VoicemailStore,
    deliver_orphans,
    deliver_recording,
    new_msg_id,
)

BACKUPS = 4


class Writers:
    def __init__(self, home: Path, work: Path) -> None:
        self.home, self.work = home, work
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.finished: list[tuple[float, str]] = []  # (when its audio was complete, msg_id)
        self.ticks = 0
        self.tone = work / "tone.wav"
        write_tone(self.tone, 800, 1.2)
        self._threads = [threading.Thread(target=self._guard(run), daemon=True)
                         for run in (self._state, self._mailbox, self._deposits)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not self.errors, self.errors

    def _guard(self, run: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                run()
            except Exception as exc:  # noqa: BLE001 -- reported by __exit__
                self.errors.append(exc)

        return guarded

    def _state(self) -> None:
        db = Database(Paths(self.home).state_db)
        try:
            while not self.stop.is_set():
                def tick(tx) -> None:  # type: ignore[no-untyped-def]
                    tx.run("INSERT INTO audit_log (at, tenant_id, user_id, actor, source, event, field) "
                           "VALUES ('2024-08-01T09:00:00.000000Z', 'acme', 'anna.virtanen', 't', 'test', 'tick', 'n')")
                    count = tx.one("SELECT COUNT(*) FROM audit_log WHERE event = 'tick'")[0]
                    tx.run("DELETE FROM presence WHERE tenant_id = 'acme' AND user_id = 'anna.virtanen'")
                    tx.run("INSERT INTO presence (tenant_id, user_id, activity, until_at, note, updated_at) "
                           "VALUES ('acme', 'anna.virtanen', 'meeting', NULL, ?, '2024-08-01T09:00:00.000000Z')",
                           (str(count),))

                db.write(tick)
                self.ticks += 1
        finally:
            db.close()

    def _mailbox(self) -> None:
        store = VoicemailStore(Paths(self.home).spool)
        step = 0
        while not self.stop.is_set():
            step += 1
            add_message(store, ANNA, self.work, f"+35845{step:07d}", seconds=0.3)
            if step % 2 == 0:
                store.mark_old(store.list("acme", ANNA[2], "INBOX")[0])
            if step % 3 == 0:
                store.delete(store.list("acme", ANNA[2], "Old")[0])

    def _deposits(self) -> None:
        spool = Paths(self.home).spool
        journal, store = RecordingJournal(spool / "recording"), VoicemailStore(spool)
        data = self.tone.read_bytes()
        while not self.stop.is_set():
            name = f"vipbx/{new_msg_id()}"
            meta = journal.begin(name, {"context": "acme", "mailbox": MIKKO[2], "caller_number": "+358451234567",
                                        "started": datetime.now(UTC).isoformat()})
            journal.audio(name).write_bytes(data)  # Asterisk records, then the call ends
            self.finished.append((time.monotonic(), str(meta["msg_id"])))
            time.sleep(random.uniform(0.02, 0.12))  # the caller hangs up, the app delivers: a moment
            deliver_recording(journal, store, name, meta)


def message_ids(store: VoicemailStore, mailbox: str) -> list[str]:
    return [m.envelope.msg_id for folder in ("INBOX", "Old") for m in store.list("acme", mailbox, folder)]


def test_backups_taken_while_everything_is_written_restore_consistent_homes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    Database(Paths(home).state_db).close()
    archives: list[tuple[float, Path]] = []
    with Writers(home, work) as writers:
        time.sleep(0.3)
        for index in range(BACKUPS):
            began = time.monotonic()
            out = tmp_path / f"b{index}.tar.gz"
            make_backup(Paths(home), CONFIG, lambda name: "", out)
            archives.append((began, out))
            time.sleep(0.2)
    assert writers.ticks > 20 and len(writers.finished) > 5, (writers.ticks, len(writers.finished))

    for began, out in archives:
        fresh = tmp_path / f"fresh-{out.stem}"
        restore_backup(Paths(fresh), CONFIG, lambda name: "", out)

        # The call state: one committed transaction, never half of one.
        db = Database(Paths(fresh).state_db)
        ticks = db.read(lambda tx: tx.one("SELECT COUNT(*) FROM audit_log WHERE event = 'tick'"))[0]
        note = db.read(lambda tx: tx.one("SELECT note FROM presence WHERE user_id = 'anna.virtanen'"))
        db.close()
        assert ticks > 0 and note == (str(ticks),), (ticks, note)

        # The mailbox: whole messages, numbered from 0 in each folder.
        names = [n for n in members(out) if n.startswith(f"spool/voicemail/acme/{ANNA[2]}/")]
        for folder in ("INBOX", "Old"):
            files = sorted(n.rsplit("/", 1)[1] for n in names if f"/{folder}/" in n)
            numbers = sorted({int(re.match(r"msg(\d{4})", f).group(1)) for f in files})  # type: ignore[union-attr]
            assert numbers == list(range(len(numbers))), (folder, files)
            assert files == [f"msg{n:04d}.{s}" for n in numbers for s in ("txt", "wav")], (folder, files)
        store = VoicemailStore(Paths(fresh).spool)
        anna = message_ids(store, ANNA[2])
        assert len(anna) == len(set(anna))

        # Deposits: everything finished before the backup began is there once, after the scan.
        spool = Paths(fresh).spool
        deliver_orphans(RecordingJournal(spool / "recording"), store, older_than=-1)
        mikko = message_ids(store, MIKKO[2])
        assert len(mikko) == len(set(mikko)), "a message restored twice"
        expected = [msg_id for when, msg_id in writers.finished if when < began]
        assert expected and set(expected) <= set(mikko), set(expected) - set(mikko)
        assert not [p for p in (spool / "recording").rglob("*.json")]
        assert not any(p.name.startswith(".vipbx") for p in os.scandir(spool))
