"""Call recordings on disk: the files Asterisk's MixMonitor writes, one folder per user.

The dialplan (`vipbx-record`, docs/routing.md "Call recording") names each file
`<epoch>-<call id>-<in|out>-<other party>.wav` in `<spool>/call-recordings/<tenant>/<user>/`, so
the name is the metadata: when the call started, which call, its direction and the other
party's number; the length is read from the file. Nothing else has to be written when a call
ends, and a file an operator removes is simply gone from the list.

A recording id is the file name without `.wav`. It is only ever looked for in the asking user's
own folder, and only when it has exactly that shape (no path can be smuggled in).
"""

from __future__ import annotations

import re
import wave
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from base.paths import Paths

RECORDING_ID = re.compile(r"(?P<epoch>\d{9,11})-(?P<call>\d{1,40})-(?P<direction>in|out)-(?P<other>\+?\d{0,32})")
SUFFIX = ".wav"
# What MixMonitor writes for a .wav file: 8 kHz, 16-bit mono after a 44-byte header.
PCM_HEADER, PCM_BYTES_PER_SECOND = 44, 16000
# MixMonitor creates its file when the call starts ringing and writes audio only once it is
# answered: a file still without audio this long after is an unanswered call's, and is removed.
UNANSWERED_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Recording:
    id: str
    started: datetime
    direction: str  # "in" (a call to the user) or "out" (a call from the user's device)
    other: str  # the other party's number ("" when it had none)
    seconds: int
    path: Path


class RecordingFiles:
    """The recordings of each user, under `root` (`Paths.call_recordings`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of_home(cls, home: Path) -> RecordingFiles:
        return cls(Paths(home).call_recordings)

    def folder(self, tenant_id: str, user_id: str) -> Path:
        return self.root / tenant_id / user_id

    def recordings(self, tenant_id: str, user_id: str, now: datetime | None = None) -> list[Recording]:
        """The user's recordings with audio in them, newest first. Unanswered calls' empty files
        are tidied away here."""
        folder = self.folder(tenant_id, user_id)
        if not folder.is_dir():
            return []
        found: list[Recording] = []
        stale = (now or datetime.now(UTC)) - UNANSWERED_AFTER
        for path in folder.glob("*" + SUFFIX):
            recording = self._read(path)
            if recording is not None:
                found.append(recording)
            elif (match := RECORDING_ID.fullmatch(path.stem)) and _started(match) < stale:
                with suppress(OSError):
                    path.unlink()
        return sorted(found, key=lambda r: (r.started, r.id), reverse=True)

    def find(self, tenant_id: str, user_id: str, recording_id: str) -> Recording | None:
        """The user's recording of that id, else None (whatever the id holds)."""
        if not isinstance(recording_id, str) or not RECORDING_ID.fullmatch(recording_id):
            return None
        path = self.folder(tenant_id, user_id) / (recording_id + SUFFIX)
        return self._read(path) if path.is_file() and not path.is_symlink() else None

    def delete(self, tenant_id: str, user_id: str, recording_id: str) -> bool:
        """Removes the user's recording; False when they have none of that id."""
        found = self.find(tenant_id, user_id, recording_id)
        if found is None:
            return False
        found.path.unlink(missing_ok=True)
        return True

    @staticmethod
    def _read(path: Path) -> Recording | None:
        match = RECORDING_ID.fullmatch(path.name.removesuffix(SUFFIX))
        if match is None or not path.name.endswith(SUFFIX):
            return None
        seconds = audio_seconds(path)
        if seconds is None:
            return None
        return Recording(match.group(0), _started(match), match["direction"], match["other"], round(seconds), path)


def _started(match: re.Match[str]) -> datetime:
    return datetime.fromtimestamp(int(match["epoch"]), UTC)


def audio_seconds(path: Path) -> float | None:
    """The length of the audio, None when there is none. A recording still being written has no
    final header yet: its length is estimated from its size."""
    try:
        with wave.open(str(path), "rb") as audio:
            frames, rate = audio.getnframes(), audio.getframerate()
        if frames and rate:
            return frames / rate
    except (OSError, EOFError, wave.Error):
        pass
    try:
        size = path.stat().st_size
    except OSError:
        return None
    return (size - PCM_HEADER) / PCM_BYTES_PER_SECOND if size > PCM_HEADER else None
