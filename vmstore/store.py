"""Voicemail messages and greetings in Asterisk's own spool, so app_voicemail (VoiceMail(),
VoiceMailMain(), `voicemail show users`) and message waiting see exactly what we store.

Layout: `<astspooldir>/voicemail/<context>/<mailbox>/INBOX|Old/msgNNNN.wav` + `msgNNNN.txt`,
greetings `unavail.wav` and `busy.wav` beside the folders. Numbers in a folder are contiguous
from 0, as app_voicemail keeps them.

What makes a message exist is its `.txt`: app_voicemail counts messages (and MWI) by `.txt`
files and numbers a new one after the highest `.txt`. So a message appears in this order, under
both locks (see locks.py): envelope written and fsynced to a hidden `.msgNNNN.txt.tmp`, audio
renamed to `msgNNNN.wav`, envelope renamed to `msgNNNN.txt`. Nobody ever sees an envelope
without audio; a crash between the two renames leaves audio plus the hidden envelope, and the
next change to that folder completes the message. Removal goes the other way (`.txt` first).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from base.durable import fsync_dir

from .envelope import Envelope, new_msg_id
from .locks import FILE_MODE, asterisk_path_lock, mailbox_lock

__all__ = ["Envelope", "Message", "MessageNotFound", "StoreFull", "VoicemailStore", "new_msg_id", "playback_name"]

FOLDERS = ("INBOX", "Old")  # also the order their Asterisk locks are taken in, as app_voicemail does
GREETINGS = ("unavail", "busy")  # one own greeting, stored as both
DIR_MODE = 0o770
MAX_NUMBER = 9999  # msg%04d
_MESSAGE = re.compile(r"msg(\d{4})\.txt")
_PENDING = re.compile(r"\.msg(\d{4})\.txt\.tmp")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,79}")
_STAGED_MAX_AGE = 3600.0  # a staged copy this old belongs to a crashed add; its source still exists


def playback_name(audio: Path) -> str:
    """How Asterisk names an audio file to play: its path without the format, so that it picks
    the format that suits the channel."""
    return str(audio.with_suffix(""))


class MessageNotFound(LookupError):
    """The message is no longer in its mailbox (deleted or moved meanwhile)."""


class StoreFull(RuntimeError):
    """A folder already holds msg9999."""


@dataclass(frozen=True)
class Message:
    folder: str
    number: int  # NNNN of msgNNNN
    wav: Path
    envelope: Envelope

    @property
    def txt(self) -> Path:
        return self.wav.with_suffix(".txt")

    @property
    def mailbox(self) -> str:
        return self.wav.parent.parent.name

    @property
    def sound(self) -> str:
        return playback_name(self.wav)

    def renumbered(self, number: int) -> Message:
        """The same message after its folder was compacted under it."""
        return replace(self, number=number, wav=_path(self.wav.parent, number, ".wav"))

    @property
    def context(self) -> str:
        return self.wav.parent.parent.parent.name


class VoicemailStore:
    new_msg_id = staticmethod(new_msg_id)

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = Path(spool_dir)  # astspooldir: the folder holding `voicemail/`
        self.root = self.spool_dir / "voicemail"

    # --- reading (no locks: a rename is atomic, and a message is whole once its .txt exists) ---

    def mailbox_dir(self, context: str, mailbox: str) -> Path:
        for name in (context, mailbox):
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a voicemail context or mailbox name: {name!r}")
        return self.root / context / mailbox

    def list(self, context: str, mailbox: str, folder: str = "INBOX") -> builtins.list[Message]:
        path = self._folder(context, mailbox, folder)
        return [m for m in (self._read(path, n) for n in _numbers(path)) if m is not None]

    def counts(self, context: str, mailbox: str) -> tuple[int, int]:
        """(new, old), counted like app_voicemail: by envelope files."""
        box = self.mailbox_dir(context, mailbox)
        new, old = (len(_numbers(box / folder)) for folder in FOLDERS)
        return new, old

    def find(self, context: str, mailbox: str, msg_id: str) -> Message | None:
        """The message with this id in INBOX or Old (numbers shift; ids do not)."""
        box = self.mailbox_dir(context, mailbox)
        for folder in FOLDERS:
            found = self._find_id(box / folder, msg_id)
            if found is not None:
                return found
        return None

    def current(self, message: Message) -> Message | None:
        """Where `message` is now: its number may have shifted, or it may have been heard
        (moved to Old) by another session meanwhile; None once it is deleted. One envelope read
        while nothing moved."""
        here = self._locate(message)
        if here is None and message.folder == "INBOX" and message.envelope.msg_id:
            here = self._find_id(self.mailbox_dir(message.context, message.mailbox) / "Old", message.envelope.msg_id)
        return here

    def greeting(self, context: str, mailbox: str) -> Path | None:
        box = self.mailbox_dir(context, mailbox)
        for stem in GREETINGS:
            if (box / f"{stem}.wav").is_file():
                return box / f"{stem}.wav"
        return None

    # --- changes --------------------------------------------------------------------

    def add(self, context: str, mailbox: str, audio: Path, envelope: Envelope) -> Message:
        """Move `audio` (a WAV) into INBOX as the next message; safe against concurrent adds from
        threads, processes and app_voicemail. The source is gone afterwards."""
        audio = Path(audio)
        if not audio.is_file():
            raise FileNotFoundError(audio)
        if not envelope.origmailbox:
            envelope = replace(envelope, origmailbox=mailbox)
        inbox = self._ensure(context, mailbox) / "INBOX"
        # Across file systems the copy is made before locking, so the lock is held for renames only.
        staged = _stage_copy(audio, inbox) if audio.stat().st_dev != inbox.stat().st_dev else None
        if staged is None:
            _fsync_file(audio)  # a rename carries no data: it must be on disk before the name is
        try:
            with self._locked(context, mailbox, "INBOX"):
                numbers = _numbers(inbox)
                number = numbers[-1] + 1 if numbers else 0
                if number > MAX_NUMBER:
                    raise StoreFull(f"{inbox} is full")
                target = _path(inbox, number, ".wav")
                pending = inbox / f".msg{number:04d}.txt.tmp"
                _write_durable(pending, envelope.to_text())
                _remove_files(inbox, number)  # leftovers of a crash: not a message without .txt
                try:
                    try:
                        os.rename(staged or audio, target)
                    except OSError as exc:  # same device but another mount (bind mounts): copy
                        if exc.errno != errno.EXDEV:
                            raise
                        staged = _stage_copy(audio, inbox)
                        os.rename(staged, target)
                    os.chmod(target, FILE_MODE)
                    os.rename(pending, target.with_suffix(".txt"))
                except BaseException:
                    if target.exists() and not target.with_suffix(".txt").exists():
                        # Never lose the audio: back where it came from unless that is a copy.
                        if staged is None:
                            os.rename(target, audio)
                        else:
                            target.unlink()
                    pending.unlink(missing_ok=True)
                    raise
                fsync_dir(inbox)
                if staged is None:
                    fsync_dir(audio.parent)  # the name it left, so a crash cannot bring it back
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        if staged is not None:
            audio.unlink(missing_ok=True)
        return Message("INBOX", number, target, envelope)

    def mark_old(self, message: Message) -> Message:
        """INBOX → Old (as the last Old message); both folders stay contiguous."""
        box = self.mailbox_dir(message.context, message.mailbox)
        with self._locked(message.context, message.mailbox, "INBOX", "Old"):
            current = self._locate(message)
            if current is None:
                moved = self._find_id(box / "Old", message.envelope.msg_id) if message.envelope.msg_id else None
                if moved is None:
                    raise MessageNotFound(message.wav)
                return moved
            if current.folder != "INBOX":
                return current
            old = box / "Old"
            numbers = _numbers(old)
            number = numbers[-1] + 1 if numbers else 0
            if number > MAX_NUMBER:
                raise StoreFull(f"{old} is full")
            _remove_files(old, number)
            _move(box / "INBOX", current.number, old, number)
            _compact(box / "INBOX")
            fsync_dir(old)
            fsync_dir(box / "INBOX")
        return Message("Old", number, _path(old, number, ".wav"), current.envelope)

    def delete(self, message: Message) -> Message | None:
        """Remove the message; later ones move down by one. What was removed, as it was just
        before (its number may differ from `message`'s), or None if it was already gone."""
        if not self._folder(message.context, message.mailbox, message.folder).is_dir():
            return None
        with self._locked(message.context, message.mailbox, message.folder):
            current = self._locate(message)
            if current is None:
                return None
            folder = current.wav.parent
            current.txt.unlink()  # first: from now on nobody counts it
            _remove_files(folder, current.number)
            _compact(folder)
            fsync_dir(folder)
        return current

    def set_greeting(self, context: str, mailbox: str, audio: Path) -> None:
        """The user's own greeting: moved in as `unavail.wav`, copied to `busy.wav` too so that
        app_voicemail's own fallback plays it for either reason."""
        audio = Path(audio)
        box = self._ensure(context, mailbox)
        with mailbox_lock(box / ".vipbx.lock"):
            for stem in GREETINGS:
                staged = _stage_copy(audio, box)
                try:
                    _remove_greeting(box, stem, keep=".wav")  # another format would win for some codecs
                    os.rename(staged, box / f"{stem}.wav")
                finally:
                    staged.unlink(missing_ok=True)
            fsync_dir(box)
        audio.unlink(missing_ok=True)

    def delete_greeting(self, context: str, mailbox: str) -> None:
        """Back to the default greeting. `greet` and `temp` greetings are app_voicemail's own."""
        box = self.mailbox_dir(context, mailbox)
        if not box.is_dir():
            return
        with mailbox_lock(box / ".vipbx.lock"):
            for stem in GREETINGS:
                _remove_greeting(box, stem)

    # --- internals ------------------------------------------------------------------

    def _folder(self, context: str, mailbox: str, folder: str) -> Path:
        if not _NAME.fullmatch(folder):
            raise ValueError(f"not a voicemail folder: {folder!r}")
        return self.mailbox_dir(context, mailbox) / folder

    def _read(self, folder: Path, number: int) -> Message | None:
        txt = _path(folder, number, ".txt")
        try:
            text = txt.read_text(encoding="utf-8", errors="replace")
            mtime = datetime.fromtimestamp(txt.stat().st_mtime, UTC)
        except FileNotFoundError:  # moved or deleted since the folder was listed
            return None
        return Message(folder.name, number, txt.with_suffix(".wav"), Envelope.from_text(text, fallback_time=mtime))

    def _locate(self, message: Message) -> Message | None:
        """Where `message` is now in its folder: same number if the id still matches there.
        Exact under the lock; without it, as of the moment of reading."""
        folder = self._folder(message.context, message.mailbox, message.folder)
        msg_id = message.envelope.msg_id
        if _path(folder, message.number, ".txt").exists():
            here = self._read(folder, message.number)
            if here is not None and (not msg_id or here.envelope.msg_id == msg_id):
                return here
        return self._find_id(folder, msg_id) if msg_id else None

    def _find_id(self, folder: Path, msg_id: str) -> Message | None:
        for number in _numbers(folder):
            message = self._read(folder, number)
            if message is not None and message.envelope.msg_id == msg_id:
                return message
        return None

    def _ensure(self, context: str, mailbox: str) -> Path:
        box = self.mailbox_dir(context, mailbox)
        for path in (self.root, box.parent, box, *(box / folder for folder in FOLDERS)):
            _mkdir(path)
        return box

    @contextlib.contextmanager
    def _locked(self, context: str, mailbox: str, *folders: str) -> Iterator[None]:
        box = self._ensure(context, mailbox)
        ordered = sorted(set(folders), key=lambda f: FOLDERS.index(f) if f in FOLDERS else len(FOLDERS))
        with contextlib.ExitStack() as stack:
            stack.enter_context(mailbox_lock(box / ".vipbx.lock"))
            for folder in ordered:
                path = self._folder(context, mailbox, folder)
                _mkdir(path)
                stack.enter_context(asterisk_path_lock(path))
                _repair(path)
            yield


def _path(folder: Path, number: int, suffix: str) -> Path:
    return folder / f"msg{number:04d}{suffix}"


def _numbers(folder: Path) -> list[int]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_MESSAGE.fullmatch, names) if m)


