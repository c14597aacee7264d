"""The backup file: one gzip-compressed tar (Python 3.11's standard library has no zstd).

    callstate/state.sqlite3                     SQLite: the database, one self-contained file
    callstate/<table>.copy                      PostgreSQL: each table in COPY's text format
    spool/voicemail/<context>/<mailbox>/...     messages (INBOX, Old, ...) and greetings
    spool/recording/...                         recordings not delivered yet (journal entries)
    manifest.json                               last: what the archive holds, a sha256 per member

It is written under a temporary name beside the final one, owner-only from its first byte (it
holds messages, PIN lockouts, conference PINs and login sessions), and renamed once complete, so a
file of the final name is always a whole archive. The manifest comes last because only then is
every member's digest known; a reader therefore reads the whole archive once to check it
(`verify`) before anything is extracted (`extract`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from base.durable import fsync_dir
from base.progress import Progress

from .errors import BackupError, Refused

FORMAT = 1  # bumped when a reader of an older vipbx could not restore the archive
MANIFEST = "manifest.json"
PARTS = ("callstate", "spool")  # the top folders of an archive
FILE_MODE = 0o600
_MANIFEST_LIMIT = 64 << 20
_CHUNK = 1 << 20
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]*")  # never "", "." or ".."
_DAMAGED = (tarfile.TarError, EOFError, zlib.error)


@dataclass(frozen=True)
class Member:
    sha256: str
    size: int


@dataclass
class Manifest:
    vipbx_version: str
    created_at: str  # UTC, ISO 8601
    backend: str  # the call state's: sqlite or postgresql
    schema_version: int
    tables: dict[str, int]  # rows per table
    columns: dict[str, list[str]]  # PostgreSQL: each COPY file's columns
    mailboxes: dict[str, int]  # "context/mailbox" -> messages
    pending_recordings: int
    files: dict[str, Member] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def messages(self) -> int:
        return sum(self.mailboxes.values())

    @property
    def rows(self) -> int:
        return sum(count for table, count in self.tables.items() if table != "schema_version")

    def to_json(self) -> bytes:
        data = {
            "format": self.format, "vipbx_version": self.vipbx_version, "created_at": self.created_at,
            "callstate": {"backend": self.backend, "schema_version": self.schema_version,
                          "rows": self.tables, "columns": self.columns},
            "voicemail": {"messages": self.mailboxes, "pending_recordings": self.pending_recordings},
            "files": {name: {"sha256": m.sha256, "size": m.size} for name, m in sorted(self.files.items())},
        }
        return json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw: dict[str, Any] = json.loads(data)
            state, voicemail = raw["callstate"], raw["voicemail"]
            return cls(
                format=int(raw["format"]), vipbx_version=str(raw["vipbx_version"]),
                created_at=str(raw["created_at"]), backend=str(state["backend"]),
                schema_version=int(state["schema_version"]),
                tables={str(k): int(v) for k, v in state["rows"].items()},
                columns={str(k): [str(c) for c in v] for k, v in state["columns"].items()},
                mailboxes={str(k): int(v) for k, v in voicemail["messages"].items()},
                pending_recordings=int(voicemail["pending_recordings"]),
                files={str(k): Member(str(v["sha256"]), int(v["size"])) for k, v in raw["files"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise Refused(f"the manifest cannot be read ({type(exc).__name__}: {exc})") from exc


def member_name(name: str) -> bool:
    """A name an archive may hold: the manifest, or a path below `callstate/` or `spool/`
    without absolute, empty, `.` or `..` parts."""
    parts = name.split("/")
    return name == MANIFEST or (len(parts) >= 2 and parts[0] in PARTS and all(_PART.fullmatch(p) for p in parts))


class ArchiveWriter:
    """Members in, then `finish(manifest)`; `abandon()` if anything failed (no file is left)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        fd, temp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)  # 0600
        self._temp = Path(temp)
        self._raw = os.fdopen(fd, "wb")
        os.fchmod(fd, FILE_MODE)
        # Both stay open until finish() or abandon().
        self._tar = tarfile.open(fileobj=self._raw, mode="w:gz", compresslevel=6,  # noqa: SIM115
                                 format=tarfile.PAX_FORMAT)
        self.files: dict[str, Member] = {}

    def add(self, name: str, path: Path) -> None:
        if not member_name(name) or name == MANIFEST:
            raise BackupError(f"cannot archive {path} as {name!r}")
        # Never through a symlink, never a FIFO or device: only the regular file itself.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise BackupError(f"cannot archive {path}: {exc.strerror or exc}") from exc
        with open(fd, "rb") as source:
            st = os.fstat(source.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BackupError(f"cannot archive {path}: not a regular file")
            info = self._info(name, st.st_size, st.st_mtime)
            # A recording still being written grows meanwhile: exactly `size` bytes are archived.
            reader = _Hashing(source)
            self._tar.addfile(info, reader)
        self.files[name] = Member(reader.hexdigest(), st.st_size)

    def finish(self, manifest: Manifest) -> int:
        """Writes the manifest, makes the file durable and renames it to its name; its size."""
        data = manifest.to_json()
        self._tar.addfile(self._info(MANIFEST, len(data), time.time()), _BytesReader(data))
        self._tar.close()  # the end blocks and the gzip trailer; the file stays open
        self._raw.flush()
        os.fsync(self._raw.fileno())
        size = os.fstat(self._raw.fileno()).st_size
        self._raw.close()
        os.rename(self._temp, self.out)
        fsync_dir(self.out.parent)
        return size

    def abandon(self) -> None:
        for closing in (self._tar.close, self._raw.close):
            try:
                closing()
            except (OSError, ValueError, tarfile.TarError):
                pass
        self._temp.unlink(missing_ok=True)

    @staticmethod
    def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(mtime), FILE_MODE
        info.uname = info.gname = ""
        return info


def verify(path: Path, progress: Progress) -> Manifest:
    """The archive's manifest, once every member has been read and matches its digest and the
    manifest lists nothing more or less; Refused otherwise."""
    digests: dict[str, Member] = {}
    manifest: bytes | None = None
    try:
        with open(path, "rb") as raw:
            progress.begin("checking", os.fstat(raw.fileno()).st_size)
            with tarfile.open(fileobj=cast(BinaryIO, _Counting(raw, progress)), mode="r|gz") as tar:
                for member in tar:
                    _check(member)
                    if member.name in digests:
                        raise Refused(f"{path}: {member.name} is in the archive twice")
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file (checked)
                    if member.name == MANIFEST:
                        if member.size > _MANIFEST_LIMIT:
                            raise Refused(f"{path}: the manifest is too large")
                        manifest = source.read()
                        digests[MANIFEST] = Member("", len(manifest))
                    else:
                        digests[member.name] = _digest(source)
    except _DAMAGED as exc:
        raise Refused(f"{path} is damaged or not a vipbx backup ({exc or type(exc).__name__})") from exc
    finally:
        progress.end()
    if manifest is None:
        raise Refused(f"{path} has no manifest: damaged, or not a vipbx backup")
    found = Manifest.from_json(manifest)
    if found.format > FORMAT:
        raise Refused(f"{path} was made by vipbx {found.vipbx_version} in a newer archive format "
                      f"({found.format}): restore it with that version or a newer one")
    del digests[MANIFEST]
    for name in sorted(set(found.files) | set(digests)):
        if name not in digests:
            raise Refused(f"{path} is damaged: {name} is missing")
        if name not in found.files:
            raise Refused(f"{path} is damaged: {name} is not in the manifest")
        if digests[name] != found.files[name]:
            raise Refused(f"{path} is damaged: {name} does not match its checksum")
    return found


def extract(path: Path, manifest: Manifest, place: Callable[[str], Path], progress: Progress) -> None:
    """Each member (the manifest aside) into the file `place(name)` names, which must not exist;
    its digest is checked again, as the archive could have changed since `verify`."""
    progress.begin("restoring", len(manifest.files))
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                _check(member)
                if member.name == MANIFEST:
                    continue
                expected = manifest.files.get(member.name)
                source = tar.extractfile(member)
                if expected is None or source is None:
                    raise BackupError(f"{path} changed while it was restored ({member.name})")
                target = place(member.name)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    got = _digest(source, out)
                if got != expected:
                    raise BackupError(f"{path} changed while it was restored ({member.name})")
                os.utime(target, (member.mtime, member.mtime))  # the orphan scan goes by age
                progress.advance()
    except _DAMAGED as exc:
        raise BackupError(f"{path} changed while it was restored ({exc})") from exc
    finally:
        progress.end()


def _check(member: tarfile.TarInfo) -> None:
    if not member.isreg() or not member_name(member.name):
        raise Refused(f"the archive holds {member.name!r}, which no vipbx backup holds")


def _digest(source: IO[bytes], out: IO[bytes] | None = None) -> Member:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return Member(digest.hexdigest(), size)


class _Hashing:
    """A reader that hashes what tarfile copies out of it."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self._digest.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at:end], min(end, len(self._data))
        return chunk


class _Counting:
    """The archive file, telling `progress` how many bytes were read."""

    def __init__(self, raw: BinaryIO, progress: Progress) -> None:
        self._raw, self._progress = raw, progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._progress.advance(len(chunk))
        return chunk


