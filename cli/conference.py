"""`vipbx conference show|pin USER`: users' conference rooms, for operators.

USER is `user@tenant` or the user's E.164 number. The PIN goes through the call-state service
(audited, source "cli"), the same one the home page and the conference number use; setting a PIN
also ends a lockout of the room.
"""

from __future__ import annotations

import click

from ari_app.conference.services import bridge_name, room_number
from callstate.conference_state import ConferenceRoom

from . import args as cliargs
from .context import Selected, operator_name, user_service

config_files = cliargs.config_files()


def _show(target: Selected, room: ConferenceRoom) -> None:
    status = room.status
    click.echo(f"conference room of {target.who.label}:")
    for label, value in (("call", target.config.platform.conference_number), ("room", room_number(target.who)),
                         ("PIN", "set" if room.open else "not set (the room is closed)"),
                         ("locked", status.describe() if status.locked else "no"),
                         ("bridge", bridge_name(target.who))):
        click.echo(f"  {label + ':':<10}{value}")


@click.group("conference")
def conference_group() -> None:
    """Show users' conference rooms and set their PINs."""


@conference_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def conference_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """USER's room: the number to call, the room number, whether a PIN is set, a lock. The PIN
    itself is shown only to the user, on the home page."""
    with user_service(ctx, user, files) as (target, service):
        _show(target, service.conferences.room(target.who.tenant.id, target.who.user.id))


@conference_group.command("pin")
@click.argument("user")
@click.argument("pin")
@config_files
@click.pass_context
def conference_pin(ctx: click.Context, user: str, pin: str, files: tuple[str, ...]) -> None:
    """Set the PIN of USER's room (the tenant's pin_digits to 10 digits, not weak); this also
    unlocks the room."""
    with user_service(ctx, user, files) as (target, service):
        room = service.conferences.set_pin(target.who.tenant.id, target.who.user.id, pin,
                                           actor=operator_name(), source="cli")
    _show(target, room)
