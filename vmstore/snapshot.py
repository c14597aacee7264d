"""The voicemail spool copied for `vipbx backup`, and put back by `vipbx restore`.

Copy. Each mailbox is copied under the locks every change of it takes (ours, then app_voicemail's
on each message folder, see locks.py), so no message is caught with its envelope and not its
audio, or halfway through a renumbering. Under the locks the files are only hard-linked into a
staging folder inside the spool (copied where the file system cannot link): that takes
milliseconds, and app_voicemail gives up on its lock after 5 s and drops the message. The archive
is then written from the links with no lock held. Greetings come along (they change under our
mailbox lock).

Recordings not yet delivered (the journal's entries, journal.py) are copied before any mailbox. A
recording delivered meanwhile is then in the copy twice, as an entry and as a message with the
entry's msg_id, and the orphan scan after a restore recognises the message and stores nothing
twice; copied the other way round, it could be in neither.

Restore. The files are put together in a staging folder inside the spool, given the spool's
owner and group (as root) and the modes Asterisk's account needs (folders 2770, files 0660), then
renamed into place: the whole `voicemail` folder at once, the recordings one by one (audio before
its entry). What was there before is kept aside until `discard`, so `undo` can put it back if a
later step of the restore fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from base.durable import fsync_dir

from .locks import FILE_MODE, asterisk_path_lock, mailbox_lock
from .recordings import is_name
from .store import _NAME, FOLDERS, _numbers

VOICEMAIL = "voicemail"  # the parts of the spool a copy holds
RECORDING = "recording"
DIR_MODE = 0o2770  # group asterisk passed down to what is made inside later
BACKUP_PREFIX = ".vipbx-backup-"
RESTORE_PREFIX = ".vipbx-restore-"
_SKIPPED_FOLDERS = {"tmp"}  # app_voicemail's recordings in progress: not messages yet
_MESSAGE_FILE = re.compile(r"msg(\d{4})\.[A-Za-z0-9]+")
_LEFTOVER_AGE = 24 * 3600.0  # a staging folder this old belongs to a copy that died


@dataclass
class SpoolCopy:
    """A copy of the spool in `root`: `files` relative to it (posix), in the order to archive."""

    root: Path
    files: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # "context/mailbox" -> messages
    pending: int = 0  # recordings not delivered yet (journal entries)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class SpoolContents:
    """What a spool holds, for refusing to restore over it."""

    messages: int
    mailboxes: int  # mailboxes with messages or a greeting
    pending: int

    @property
    def empty(self) -> bool:
        return not (self.messages or self.mailboxes or self.pending)


def copy_spool(spool_dir: Path) -> SpoolCopy:
    """A consistent copy of the mailboxes and the undelivered recordings (see the module doc)."""
    if not spool_dir.is_dir():
        return SpoolCopy(Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX)))
    _remove_leftovers(spool_dir, BACKUP_PREFIX)
    copy = SpoolCopy(_private_folder(spool_dir, BACKUP_PREFIX))
    try:
        _copy_pending(spool_dir / RECORDING, copy)  # first: see the module doc
        root = spool_dir / VOICEMAIL
        for context in _folders(root):
            for box in _folders(context):
                count = _copy_mailbox(box, copy)
                copy.messages[f"{context.name}/{box.name}"] = count
    except BaseException:
        copy.discard()
        raise
    return copy


def _copy_pending(recordings: Path, copy: SpoolCopy) -> None:
    if not recordings.is_dir():
        return
    for sidecar in sorted(recordings.rglob("*.json")):
        name = sidecar.relative_to(recordings).with_suffix("").as_posix()
        if not is_name(name) or not _grab(sidecar, copy, f"{RECORDING}/{name}.json"):
            continue  # not a journal entry, or delivered meanwhile
        copy.pending += 1
        _grab(sidecar.with_suffix(".wav"), copy, f"{RECORDING}/{name}.wav")  # none: never started


def _copy_mailbox(box: Path, copy: SpoolCopy) -> int:
    """Links the mailbox's messages and greetings under its locks; the number of messages."""
    base = f"{VOICEMAIL}/{box.parent.name}/{box.name}"
    order = {name: index for index, name in enumerate(FOLDERS)}  # app_voicemail's lock order
    folders = sorted((f for f in _folders(box) if f.name not in _SKIPPED_FOLDERS),
                     key=lambda f: (order.get(f.name, len(order)), f.name))
    count = 0
    with contextlib.ExitStack() as locks:
        locks.enter_context(mailbox_lock(box / ".vipbx.lock"))
        for folder in folders:
            locks.enter_context(asterisk_path_lock(folder))
        for path in sorted(box.iterdir()):
            if not path.name.startswith("."):  # greetings (unavail, busy, ...)
                _grab(path, copy, f"{base}/{path.name}")
        for folder in folders:
            numbers = set(_numbers(folder))  # a message is its .txt; audio without one is a leftover
            for name in sorted(os.listdir(folder)):
                found = _MESSAGE_FILE.fullmatch(name)
                if found and int(found.group(1)) in numbers:
                    _grab(folder / name, copy, f"{base}/{folder.name}/{name}")
            count += len(numbers)
    return count


