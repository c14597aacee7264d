"""`vipbx restore`: an archive back into a home, whole or not at all.

Order, so that a refusal or a failure leaves the home as it was:
1. the whole archive is read and every member checked against the manifest (nothing touched);
2. refusals: a newer archive format or schema, another call-state backend, and (without
   `force`) a target that already has messages, greetings, undelivered recordings or call state;
3. every file is extracted into staging folders inside the target (the spool's beside the spool,
   the database's in the home), the database copy migrated forward when older;
4. the spool is swapped in by renames, then the call state is installed in one step (one SQLite
   backup step into the live file, or one PostgreSQL transaction); if that fails, the renames
   are undone;
5. the staging folders, with what the restore replaced, are removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from base.model import Config
from base.paths import Paths
from base.private import private_dir
from base.progress import SILENT, Progress
from callstate import StorageError
from callstate import dump as state_dump
from vmstore import StoreBusy, snapshot

from .archive import Manifest, extract, verify
from .errors import BackupError, Refused, plural

SecretGetter = Callable[[str], str]
STAGE_PREFIX = ".vipbx-restore-"


@dataclass(frozen=True)
class Restored:
    manifest: Manifest
    schema_version: int  # of the call state now: the archive's, migrated forward


def restore_backup(paths: Paths, config: Config, secret: SecretGetter, archive: Path, *,
                   force: bool = False, progress: Progress = SILENT) -> Restored:
    manifest = verify(archive, progress)
    settings = config.platform.state_database
    dump = state_dump.Dump(manifest.backend, manifest.schema_version, manifest.tables, manifest.columns)
    expected = {f"callstate/{name}" for name in dump.files}
    if not expected <= set(manifest.files):
        raise Refused(f"{archive} lacks its call-state files ({', '.join(sorted(expected - set(manifest.files)))})")
    try:
        state_dump.check_restorable(manifest.schema_version)
    except StorageError as exc:
        raise Refused(f"{archive} was made by vipbx {manifest.vipbx_version}: {exc}") from exc
    if manifest.backend != settings.backend:
        raise Refused(f"{archive} holds a {manifest.backend} call state and this configuration uses "
                      f"{settings.backend}: restore it with a configuration of the same backend")
    if not force:
        _refuse_over_existing(paths, config, secret)

    paths.home.mkdir(parents=True, exist_ok=True)
    stage = private_dir(paths.home / f"{STAGE_PREFIX}{os.getpid()}")
    try:
        spool = snapshot.SpoolRestore(paths.spool)
        try:
            version = _put_in_place(paths, config, secret, archive, manifest, dump, stage, spool, force, progress)
        finally:
            spool.discard()  # with what the restore replaced
    except state_dump.StateNotEmpty as exc:
        raise Refused(f"{paths.home}: {exc} (written meanwhile?); nothing was changed, "
                      "--force replaces it") from exc
    except (StorageError, StoreBusy, OSError, ValueError) as exc:
        raise BackupError(f"restore into {paths.home} failed, nothing was changed: {exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Restored(manifest, version)


def _put_in_place(paths: Paths, config: Config, secret: SecretGetter, archive: Path, manifest: Manifest,
                  dump: state_dump.Dump, stage: Path, spool: snapshot.SpoolRestore, force: bool,
                  progress: Progress) -> int:
    """Steps 3 and 4 of the module doc; the call state's schema version afterwards."""
    folder = private_dir(stage / "callstate")
    state_files = {f"callstate/{name}" for name in dump.files}

    def place(name: str) -> Path:
        if name in state_files:
            return folder / name.partition("/")[2]
        if name.startswith("spool/"):
            return spool.path(name.partition("/")[2])
        raise BackupError(f"{archive}: no place for {name}")

    extract(archive, manifest, place, progress)
    state = state_dump.loader(config.platform.state_database, paths.home, secret, folder, dump, replace=force)
    state.prepare()
    os.sync()  # every restored byte on disk before any of it is renamed into place
    try:
        spool.commit()
        return state.install()
    except BaseException:
        spool.undo()
        raise


def _refuse_over_existing(paths: Paths, config: Config, secret: SecretGetter) -> None:
    found = snapshot.spool_contents(paths.spool)
    if not found.empty:
        pending = f", {plural(found.pending, 'recording')} not delivered" if found.pending else ""
        raise Refused(f"{paths.home} already has voicemail ({plural(found.messages, 'message')} in "
                      f"{plural(found.mailboxes, 'mailbox')}{pending}): --force replaces it")
    try:
        rows = state_dump.state_rows(config.platform.state_database, paths.home, secret)
    except StorageError as exc:
        raise BackupError(f"cannot read the call state of {paths.home}: {exc}") from exc
    if rows:
        raise Refused(f"{paths.home} already has call state ({plural(rows, 'row')}): --force replaces it")
