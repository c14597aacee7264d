"""PCM WAV length and header repair.

Asterisk writes the RIFF sizes when it closes a recording; a recording cut short by a crash keeps
a header that claims too little (often 0 bytes), and Asterisk plays only what the header claims.
So lengths come from the file size, and an orphan's header is rewritten before delivery.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _Layout:
    byte_rate: int  # bytes of audio per second
    data_offset: int  # where the `data` chunk's audio starts
    declared: int  # what the `data` chunk header says

    def audio_bytes(self, file_size: int) -> int:
        # A header that claims nothing or more than there is was never finished: trust the size.
        remainder = max(0, file_size - self.data_offset)
        return self.declared if 0 < self.declared <= remainder else remainder


def _layout(path: Path) -> _Layout | None:
    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        elif chunk == b"data":
            return _Layout(byte_rate, pos + 8, size) if byte_rate else None
        pos += 8 + size + (size & 1)
    return None


def duration(path: Path) -> float:
    """Seconds of audio in a PCM WAV, from its size (a truncated header does not matter);
    0.0 for a missing or unreadable file."""
    try:
        layout = _layout(path)
        size = path.stat().st_size
    except OSError:
        return 0.0
    if layout is None:
        return 0.0
    return layout.audio_bytes(size) / layout.byte_rate


def repair_header(path: Path) -> bool:
    """Make the RIFF and `data` sizes match the file (audio is the last chunk, as Asterisk writes
    it). True if the header was rewritten. Only for files nobody is writing any more."""
    try:
        layout = _layout(path)
        size = path.stat().st_size
    except OSError:
        return False
    if layout is None:
        return False
    data = layout.audio_bytes(size)
    if layout.declared == data:
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, struct.pack("<I", size - 8), 4)
        os.pwrite(fd, struct.pack("<I", data), layout.data_offset - 4)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
