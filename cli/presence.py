"""`vipbx presence show|set USER ...`: users' activities, for operators.

USER is `user@tenant` or the user's E.164 number. A change goes through the call-state service
(audited, source "cli"), then to Asterisk so that subscribed phones see it at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import click

from ari_app.voice import SPOKEN_TIME_ZONE
from callstate import Presence

from . import args as cliargs
from .context import Selected, deployed_ami, operator_name, user_service

config_files = cliargs.config_files()


def _show(target: Selected, presence: Presence) -> None:
    until = presence.until.astimezone(SPOKEN_TIME_ZONE).strftime("%Y-%m-%d %H:%M %Z") if presence.until else "-"
    activity = target.who.tenant.activity(presence.activity)
    click.echo(f"presence of {target.who.label}:")
    for label, value in (("activity", presence.activity), ("until", until), ("note", presence.note or "-"),
                         ("shown to phones as", activity.presence if activity else "available"),
                         ("calls", activity.route if activity else "ring"),
                         ("role", target.who.user.role or "-")):
        click.echo(f"  {label + ':':<20}{value}")


def parse_until(text: str, now: datetime) -> datetime:
    """`HH:MM` (today, else tomorrow), `YYYY-MM-DD [HH:MM]`, or a duration `30m`, `2h`, `3d`;
    times in the service's spoken time zone."""
    text = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days", "s": "seconds"}
    if text[:-1].isdigit() and text[-1:] in units:
        try:
            delta = timedelta(**{units[text[-1]]: int(text[:-1])})
            if text[-1] == "d":
                return now + delta  # the same clock time N days on, whatever the summer time
            return (now.astimezone(UTC) + delta).astimezone(now.tzinfo)  # elapsed time, across a DST change
        except OverflowError:
            raise click.BadParameter(f"{text!r} is too far away", param_hint="--until") from None
    for form in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=now.tzinfo)
        except ValueError:
            pass
    try:
        clock = datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise click.BadParameter(f"{text!r}: give HH:MM, YYYY-MM-DD [HH:MM], or 30m / 2h / 3d",
                                 param_hint="--until") from None
    moment = datetime.combine(now.date(), clock, now.tzinfo)
    return moment if moment > now else moment + timedelta(days=1)


@click.group("presence")
def presence_group() -> None:
    """Show and change users' activities (presence)."""


@presence_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def presence_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """USER's activity, its end time and note, and what it does."""
    with user_service(ctx, user, files) as (target, service):
        _show(target, service.presence(target.who.tenant.id, target.who.user.id))


@presence_group.command("set")
@click.argument("user")
@click.argument("activity")
@config_files
@click.option("--until", "until_text", metavar="WHEN", default=None,
              help="End time, after which USER is Available again: HH:MM, 'YYYY-MM-DD [HH:MM]' "
                   "(service time zone) or a duration such as 30m, 2h, 3d.")
@click.option("--note", default=None, help="USER's own note shown with the presence ('' clears it).")
@click.pass_context
def presence_set(ctx: click.Context, user: str, activity: str, files: tuple[str, ...], until_text: str | None,
                 note: str | None) -> None:
    """Set USER's ACTIVITY (a key of the tenant's list, e.g. vacation); tell Asterisk."""
    from ari_app.presence.asterisk import presence_id, presence_value, publish

    until = parse_until(until_text, datetime.now(SPOKEN_TIME_ZONE)) if until_text else None
    with user_service(ctx, user, files) as (target, service):
        presence = service.set_presence(target.who.tenant.id, target.who.user.id, activity, until=until, note=note,
                                        actor=operator_name(), source="cli")
    _show(target, presence)
    ami = deployed_ami(target.paths, target.config)
    item = (presence_id(target.who.tenant.id, target.who.user.id), presence_value(target.who.tenant, presence))
    if ami is None or asyncio.run(publish(ami, [item], timeout=5)) != 1:
        click.echo("note: Asterisk not reachable: phones see the change when the service next starts",
                   err=True)
