"""`vipbx forward ...` and `vipbx callwaiting ...`: users' forwards and call waiting, for operators.

USER is `user@tenant` or the user's E.164 number. Changes go through the call-state service, the
same one the 987 / *43# codes and the FastAGI router use, and are audited with source "cli".
"""

from __future__ import annotations

from collections.abc import Callable

import click

from callstate import CallStateService, SettingsError
from callstate.routing import KINDS, NO_ANSWER, NONE, Routing, parse_kind

from . import args as cliargs
from .context import Selected, operator_name, user_service

config_files = cliargs.config_files()

DESCRIPTIONS = {
    "immediate": "immediate (all calls)",
    "busy": "when busy",
    "no_answer": "no answer",
    "unreachable": "unreachable",
}


def _show_forwards(label: str, routing: Routing) -> None:
    click.echo(f"forwards of {label}:")
    for kind in KINDS:
        value = routing.forward(kind)
        if kind == NO_ANSWER and value != NONE:
            value = f"{value} after {routing.no_answer_seconds} s"
        click.echo(f"  {DESCRIPTIONS[kind] + ':':<24}{value}")
    click.echo(f"  {'call waiting:':<24}{'on' if routing.call_waiting else 'off'}")


@click.group("forward")
def forward_group() -> None:
    """Show and change users' call forwards (immediate, busy, no answer, unreachable)."""


@forward_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def forward_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Show USER's forwards and call waiting."""
    with user_service(ctx, user, files) as (target, service):
        _show_forwards(target.who.label, service.routing(target.who.tenant.id, target.who.user.id))


@forward_group.command("set")
@click.argument("user")
@click.argument("kind", metavar="KIND")
@click.argument("destination")
@config_files
@click.option("--delay", type=int, default=None, metavar="SECONDS",
              help="With KIND no_answer: seconds to ring before forwarding (5 to 120; default 20).")
@click.pass_context
def forward_set(ctx: click.Context, user: str, kind: str, destination: str, files: tuple[str, ...],
                delay: int | None) -> None:
    """Forward USER's calls of KIND (immediate, busy, no_answer, unreachable) to DESTINATION: a
    number (E.164, national like 040..., or a colleague's extension), `voicemail` or `none`.

    Numbers the tenant's outbound policy refuses (outside outbound.allow, premium-rate and other
    barred ranges), the service numbers and the user's own number are
    refused, as they are for the 987 code."""
    _change(ctx, user, files, lambda svc, t: svc.set_forward(
        t.who.tenant.id, t.who.user.id, _kind(kind), destination, actor=operator_name(), source="cli", no_answer_seconds=delay))


@forward_group.command("clear")
@click.argument("user")
@click.argument("kind", metavar="KIND")
@config_files
@click.pass_context
def forward_clear(ctx: click.Context, user: str, kind: str, files: tuple[str, ...]) -> None:
    """Remove USER's forward of KIND: a busy call then gets a busy signal, an unanswered or
    unreachable one ends (`set KIND voicemail` sends them to voicemail again)."""
    _change(ctx, user, files, lambda svc, t: svc.set_forward(
        t.who.tenant.id, t.who.user.id, _kind(kind), NONE, actor=operator_name(), source="cli"))


@forward_group.command("reset")
@click.argument("user")
@config_files
@click.pass_context
def forward_reset(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Put all of USER's forwards, the no-answer delay and call waiting back to the defaults
    (busy, no answer and unreachable to voicemail; call waiting on)."""
    _change(ctx, user, files, lambda svc, t: svc.reset_routing(t.who.tenant.id, t.who.user.id, actor=operator_name(),
                                                               source="cli"))


@click.group("callwaiting")
def callwaiting_group() -> None:
    """Show and change users' call waiting (*43# / #43# / *#43# on the phone)."""


@callwaiting_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def callwaiting_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Whether a second call reaches USER while in a call."""
    with user_service(ctx, user, files) as (target, service):
        routing = service.routing(target.who.tenant.id, target.who.user.id)
        click.echo(f"call waiting of {target.who.label}: {'on' if routing.call_waiting else 'off'}")


@callwaiting_group.command("on")
@click.argument("user")
@config_files
@click.pass_context
def callwaiting_on(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """A second call rings USER's devices while USER is in a call."""
    _switch(ctx, user, files, True)


@callwaiting_group.command("off")
@click.argument("user")
@config_files
@click.pass_context
def callwaiting_off(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """A second call gets USER's busy treatment while USER is in a call."""
    _switch(ctx, user, files, False)


def _switch(ctx: click.Context, user: str, files: tuple[str, ...], enabled: bool) -> None:
    with user_service(ctx, user, files) as (target, service):
        routing = service.set_call_waiting(target.who.tenant.id, target.who.user.id, enabled, actor=operator_name(), source="cli")
        click.echo(f"call waiting of {target.who.label}: {'on' if routing.call_waiting else 'off'}")


def _change(ctx: click.Context, user: str, files: tuple[str, ...],
            change: Callable[[CallStateService, Selected], Routing]) -> None:
    with user_service(ctx, user, files) as (target, service):
        _show_forwards(target.who.label, change(service, target))


def _kind(text: str) -> str:
    try:
        return parse_kind(text)
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from exc