def _grab(source: Path, copy: SpoolCopy, relative: str) -> bool:
    """`source` into the copy as `relative`: a hard link, else a copy. False if it is gone, or
    not a regular file: the spool belongs to Asterisk's account, and a symlink it planted there
    must not make a backup run as root read (and a restore write back) some other file."""
    if not _regular(source):
        return False
    target = copy.root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        try:
            shutil.copy2(source, target, follow_symlinks=False)
        except FileNotFoundError:
            return False
    copy.files.append(relative)
    return True


def spool_contents(spool_dir: Path) -> SpoolContents:
    messages = mailboxes = 0
    for context in _folders(spool_dir / VOICEMAIL):
        for box in _folders(context):
            count = sum(len(_numbers(folder)) for folder in _folders(box))
            greeting = any(not p.name.startswith(".") and _regular(p) for p in box.iterdir())
            messages += count
            mailboxes += bool(count or greeting)
    recordings = spool_dir / RECORDING
    pending = sum(1 for p in recordings.rglob("*.json")
                  if is_name(p.relative_to(recordings).with_suffix("").as_posix())) if recordings.is_dir() else 0
    return SpoolContents(messages, mailboxes, pending)


# ---------------------------------------------------------------------------------- restore


class SpoolRestore:
    """Files of a copy put together beside the spool (`path`), then swapped in (`commit`)."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool = spool_dir
        if not spool_dir.is_dir():
            # A fresh home: Asterisk's start gives the spool to its account (asterisk_host).
            spool_dir.mkdir(parents=True)
            os.chmod(spool_dir, DIR_MODE)
        _remove_leftovers(spool_dir, RESTORE_PREFIX)
        self.stage = _private_folder(spool_dir, RESTORE_PREFIX)
        self.new, self.old = self.stage / "new", self.stage / "old"
        self._renamed: list[tuple[Path, Path]] = []  # (from, to), to undo in reverse
        self._made: list[Path] = []  # folders made in the spool, removed by undo

    def path(self, relative: str) -> Path:
        """Where the copy's `voicemail/...` or `recording/...` file is staged."""
        parts = relative.split("/")
        if parts[0] not in (VOICEMAIL, RECORDING) or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a spool file of a backup: {relative!r}")
        target = self.new / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self) -> None:
        """Owner and modes as the running system expects, then everything renamed into place."""
        owner = _owner(self.spool)
        for path in _tree(self.new):
            _settle(path, owner)
        self.old.mkdir()
        live = self.spool / VOICEMAIL
        staged = self.new / VOICEMAIL
        if not staged.exists():  # a backup of a spool without mailboxes
            staged.mkdir(parents=True)
            _settle(staged, owner)
        if live.exists():
            self._rename(live, self.old / VOICEMAIL)
        self._rename(staged, live)
        recordings = self.new / RECORDING
        if recordings.is_dir():
            # Merged, not replaced: the target's own undelivered recordings stay. Audio before its
            # entry, so the orphan scan never finds an entry whose audio is still to come.
            files = sorted((p for p in recordings.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".json", p))
            for path in files:
                relative = path.relative_to(self.new)
                target = self.spool / relative
                self._mkdirs(target.parent, owner)
                if target.exists():
                    aside = self.old / relative
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    self._rename(target, aside)
                self._rename(path, target)
                fsync_dir(target.parent)
        fsync_dir(self.spool)

    def undo(self) -> None:
        """Back to the spool as it was before `commit`."""
        for source, target in reversed(self._renamed):
            with contextlib.suppress(FileNotFoundError):
                os.rename(target, source)
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never what someone else put there meanwhile
        self._renamed.clear()
        self._made.clear()

    def discard(self) -> None:
        """Removes the staging folder, with what `commit` replaced."""
        shutil.rmtree(self.stage, ignore_errors=True)

    def _rename(self, source: Path, target: Path) -> None:
        os.rename(source, target)
        self._renamed.append((source, target))

    def _mkdirs(self, folder: Path, owner: tuple[int, int] | None) -> None:
        missing = [p for p in (folder, *folder.parents) if p.is_relative_to(self.spool) and not p.exists()]
        for path in reversed(missing):
            path.mkdir()
            self._made.append(path)
            _settle(path, owner)


def _owner(spool: Path) -> tuple[int, int] | None:
    """The spool's owner and group when running as root; None (keep ours) otherwise."""
    if os.geteuid() != 0:
        return None
    st = os.stat(spool)
    return st.st_uid, st.st_gid


def _settle(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)
    os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)  # chown clears set-group-ID: after it


def _tree(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield Path(folder) / name


def _folders(parent: Path) -> list[Path]:
    """Sub-folders that may be contexts, mailboxes or message folders (no hidden ones)."""
    try:
        entries = sorted(parent.iterdir())
    except FileNotFoundError:
        return []
    return [p for p in entries if _NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _private_folder(parent: Path, prefix: str) -> Path:
    folder = parent / f"{prefix}{secrets.token_hex(6)}"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def _remove_leftovers(spool_dir: Path, prefix: str) -> None:
    """Staging folders of a backup or restore that died long ago (never one that may still run)."""
    now = time.time()
    for path in spool_dir.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > _LEFTOVER_AGE:
                shutil.rmtree(path)
