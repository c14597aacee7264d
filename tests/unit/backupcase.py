"""What the backup tests share: a home with call state, messages, a greeting and an undelivered
recording; reading a spool and a database back; archives rewritten the way damage or a newer
vipbx would leave them."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asterisk_conf.validate import load_config
from backup.archive import MANIFEST, ArchiveWriter, Manifest
from base.model import Config
from base.paths import Paths
from callstate import CallStateService
from testphone.media import write_tone
from vmstore import Envelope, Message, RecordingJournal, VoicemailStore, new_msg_id

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
CONFIG: Config = load_config(FILES)
ANNA = ("acme", "anna.virtanen", "358401110001")
MIKKO = ("acme", "mikko.korhonen", "358401110002")


def add_message(store: VoicemailStore, box: tuple[str, str, str], folder: Path, caller: str,
                frequency: int = 700, seconds: float = 1.2) -> Message:
    wav = folder / f"in-{new_msg_id()}.wav"
    write_tone(wav, frequency, seconds)
    envelope = Envelope(caller_number=caller, caller_name=None, called_number="+" + box[2],
                        orig_time=datetime.now(UTC) - timedelta(minutes=5), duration=round(seconds),
                        msg_id=new_msg_id())
    return store.add(box[0], box[2], wav, envelope)


def pending_recording(spool: Path, box: tuple[str, str, str], caller: str, seconds: float = 1.5) -> str:
    """A journal entry whose recording finished while nobody delivered it (an app that died);
    its msg_id. Made old enough to count as an orphan."""
    journal = RecordingJournal(spool / "recording")
    name = f"vipbx/{new_msg_id()}"
    meta = journal.begin(name, {"tenant": box[0], "user": box[1], "context": box[0], "mailbox": box[2],
                                "caller_number": caller, "started": datetime.now(UTC).isoformat()})
    write_tone(journal.audio(name), 900, seconds)
    finished = time.time() - 60
    os.utime(journal.audio(name), (finished, finished))
    return str(meta["msg_id"])


def populated_home(root: Path) -> Path:
    """A home as a running service leaves it: settings, PIN lockout, presence, an INBOX and an Old
    message for Anna, a greeting, a message for Mikko and one undelivered recording."""
    home = root / "home"
    home.mkdir(parents=True)
    with CallStateService(home / "state.sqlite3", CONFIG) as state:
        state.update_voicemail_settings("acme", "anna.virtanen", actor="t", source="cli", play_activity=True)
        state.set_presence("acme", "mikko.korhonen", "meeting", note="budget", actor="t", source="cli")
        state.check_pin("acme", "anna.virtanen", "000000", source="ivr", actor="+358451234567")
    store = VoicemailStore(Paths(home).spool)
    work = root / "work"
    work.mkdir()
    add_message(store, ANNA, work, "+358451234567")
    store.mark_old(add_message(store, ANNA, work, "+358451234568", frequency=500))
    add_message(store, MIKKO, work, "+358451234569", frequency=1100)
    greeting = work / "greeting.wav"
    write_tone(greeting, 300, 1.0)
    store.set_greeting("acme", ANNA[2], greeting)
    pending_recording(Paths(home).spool, ANNA, "+358451234570")
    return home


def spool_files(home: Path) -> dict[str, bytes]:
    """Every file of the mailboxes and recordings, by path below the spool (lock files aside)."""
    spool = Paths(home).spool
    found = {}
    for part in ("voicemail", "recording"):
        for path in sorted((spool / part).rglob("*")):
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(spool).parts):
                found[path.relative_to(spool).as_posix()] = path.read_bytes()
    return found


def tables(db_file: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two databases with the same state compare equal."""
    with closing(sqlite3.connect(db_file)) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr)  # names from the file
                for name in names}


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def rewrite(archive: Path, change: Callable[[dict[str, bytes], dict[str, Any]], None], *,
            rehash: bool = True) -> None:
    """The archive again after `change(files, manifest_json)`; `rehash=False` keeps the old
    manifest's digests (damage that the checksums must catch)."""
    files = members(archive)
    manifest = json.loads(files.pop(MANIFEST))
    change(files, manifest)
    folder = archive.parent / "rewrite"
    folder.mkdir(exist_ok=True)
    writer = ArchiveWriter(archive)
    for name, data in files.items():
        path = folder / name.replace("/", "_")
        path.write_bytes(data)
        writer.add(name, path)
    parsed = Manifest.from_json(json.dumps(manifest).encode())
    if rehash:
        parsed.files = dict(writer.files)
    writer.finish(parsed)


def write_raw(archive: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