def _files(folder: Path, number: int) -> list[Path]:
    """Every file of message `number` (audio in any format, envelope last)."""
    stem = f"msg{number:04d}."
    found = sorted(folder / name for name in os.listdir(folder) if name.startswith(stem))
    return sorted(found, key=lambda p: p.suffix == ".txt")


def _remove_files(folder: Path, number: int) -> None:
    for path in _files(folder, number):
        path.unlink(missing_ok=True)


def _move(source: Path, number: int, target: Path, new_number: int) -> None:
    # Audio first, envelope last: the message appears in `target` only once it is whole.
    for path in _files(source, number):
        os.rename(path, _path(target, new_number, path.suffix))


def _compact(folder: Path) -> None:
    """Close gaps (msg0000, msg0002 → msg0000, msg0001) the way app_voicemail resequences."""
    for index, number in enumerate(_numbers(folder)):
        if number != index:
            _remove_files(folder, index)  # no .txt at `index`: leftovers only
            _move(folder, number, folder, index)


def _repair(folder: Path) -> None:
    """Finish or clean up after an add that crashed between its renames (see the module doc)."""
    now = time.time()
    for name in os.listdir(folder):
        pending = _PENDING.fullmatch(name)
        if pending:
            number = int(pending.group(1))
            has_audio = any(p.suffix != ".txt" for p in _files(folder, number))
            if has_audio and not _path(folder, number, ".txt").exists():
                os.rename(folder / name, _path(folder, number, ".txt"))
            else:
                (folder / name).unlink(missing_ok=True)
        elif name.startswith(".in-"):
            with contextlib.suppress(FileNotFoundError):
                if now - (folder / name).stat().st_mtime > _STAGED_MAX_AGE:
                    (folder / name).unlink()


def _remove_greeting(box: Path, stem: str, keep: str | None = None) -> None:
    for path in box.glob(f"{stem}.*"):
        if path.suffix != keep and path.is_file():
            path.unlink(missing_ok=True)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        return
    # Explicit: the umask must not decide who may read voicemail. The set-group-ID bit that a
    # spool prepared for an unprivileged Asterisk passes down is kept, so what we create there
    # stays in Asterisk's group (see asterisk_host/instance.py).
    os.chmod(path, DIR_MODE | (os.stat(path).st_mode & stat.S_ISGID))


def _stage_copy(audio: Path, folder: Path) -> Path:
    """A durable copy of `audio` under a hidden name in `folder`, ready to be renamed."""
    staged = folder / f".in-{secrets.token_hex(8)}{audio.suffix}"
    try:
        with open(audio, "rb") as src, open(staged, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fchmod(dst.fileno(), FILE_MODE)
            os.fsync(dst.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fchmod(f.fileno(), FILE_MODE)
        os.fsync(f.fileno())
