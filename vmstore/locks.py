"""Locks around changes to a mailbox.

Two locks, always taken in this order:
- `mailbox_lock`: fcntl.flock on `<mailbox>/.vipbx.lock`, which serialises our own threads and
  processes and is released by the kernel if a holder dies;
- `asterisk_path_lock`: the lock app_voicemail itself takes on a folder (`ast_lock_path` in its
  default `lockmode=lockfile`: link a temp file to `<folder>/.lock`), so a native VoiceMail() or
  VoiceMailMain() on the same mailbox never numbers a message at the same time as we do.
  app_voicemail never breaks a stale `.lock` (it gives up after 5 s and drops the message), so we
  hold it for a few renames only, and break one that is clearly stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o660
LOCK_WAIT = 10.0  # seconds to wait for a lock before StoreBusy
STALE_AFTER = 15.0  # an Asterisk `.lock` older than this outlived its holder (holds last ms)


class StoreBusy(RuntimeError):
    """A mailbox stayed locked for too long."""


@contextlib.contextmanager
def mailbox_lock(lock_file: Path, timeout: float = LOCK_WAIT) -> Iterator[None]:
    # A fresh open file description per call: flock then also excludes threads of this process.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # the umask must not lock out Asterisk's group
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{lock_file.parent} locked for over {timeout:.0f} s") from None
                time.sleep(0.002)
        yield
    finally:
        os.close(fd)  # also releases the flock


@contextlib.contextmanager
def asterisk_path_lock(folder: Path, timeout: float = LOCK_WAIT) -> Iterator[None]:
    """app_voicemail's folder lock; call only while holding `mailbox_lock` (stale breaking
    relies on no other process of ours racing for it)."""
    lock = folder / ".lock"
    temp = folder / f".lock-{secrets.randbits(32):08x}"
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.link(temp, lock)
                break
            except FileExistsError:
                _break_if_stale(lock)
                if time.monotonic() > deadline:
                    raise StoreBusy(f"{folder} held by Asterisk for over {timeout:.0f} s") from None
                time.sleep(0.002)
    finally:
        temp.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _break_if_stale(lock: Path) -> None:
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_AFTER:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


