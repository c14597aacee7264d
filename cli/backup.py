"""`vipbx backup` and `vipbx restore`: the call state and the voicemail spool (docs/backup.md).

On a terminal a progress bar runs on stderr; in a script (stderr not a terminal) the commands
print nothing but their one-line summary, and refuse or fail with one line and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import click

from backup import BackupError, Manifest, make_backup, plural, restore_backup
from base.model import Config
from base.paths import Paths
from base.secrets import MissingSecret, ReadOnlySecrets
from callstate import StorageError
from vmstore import StoreBusy
from vmstore.mwi import refresh_all_mwi

from . import args as cliargs
from .asterisk import running_pid
from .context import deployed_ami, load, paths_of
from .progress import progress

config_files = cliargs.config_files()
# Their INFO lines (a migration applied to a restored database) would break the quiet of a script.
_QUIET_LOGGERS = ("callstate", "vmstore", "backup")


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Our modules' INFO lines off, unless `-v` asked for debug."""
    if logging.getLogger().level <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    try:
        yield
    except (BackupError, StorageError, StoreBusy) as exc:
        raise click.ClickException(" ".join(str(exc).split())) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc
    except MissingSecret as exc:
        # A made-up password would only be refused by the database: say what is missing.
        raise click.ClickException(f"secrets.json (VIPBX_HOME) has no {exc} secret: copy the platform's "
                                   "secrets.json into this home first (docs/backup.md)") from exc


def contents(manifest: Manifest) -> str:
    """What an archive holds, for the summary line."""
    pending = manifest.pending_recordings
    undelivered = f", {plural(pending, 'recording')} not delivered yet" if pending else ""
    boxes = sum(1 for count in manifest.mailboxes.values() if count)
    return (f"{plural(manifest.messages, 'message')} in {plural(boxes, 'mailbox')}{undelivered}; call state "
            f"({manifest.backend}, schema {manifest.schema_version}) {plural(manifest.rows, 'row')}")


@click.command("backup")
@config_files
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write (.tar.gz); replaced whole if it exists.")
@click.pass_context
def backup_command(ctx: click.Context, files: tuple[str, ...], out: Path) -> None:
    """Write the call-state database and the voicemail spool into one archive (mode 0600).

    Safe while calls run: the database is copied as one consistent state, each mailbox under the
    lock its changes take. FILES tell which call-state database the platform uses.
    """
    config = load(files)
    paths = paths_of(ctx)
    with quiet_logs(), one_line_errors():
        manifest, size = make_backup(paths, config, ReadOnlySecrets(paths.secrets).get, out, progress())
    click.echo(f"backup {out}: {contents(manifest)}; {_size(size)}")


@click.command("restore")
@config_files
@click.option("--from", "source", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The archive `vipbx backup` wrote.")
@click.option("--force", is_flag=True, help="Replace the voicemail and call state the home already has.")
@click.pass_context
def restore_command(ctx: click.Context, files: tuple[str, ...], source: Path, force: bool) -> None:
    """Put an archive's call state and voicemail spool back into the home (VIPBX_HOME).

    Every file is checked against the archive's checksums first. A home that already has
    messages or call state is refused unless --force; the restore happens whole or not at all.
    Stop `vipbx serve` first when restoring into a running home (docs/backup.md). When the
    home's Asterisk runs, it is then asked to recount every mailbox, so the phones' message
    lights follow the restored messages.
    """
    config = load(files)
    paths = paths_of(ctx)
    with quiet_logs(), one_line_errors():
        done = restore_backup(paths, config, ReadOnlySecrets(paths.secrets).get, source, force=force,
                              progress=progress())
    migrated = (f", migrated to schema {done.schema_version}"
                if done.schema_version != done.manifest.schema_version else "")
    click.echo(f"restored {source} (made {done.manifest.created_at}) into {paths.home}: "
               f"{contents(done.manifest)}{migrated}")
    _refresh_message_lights(paths, config)


def _refresh_message_lights(paths: Paths, config: Config) -> None:
    """The phones' message lights follow the restored mailboxes when Asterisk runs; otherwise
    app_voicemail counts them when it starts."""
    settings = deployed_ami(paths, config)
    if settings is None or running_pid(paths) is None:
        return
    if asyncio.run(refresh_all_mwi(settings)):
        click.echo("message lights refreshed")
    else:
        click.echo("note: Asterisk did not take the message-light refresh; phones catch up at their "
                   "mailbox's next change", err=True)


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            break
    return f"{value:.1f} {unit}"
