"""The durable outbox: one SQLite row per notice and channel, written before anything is sent.

Blocking on purpose (stdlib sqlite3); the notifier calls it from one worker thread. Rows leave the
table when sent; rows given up stay (state 'given_up') for ops to look at and are pruned later.

E-mail rows own a copy of the recording in the `<outbox stem>-files/` folder beside the database:
the mailbox file cannot be referenced, since the user may delete the message and Asterisk
renumbers msgNNNN files when messages move, so a path could later name another recording.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from base.private import FILE_MODE, private_dir, private_file, tighten_sqlite

from .notice import VoicemailNotice

log = logging.getLogger(__name__)

CHANNELS = ("sms", "email")
ORPHAN_AGE = 3600.0  # a copy with no row, older than this, is left over from a crash mid-add

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    notice TEXT NOT NULL,
    attachment TEXT,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
"""
_COLUMNS = "id, channel, notice, attachment, state, attempts, next_at, created, last_error"


@dataclass(frozen=True)
class Entry:
    id: int
    channel: str
    notice: VoicemailNotice
    attachment: Path | None  # the outbox's own copy of the recording (e-mail rows)
    state: str
    attempts: int
    next_at: float
    created: float
    last_error: str | None


def notice_to_json(notice: VoicemailNotice) -> str:
    data = asdict(notice)
    data["received"] = notice.received.isoformat()
    data["wav"] = str(notice.wav)
    return json.dumps(data, ensure_ascii=False)


def notice_from_json(text: str) -> VoicemailNotice:
    data = json.loads(text)
    data["received"] = datetime.fromisoformat(data["received"])
    data["wav"] = Path(data["wav"])
    return VoicemailNotice(**data)


_NEW_PRIVATE = os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = path.parent / f"{path.stem}-files"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Phone numbers, names and recordings: for this account only, whatever the umask.
        private_dir(self.files)
        private_file(path)
        # Autocommit; multi-statement changes use explicit transactions.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a row the caller was told about survives a power cut, not just a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        tighten_sqlite(path)  # companions left by an older version

    def close(self) -> None:
        self._db.close()

    # --- writing -------------------------------------------------------------------------

    def add(self, notice: VoicemailNotice, channels: Sequence[str], now: float) -> list[int]:
        """One pending row per channel, due now. The recording is copied first for e-mail."""
        attachment = self._copy_recording(notice.wav) if "email" in channels else None
        ids: list[int] = []
        payload = notice_to_json(notice)
        with self._transaction():
            for channel in channels:
                if channel not in CHANNELS:
                    raise ValueError(f"unknown channel {channel!r}")
                cur = self._db.execute(
                    "INSERT INTO outbox (channel, notice, attachment, next_at, created) VALUES (?, ?, ?, ?, ?)",
                    (channel, payload, attachment if channel == "email" else None, now, now))
                ids.append(int(cur.lastrowid or 0))
        return ids

    def claim(self, entry: Entry, now: float, lease: float) -> bool:
        """Take `entry` for one attempt: counts the attempt and hides the row for `lease` seconds
        (if the process dies mid-send it is due again then). False if someone else took it."""
        cur = self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ? "
            "WHERE id = ? AND state = 'pending' AND attempts = ? AND next_at = ?",
            (now + lease, entry.id, entry.attempts, entry.next_at))
        return cur.rowcount == 1

    def sent(self, entry_id: int) -> None:
        row = self._db.execute("SELECT attachment FROM outbox WHERE id = ?", (entry_id,)).fetchone()
        self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
        if row is not None:
            self._remove_copy(row[0])

    def retry_at(self, entry_id: int, next_at: float, error: str) -> None:
        self._db.execute("UPDATE outbox SET next_at = ?, last_error = ? WHERE id = ?", (next_at, error, entry_id))

    def give_up(self, entry_id: int, error: str) -> None:
        row = self._db.execute("SELECT attachment FROM outbox WHERE id = ?", (entry_id,)).fetchone()
        self._db.execute("UPDATE outbox SET state = 'given_up', last_error = ?, attachment = NULL WHERE id = ?",
                         (error, entry_id))
        if row is not None:
            self._remove_copy(row[0])

    def sweep(self, now: float, keep_given_up: float) -> None:
        """Prune given-up rows older than `keep_given_up` seconds and copies no row refers to."""
        self._db.execute("DELETE FROM outbox WHERE state = 'given_up' AND created < ?", (now - keep_given_up,))
        used = {name for (name,) in self._db.execute("SELECT attachment FROM outbox WHERE attachment IS NOT NULL")}
        for path in self.files.iterdir():
            try:
                if path.name not in used and path.stat().st_mtime < now - ORPHAN_AGE:
                    path.unlink()
            except FileNotFoundError:
                pass

    # --- reading -------------------------------------------------------------------------

    def due(self, now: float, channels: Iterable[str], limit: int = 100) -> list[Entry]:
        wanted = tuple(channels)
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND next_at <= ? AND channel IN ({marks}) "
            "ORDER BY next_at, id LIMIT ?", (now, *wanted, limit))
        return [self._entry(row) for row in rows]

    def next_due(self, channels: Iterable[str]) -> float | None:
        wanted = tuple(channels)
        if not wanted:
            return None
        marks = ",".join("?" * len(wanted))
        (at,) = self._db.execute(
            f"SELECT MIN(next_at) FROM outbox WHERE state = 'pending' AND channel IN ({marks})", wanted).fetchone()
        return None if at is None else float(at)

    def count(self, state: str) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE state = ?", (state,)).fetchone()
        return int(n)

    def pending_by_channel(self) -> dict[str, int]:
        rows = self._db.execute("SELECT channel, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY channel")
        return {str(channel): int(n) for channel, n in rows}

    def entries(self, state: str | None = None) -> list[Entry]:
        if state is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY id")
        else:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE state = ? ORDER BY id", (state,))
        return [self._entry(row) for row in rows]

    # --- inside --------------------------------------------------------------------------

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        id_, channel, notice, attachment, state, attempts, next_at, created, last_error = row
        return Entry(id_, channel, notice_from_json(notice), self.files / attachment if attachment else None,
                     state, attempts, next_at, created, last_error)

    def _copy_recording(self, wav: Path) -> str | None:
        """Copy `wav` in, durably (the row will point at it); None if it is already gone."""
        name = f"{uuid.uuid4().hex}{wav.suffix or '.wav'}"
        tmp = self.files / f".{name}.tmp"
        try:
            with open(wav, "rb") as src, open(os.open(tmp, _NEW_PRIVATE, FILE_MODE), "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            log.warning("recording %s is gone already: the e-mail goes without it", wav)
            return None
        os.replace(tmp, self.files / name)
        dir_fd = os.open(self.files, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name

    def _remove_copy(self, name: object) -> None:
        if name:
            (self.files / str(name)).unlink(missing_ok=True)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
