"""`vipbx voicemail ...`: users' messages and voicemail settings, for operators.

USER is `user@tenant` or the user's E.164 number. Messages are numbered from 1 per folder, oldest
first, as `list` shows them (1 is `msg0000`). Exporting a message does not mark it heard.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from ari_app import pinlocks
from base.ami import AmiError
from vmstore.mwi import refresh_mwi
from vmstore.store import FOLDERS, Message, VoicemailStore

from . import args as cliargs
from .context import Selected, deployed_ami, operator_name, select_user, user_service

config_files = cliargs.config_files()
folder_option = click.option("--folder", type=click.Choice(FOLDERS), default="INBOX", show_default=True)


@click.group("voicemail")
def voicemail() -> None:
    """Users' voicemail messages and settings (Asterisk's voicemail spool in VIPBX_HOME/pbx/spool)."""


@voicemail.command("list")
@click.argument("user")
@config_files
@click.option("--folder", type=click.Choice([*FOLDERS, "all"]), default="all", show_default=True)
@click.pass_context
def list_command(ctx: click.Context, user: str, files: tuple[str, ...], folder: str) -> None:
    """List USER's messages: folder, number, caller, time, length."""
    target = select_user(ctx, user, files)
    store = VoicemailStore(target.paths.spool)
    rows = [m for f in (FOLDERS if folder == "all" else (folder,)) for m in store.list(target.who.context, target.who.mailbox, f)]
    new, old = store.counts(target.who.context, target.who.mailbox)
    click.echo(f"{target.who.label}: {new} new, {old} old")
    if not rows:
        click.echo("no messages")
        return
    table = [("FOLDER", "#", "FROM", "WHEN", "LENGTH")] + [_row(m) for m in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _row(message: Message) -> tuple[str, str, str, str, str]:
    e = message.envelope
    caller = " ".join(part for part in (f'"{e.caller_name}"' if e.caller_name else "", e.caller_number or "") if part)
    when = e.orig_time.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (message.folder, str(message.number + 1), caller or "unknown", when, f"{e.duration // 60}:{e.duration % 60:02d}")


def _pick(target: Selected, folder: str, n: int) -> Message:
    messages = VoicemailStore(target.paths.spool).list(target.who.context, target.who.mailbox, folder)
    if not 1 <= n <= len(messages):
        raise click.ClickException(f"{target.who.label} has no message {n} in {folder} ({len(messages)} there)")
    return messages[n - 1]


@voicemail.command()
@click.argument("user")
@click.argument("n", type=int)
@config_files
@folder_option
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the WAV here ('-': standard output).")
@click.option("--play", "play_it", is_flag=True, help="Play it on this machine's audio device (sox's `play`).")
@click.pass_context
def play(ctx: click.Context, user: str, n: int, files: tuple[str, ...], folder: str, out: Path | None,
         play_it: bool) -> None:
    """Export (--out) or play (--play) USER's message N. It stays as it is (new stays new)."""
    if (out is None) == (not play_it):
        raise click.UsageError("give exactly one of --out FILE and --play")
    message = _pick(select_user(ctx, user, files), folder, n)
    if play_it:
        player = shutil.which("play")
        if player is None:
            raise click.ClickException("`play` (package sox) is not installed: use --out FILE")
        done = subprocess.run([player, "-q", str(message.wav)], check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise click.ClickException("`play` failed (no audio device?): use --out FILE")
        return
    assert out is not None
    if str(out) == "-":
        with open(message.wav, "rb") as src:
            shutil.copyfileobj(src, sys.stdout.buffer)
        return
    shutil.copyfile(message.wav, out)
    click.echo(f"wrote {out} ({message.envelope.duration} s)", err=True)


@voicemail.command()
@click.argument("user")
@click.argument("n", type=int)
@config_files
@folder_option
@click.pass_context
def delete(ctx: click.Context, user: str, n: int, files: tuple[str, ...], folder: str) -> None:
    """Delete USER's message N (later ones move up), then update the phones' message light."""
    target = select_user(ctx, user, files)
    message = _pick(target, folder, n)
    VoicemailStore(target.paths.spool).delete(message)
    click.echo(f"deleted {folder} message {n} of {target.who.label}")
    ami = deployed_ami(target.paths, target.config)
    if ami is None or not asyncio.run(refresh_mwi(ami, target.who.context, target.who.mailbox, timeout=3)):
        click.echo("note: Asterisk not reachable: phones see the change at its next mailbox poll", err=True)


@voicemail.command()
@click.argument("user")
@config_files
@click.option("--sms/--no-sms", default=None, help="Notify of new messages by SMS.")
@click.option("--email/--no-email", default=None, help="Notify by e-mail, with the recording.")
@click.option("--activity/--no-activity", default=None, help="Say the user's activity in the greeting.")
@click.option("--press1", metavar="E164", default=None, help="Offer 'press 1' to connect callers to this number "
              "(the tenant's outbound policy must allow it: no premium-rate numbers).")
@click.option("--no-press1", is_flag=True, help="Stop offering 'press 1'.")
@click.option("--always-pin/--no-always-pin", default=None, help="Ask the PIN even when calling from the own number.")
@click.pass_context
def settings(ctx: click.Context, user: str, files: tuple[str, ...], sms: bool | None, email: bool | None,
             activity: bool | None, press1: str | None, no_press1: bool, always_pin: bool | None) -> None:
    """Show USER's voicemail settings; change those given as options (the same state as the
    user's home page, with an audit entry)."""
    if press1 is not None and no_press1:
        raise click.UsageError("--press1 and --no-press1 contradict each other")
    changes: dict[str, Any] = {
        key: value
        for key, value in (("notify_sms", sms), ("notify_email", email), ("play_activity", activity),
                           ("always_ask_pin", always_pin), ("press1_number", press1))
        if value is not None
    }
    if no_press1:
        changes["press1_number"] = None
    with user_service(ctx, user, files) as (target, service):
        if changes:
            current = service.update_voicemail_settings(target.who.tenant.id, target.who.user.id,
                                                        actor=operator_name(), source="cli", **changes)
            click.echo(f"updated: {', '.join(sorted(changes))}")
        else:
            current = service.voicemail_settings(target.who.tenant.id, target.who.user.id)
    yes = {True: "yes", False: "no"}
    click.echo(f"voicemail settings of {target.who.label}:")
    for label, value in (
        ("notify by SMS", yes[bool(current.notify_sms)]),
        ("notify by e-mail", yes[bool(current.notify_email)]),
        ("activity in greeting", yes[bool(current.play_activity)]),
        ("press 1 connects to", current.press1_number or "off"),
        ("always ask PIN", yes[bool(current.always_ask_pin)]),
    ):
        click.echo(f"  {label + ':':<22}{value}")


@voicemail.command("pin")
@click.argument("user")
@config_files
@click.option("--unlock", is_flag=True,
              help="Clear the wrong-PIN count, the lock and its escalation level (also in the native fallback).")
@click.pass_context
def pin_command(ctx: click.Context, user: str, files: tuple[str, ...], unlock: bool) -> None:
    """Show USER's PIN lockout: wrong PINs in the current series, the lock level (1: 15 min,
    2: 1 h, 3: 24 h, 4: until unlocked) and the lock; --unlock clears them (audited)."""
    with user_service(ctx, user, files) as (target, service):
        tenant_id, user_id = target.who.tenant.id, target.who.user.id
        before = service.pin_status(tenant_id, user_id)
        if unlock:
            service.reset_pin_lockout(tenant_id, user_id, actor=operator_name(), source="cli")
    ami = deployed_ami(target.paths, target.config)
    pending: int | None = None
    try:
        if ami is not None:
            pending = asyncio.run(pinlocks.pending_failures(ami, tenant_id, user_id))
            if unlock:
                asyncio.run(pinlocks.clear(ami, tenant_id, user_id))
    except (AmiError, OSError, TimeoutError) as exc:
        click.echo(f"note: Asterisk not reachable ({exc or type(exc).__name__}): the native fallback "
                   "is brought in step when the application next connects", err=True)
    click.echo(f"PIN lockout of {target.who.label}:")
    for label, value in (
        ("wrong PINs", str(before.failures)),
        ("lock level", str(before.level)),
        ("locked", before.describe() if before.locked else "no"),
        ("fallback wrong PINs", "?" if pending is None else str(pending)),
    ):
        click.echo(f"  {label + ':':<22}{value}")
    if unlock:
        click.echo("unlocked: wrong PINs, lock and level cleared")
