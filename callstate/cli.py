"""`vipbx forward ...` and `vipbx callwaiting ...`: users' forwards and call waiting, for operators.

USER is `user@tenant` or the user's E.164 number. Changes go through the call-state service, the
same one the 987 / *43# codes and the FastAGI router use, and are audited with source "cli".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from asterisk_conf import cliargs

from .errors import SettingsError, StorageError
from .routing import KINDS, NO_ANSWER, NONE, Routing, parse_kind

config_files = cliargs.config_files()

DESCRIPTIONS = {
    "immediate": "immediate (all calls)",
    "busy": "when busy",
    "no_answer": "no answer",
    "unreachable": "unreachable",
}


@contextmanager
def user_service(ctx: click.Context, who: str, files: tuple[str, ...]) -> Iterator[tuple[Any, Any]]:
    """The user named on the command line and an open call-state service; the service's
    refusals and storage errors become the command's error message."""
    from vmstore.cli import resolve  # the same USER syntax as `vipbx voicemail`

    from . import open_service

    target = resolve(ctx, who, files)
    try:
        service = open_service(target.config, target.home, target.secrets().get)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield target, service
    except (SettingsError, StorageError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        service.close()


def _actor() -> str:
    from vmstore.cli import operator_name

    return operator_name()


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
        _show_forwards(target.label, service.routing(target.tenant.id, target.user.id))


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

    Numbers outside the tenant's allow-list, the service numbers and the user's own number are
    refused, as they are for the 987 code."""
    _change(ctx, user, files, lambda svc, t: svc.set_forward(
        t.tenant.id, t.user.id, _kind(kind), destination, actor=_actor(), source="cli", no_answer_seconds=delay))


@forward_group.command("clear")
@click.argument("user")
@click.argument("kind", metavar="KIND")
@config_files
@click.pass_context
def forward_clear(ctx: click.Context, user: str, kind: str, files: tuple[str, ...]) -> None:
    """Remove USER's forward of KIND: a busy call then gets a busy signal, an unanswered or
    unreachable one ends (`set KIND voicemail` sends them to voicemail again)."""
    _change(ctx, user, files, lambda svc, t: svc.set_forward(
        t.tenant.id, t.user.id, _kind(kind), NONE, actor=_actor(), source="cli"))


@forward_group.command("reset")
@click.argument("user")
@config_files
@click.pass_context
def forward_reset(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Put all of USER's forwards, the no-answer delay and call waiting back to the defaults
    (busy, no answer and unreachable to voicemail; call waiting on)."""
    _change(ctx, user, files, lambda svc, t: svc.reset_routing(t.tenant.id, t.user.id, actor=_actor(),
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
        routing = service.routing(target.tenant.id, target.user.id)
        click.echo(f"call waiting of {target.label}: {'on' if routing.call_waiting else 'off'}")


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
        routing = service.set_call_waiting(target.tenant.id, target.user.id, enabled, actor=_actor(), source="cli")
        click.echo(f"call waiting of {target.label}: {'on' if routing.call_waiting else 'off'}")


def _change(ctx: click.Context, user: str, files: tuple[str, ...],
            change: Callable[[Any, Any], Routing]) -> None:
    with user_service(ctx, user, files) as (target, service):
        _show_forwards(target.label, change(service, target))


def _kind(text: str) -> str:
    try:
        return parse_kind(text)
    except SettingsError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from exc
