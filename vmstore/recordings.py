"""Where ARI records: `<astspooldir>/recording/<name>.wav`, a name possibly holding a subfolder.

Handlers know recordings by name only; this module turns names into files and playable sounds.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from . import wav as wavfile
from .store import _mkdir, playback_name

FOLDER = "vipbx"  # our recordings stay apart from anything else recorded on the machine
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def checked(name: str) -> str:
    """`name` if it is a recording name that stays inside the recordings folder, else ValueError."""
    if not all(_PART.fullmatch(part) for part in name.split("/")):
        raise ValueError(f"not a recording name: {name!r}")
    return name


def is_name(name: str) -> bool:
    return all(_PART.fullmatch(part) for part in name.split("/"))


class Recordings:
    def __init__(self, recordings_dir: Path) -> None:
        self.dir = Path(recordings_dir)

    def new_name(self, prefix: str = "") -> str:
        """A fresh name to record under. Asterisk makes subfolders of the recordings folder but not
        that folder itself, which a fresh install lacks: without it ARI refuses to record."""
        for folder in (self.dir, self.dir / FOLDER):
            _mkdir(folder)  # Asterisk's group must be able to write there
        return f"{FOLDER}/{prefix}{uuid.uuid4()}"

    def audio(self, name: str) -> Path:
        return self.dir / f"{checked(name)}.wav"

    def sound(self, name: str) -> str:
        """What Asterisk plays for the recording (`sound:` takes a file name without format)."""
        return playback_name(self.audio(name))

    def seconds(self, name: str) -> float:
        return wavfile.duration(self.audio(name))

    def space_left(self) -> int:
        """Bytes free for recordings on their file system (what an unprivileged writer may use)."""
        folder = self.dir
        while not folder.is_dir() and folder != folder.parent:  # not made yet: where it will be
            folder = folder.parent
        stats = os.statvfs(folder)
        return stats.f_bavail * stats.f_frsize

    def discard(self, name: str) -> None:
        self.audio(name).unlink(missing_ok=True)
