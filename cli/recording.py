"""`vipbx recording show|on|off USER`: whether USER's calls are recorded, for operators.

USER is `user@tenant` or the user's E.164 number. The switch is the call-state service's, the one
the home page and the FastAGI router use; a change is audited with source "cli". The recordings
are files in `<home>/pbx/spool/call-recordings/<tenant>/<user>/` (docs/routing.md).
"""

from __future__ import annotations

import click

from . import args as cliargs
from .context import operator_name, user_service

config_files = cliargs.config_files()


@click.group("recording")
def recording_group() -> None:
    """Show and change whether users' calls are recorded (both parties hear an announcement)."""


@recording_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def recording_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Whether USER's calls are recorded."""
    _recording(ctx, user, files, None)


@recording_group.command("on")
@click.argument("user")
@config_files
@click.pass_context
def recording_on(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Record USER's calls from the next call on."""
    _recording(ctx, user, files, True)


@recording_group.command("off")
@click.argument("user")
@config_files
@click.pass_context
def recording_off(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Stop recording USER's calls (recordings made stay until deleted)."""
    _recording(ctx, user, files, False)


def _recording(ctx: click.Context, user: str, files: tuple[str, ...], enabled: bool | None) -> None:
    with user_service(ctx, user, files) as (target, service):
        tenant_id, user_id = target.who.tenant.id, target.who.user.id
        if enabled is None:
            enabled = service.recording_state.recording(tenant_id, user_id)
        else:
            enabled = service.recording_state.set_recording(tenant_id, user_id, enabled,
                                                            actor=operator_name(), source="cli")
        click.echo(f"call recording of {target.who.label}: {'on' if enabled else 'off'}")
