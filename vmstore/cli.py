"""`vipbx voicemail ...`: users' messages and voicemail settings, for operators.

USER is `user@tenant` or the user's E.164 number. Messages are numbered from 1 per folder, oldest
first, as `list` shows them (1 is `msg0000`). Exporting a message does not mark it heard.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from asterisk_conf import cliargs
from asterisk_conf.ami import AmiSettings
from asterisk_conf.errors import ConfigError
from asterisk_conf.model import Config, Tenant, User
from asterisk_conf.render import AMI_USER
from asterisk_conf.secrets import SecretStore
from asterisk_conf.validate import load_config
from asterisk_host.cli import vipbx_home

from .mwi import refresh_mwi
from .store import FOLDERS, Message, VoicemailStore

config_files = cliargs.config_files()
folder_option = click.option("--folder", type=click.Choice(FOLDERS), default="INBOX", show_default=True)


@dataclass(frozen=True)
class Target:
    home: Path
    config: Config
    tenant: Tenant
    user: User

    @property
    def context(self) -> str:
        return self.tenant.id

    @property
    def mailbox(self) -> str:
        return self.user.mailbox

    @property
    def label(self) -> str:
        return f"{self.user.id}@{self.tenant.id} ({self.user.number})"

    def store(self) -> VoicemailStore:
        return VoicemailStore(self.home / "pbx" / "spool")

    def secrets(self) -> SecretStore:
        return SecretStore(self.home / "secrets.json")


def resolve(ctx: click.Context, who: str, files: tuple[str, ...]) -> Target:
    try:
        config = load_config(files)
    except ConfigError as exc:
        raise click.ClickException(f"the configuration has {len(exc.problems)} problem(s):\n{exc}") from exc
    home = vipbx_home(ctx)
    if "@" in who:
        user_id, _, tenant_id = who.partition("@")
        for tenant in config.tenants:
            if tenant.id == tenant_id:
                try:
                    return Target(home, config, tenant, tenant.user(user_id))
                except KeyError:
                    break
        raise click.ClickException(f"no user {user_id!r} in tenant {tenant_id!r}")
    number = who if who.startswith("+") else "+" + who
    found = config.find_number(number)
    if found is None:
        raise click.ClickException(f"no user has the number {number} (give user@tenant or an E.164 number)")
    return Target(home, config, *found)


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
    target = resolve(ctx, user, files)
    store = target.store()
    rows = [m for f in (FOLDERS if folder == "all" else (folder,)) for m in store.list(target.context, target.mailbox, f)]
    new, old = store.counts(target.context, target.mailbox)
    click.echo(f"{target.label}: {new} new, {old} old")
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


def _pick(target: Target, folder: str, n: int) -> Message:
    messages = target.store().list(target.context, target.mailbox, folder)
    if not 1 <= n <= len(messages):
        raise click.ClickException(f"{target.label} has no message {n} in {folder} ({len(messages)} there)")
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
    message = _pick(resolve(ctx, user, files), folder, n)
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
            shutil.copyfileobj(src, click.get_binary_stream("stdout"))
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
    target = resolve(ctx, user, files)
    message = _pick(target, folder, n)
    target.store().delete(message)
    click.echo(f"deleted {folder} message {n} of {target.label}")
    ami = ami_settings_of(target)
    if ami is None or not asyncio.run(refresh_mwi(ami, target.context, target.mailbox, timeout=3)):
        click.echo("note: Asterisk not reachable: phones see the change at its next mailbox poll", err=True)


def ami_settings_of(target: Target) -> AmiSettings | None:
    """AMI of the PBX, or None when it has never been deployed (no secrets yet)."""
    try:
        secret = json.loads((target.home / "secrets.json").read_text(encoding="utf-8")).get("ami")
    except (OSError, ValueError):
        return None
    if not secret:
        return None
    listener = target.config.platform.ami
    host = "127.0.0.1" if listener.bind in ("0.0.0.0", "::") else listener.bind
    return AmiSettings(host, listener.port, AMI_USER, secret)


@voicemail.command()
@click.argument("user")
@config_files
@click.option("--sms/--no-sms", default=None, help="Notify of new messages by SMS.")
@click.option("--email/--no-email", default=None, help="Notify by e-mail, with the recording.")
@click.option("--activity/--no-activity", default=None, help="Say the user's activity in the greeting.")
@click.option("--press1", metavar="E164", default=None, help="Offer 'press 1' to connect callers to this number.")
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
    target = resolve(ctx, user, files)
    from callstate import (  # written alongside; imported when used
        SettingsError,
        StorageError,
        open_service,
    )

    try:
        # SQLite or PostgreSQL as configured; the secrets are read for PostgreSQL's password only.
        service = open_service(target.config, target.home, target.secrets().get)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        if changes:
            current = service.update_voicemail_settings(target.tenant.id, target.user.id, actor=operator_name(),
                                                        source="cli", **changes)
            click.echo(f"updated: {', '.join(sorted(changes))}")
        else:
            current = service.voicemail_settings(target.tenant.id, target.user.id)
    except (SettingsError, StorageError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        getattr(service, "close", lambda: None)()
    yes = {True: "yes", False: "no"}
    click.echo(f"voicemail settings of {target.label}:")
    for label, value in (
        ("notify by SMS", yes[bool(current.notify_sms)]),
        ("notify by e-mail", yes[bool(current.notify_email)]),
        ("activity in greeting", yes[bool(current.play_activity)]),
        ("press 1 connects to", current.press1_number or "off"),
        ("always ask PIN", yes[bool(current.always_ask_pin)]),
    ):
        click.echo(f"  {label + ':':<22}{value}")


def operator_name() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "operator"
