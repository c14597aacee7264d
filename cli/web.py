"""`vipbx web show|logout|unlock|unlock-address|locks|code`: the home page's logins, for operators.

USER is `user@tenant`, the user's E.164 number, or their home page user name
(`fi0401234567@company.fi`). Every change goes through the call-state service (audited, source
"cli"), as the page's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click

from ari_app.plugins import build_gateways
from base.secrets import SecretStore
from callstate import CallStateService, StorageError, open_service
from notify import Messenger
from web.auth.logins import send_code
from web.auth.usernames import find_login, login_name

from . import args as cliargs
from .context import Selected, load, operator_name, paths_of, user_service

config_files = cliargs.config_files()


def _user_arg(who: str, files: tuple[str, ...]) -> str:
    """A home page user name becomes `user@tenant`; anything else is left to `select_user`."""
    if "@" in who and "." in who.partition("@")[2]:
        found = find_login(load(files), who)
        if found is not None:
            return f"{found.user.id}@{found.tenant.id}"
    return who


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@click.group("web")
def web_group() -> None:
    """The home page's logins: sessions, lockouts and one-time codes."""


@web_group.command("show")
@click.argument("user")
@config_files
@click.pass_context
def web_show(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """USER's home page account: password chosen or not, login lock, pending code, sessions."""
    with user_service(ctx, _user_arg(user, files), files) as (target, service):
        _show(target, service)


def _show(target: Selected, service: CallStateService) -> None:
    tenant_id, user_id = target.who.tenant.id, target.who.user.id
    lock = service.web_logins.user_lock(tenant_id, user_id)
    sessions = service.web_accounts.sessions_of(tenant_id, user_id)
    click.echo(f"home page account of {target.who.label}:")
    for label, value in (
            ("user name", login_name(target.who)),
            ("password", "chosen" if service.web_accounts.password_hash(tenant_id, user_id) else "not yet (first login by code)"),
            ("failed logins", str(lock.failures)),
            ("locked", lock.describe() if lock.locked else "no"),
            ("code valid until", _when(service.web_logins.pending_code(tenant_id, user_id))),
            ("sessions", str(len(sessions)))):
        click.echo(f"  {label + ':':<20}{value}")
    for s in sessions:
        click.echo(f"    from {s.source:<16} since {_when(s.created_at)}, last seen {_when(s.seen_at)}, "
                   f"ends by {_when(s.ends_at)}")


@web_group.command("logout")
@click.argument("user")
@config_files
@click.pass_context
def web_logout(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """End every session of USER on the home page and its API."""
    with user_service(ctx, _user_arg(user, files), files) as (target, service):
        ended = service.web_accounts.end_sessions(target.who.tenant.id, target.who.user.id,
                                                  actor=operator_name(), source="cli")
    click.echo(f"{target.who.label}: {ended} session(s) ended")


@web_group.command("unlock")
@click.argument("user")
@config_files
@click.pass_context
def web_unlock(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Clear USER's failed logins and login lock (and its escalation)."""
    with user_service(ctx, _user_arg(user, files), files) as (target, service):
        done = service.web_logins.unlock_user(target.who.tenant.id, target.who.user.id, actor=operator_name(),
                                              source="cli")
    click.echo(f"{target.who.label}: {'unlocked' if done else 'was not locked'}")


@web_group.command("unlock-address")
@click.argument("address")
@config_files
@click.pass_context
def web_unlock_address(ctx: click.Context, address: str, files: tuple[str, ...]) -> None:
    """Clear a client ADDRESS's failed logins and lock (as `locks` shows it)."""
    with _service(ctx, files) as service:
        done = service.web_logins.unlock_address(address, actor=operator_name(), source="cli")
    click.echo(f"{address}: {'unlocked' if done else 'was not locked'}")


@web_group.command("code")
@click.argument("user")
@config_files
@click.pass_context
def web_code(ctx: click.Context, user: str, files: tuple[str, ...]) -> None:
    """Send USER a one-time code (SMS to their number, else e-mail) to choose a home page password:
    a first login or a forgotten password. Not rate limited; replaces a code already sent."""
    with user_service(ctx, _user_arg(user, files), files) as (target, service):
        channel, why = asyncio.run(_send(target, service))
    if channel is None:
        raise click.ClickException(f"{target.who.label}: no code sent: {why}")
    click.echo(f"{target.who.label}: code sent by {channel}; valid for {service.web_logins.policy.code_minutes} "
               "minutes on the home page's code page (/login/code/enter)")


@web_group.command("locks")
@config_files
@click.pass_context
def web_locks(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Every user and client address whose home page login is locked now."""
    with _service(ctx, files) as service:
        found = service.web_logins.locks()
    for scope, subject, lock in found:
        click.echo(f"{scope:<8} {subject:<40} until {lock.describe()} (lock {lock.level})")
    if not found:
        click.echo("no login is locked")


@contextmanager
def _service(ctx: click.Context, files: tuple[str, ...]) -> Iterator[CallStateService]:
    """The call-state service, for what belongs to no one user."""
    config = load(files)
    paths = paths_of(ctx)
    try:
        service = open_service(config, paths.home, SecretStore(paths.secrets).get)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield service
    finally:
        service.close()


async def _send(target: Selected, service: CallStateService) -> tuple[str | None, str]:
    sms, email = build_gateways(target.config, target.secrets().get)
    try:
        return await send_code(service, Messenger(sms, email), target.who, "cli", actor=operator_name(),
                               source="cli", limited=False)
    finally:
        if sms is not None:
            await sms.aclose()
