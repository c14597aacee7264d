"""Reloading Asterisk through AMI after a deploy, and the command-line options that bound it."""

from __future__ import annotations

import click

from asterisk_conf import deploy as deploying
from asterisk_conf.dialplan_patch import FINGERPRINT, DialplanNotLive, DialplanPatch
from base.ami import CONNECT_TIMEOUT, AmiSettings, ami_session
from base.progress import SILENT, Progress

# Each module reload of a deploy: res_pjsip and app_voicemail take 35-50 s at 40,000 users.
RELOAD_TIMEOUT = 120.0


def ami_timeouts(command):  # type: ignore[no-untyped-def]
    """--ami-timeout and --reload-timeout, for the commands that reload Asterisk."""
    command = click.option(
        "--reload-timeout", type=click.FloatRange(min=0.1), default=RELOAD_TIMEOUT, show_default=True,
        envvar="VIPBX_RELOAD_TIMEOUT", metavar="SECONDS",
        help="How long Asterisk may take to answer each module reload; no answer counts as a "
             "refusal. Env: VIPBX_RELOAD_TIMEOUT.")(command)
    return click.option(
        "--ami-timeout", type=click.FloatRange(min=0.1), default=CONNECT_TIMEOUT, show_default=True,
        envvar="VIPBX_AMI_TIMEOUT", metavar="SECONDS",
        help="How long AMI may take to accept the connection and the login. Env: VIPBX_AMI_TIMEOUT.")(command)


def ami_reloader(settings: AmiSettings, connect_timeout: float, reload_timeout: float,
                 progress: Progress = SILENT) -> deploying.Reloader:
    async def reload(targets: list[str]) -> None:
        async with ami_session(settings, connect_timeout, action_timeout=reload_timeout) as ami:
            # A module reload takes up to a minute on a large platform: a terminal sees which.
            progress.begin(f"reloading {len(targets)} module(s)", len(targets))
            try:
                for target in targets:
                    await ami.action("Reload", Module=target)
                    progress.advance()
            finally:
                progress.end()

    return reload


def ami_dialplan_patcher(settings: AmiSettings, connect_timeout: float, action_timeout: float,
                         progress: Progress = SILENT) -> deploying.DialplanPatcher:
    """Applies a dialplan change through AMI (asterisk_conf.dialplan_patch), step by step, if
    Asterisk runs the dialplan it was planned from (DialplanNotLive otherwise: the deploy reloads
    instead). The first step Asterisk refuses raises, and the deploy puts the old files back."""
    async def patch(change: DialplanPatch) -> None:
        async with ami_session(settings, connect_timeout, action_timeout=action_timeout) as ami:
            running = (await ami.action("Getvar", Variable=FINGERPRINT)).get("Value") or ""
            if running != change.expected:
                raise DialplanNotLive(f"Asterisk runs dialplan {running or '(unknown)'}, not "
                                      f"{change.expected} which the change was planned from")
            progress.begin(f"changing {change.extensions} dialplan extension(s) live", len(change.steps))
            try:
                for action, fields in change.steps:
                    await ami.action(action, **fields)
                    progress.advance()
            finally:
                progress.end()

    return patch
