"""`vipbx backup`: the call state and the voicemail spool of a home into one archive, consistent
while the service runs (each part copied as callstate/dump.py and vmstore/snapshot.py explain)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from base.model import Config
from base.paths import Paths
from base.progress import SILENT, Progress
from callstate import dump as state_dump
from vmstore import snapshot

from .archive import ArchiveWriter, Manifest
from .errors import BackupError

SecretGetter = Callable[[str], str]


def vipbx_version() -> str:
    try:
        return metadata.version("vipbx")
    except metadata.PackageNotFoundError:
        return "unknown"  # run from a checkout that was never installed


def make_backup(paths: Paths, config: Config, secret: SecretGetter, out: Path,
                progress: Progress = SILENT) -> tuple[Manifest, int]:
    """Writes the archive `out` (replaced whole if it exists); its manifest and size in bytes."""
    out = out.absolute()
    if not out.parent.is_dir():
        raise BackupError(f"no folder {out.parent} to write {out.name} into")
    # The database copy waits beside the archive (the same disk the archive needs anyway).
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # 0700
    try:
        folder = work / "callstate"
        folder.mkdir(mode=0o700)
        dump = state_dump.dump(config.platform.state_database, paths.home, secret, folder)
        spool = snapshot.copy_spool(paths.spool)
        try:
            members = [(f"callstate/{name}", folder / name) for name in dump.files]
            members += [(f"spool/{name}", spool.root / name) for name in spool.files]
            manifest = Manifest(
                vipbx_version=vipbx_version(),
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                backend=dump.backend, schema_version=dump.schema_version, tables=dump.rows,
                columns=dump.columns, mailboxes=spool.messages, pending_recordings=spool.pending,
            )
            size = _write(out, members, manifest, progress)
        finally:
            spool.discard()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest, size


def _write(out: Path, members: list[tuple[str, Path]], manifest: Manifest, progress: Progress) -> int:
    writer = ArchiveWriter(out)
    progress.begin("backing up", len(members))
    try:
        for name, path in members:
            writer.add(name, path)
            progress.advance()
        manifest.files = dict(writer.files)
        return writer.finish(manifest)
    except BaseException:
        writer.abandon()  # no partial archive under any name
        raise
    finally:
        progress.end()
