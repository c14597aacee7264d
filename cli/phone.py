"""`vipbx phone ...`: try the service without a softphone.

    vipbx phone start FILES             every user's device registers, the carrier is ready
    vipbx phone call 600 --from acme-anna-soft --dtmf 1,2,# --wait 5
    vipbx phone call +358201243100 --caller +358401110001
    vipbx phone stop
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

import click

from ari_app.client import AriError
from asterisk_host import AsteriskError, AsteriskRuntime, RuntimeUnavailable
from base.secrets import SecretStore
from testphone.config import PhoneSettings
from testphone.driver import Call, CallEnded, TestPhone
from testphone.instance import PhoneInstance

from .args import config_files
from .context import load, paths_of


def _phone(ctx: click.Context) -> PhoneInstance:
    paths = paths_of(ctx)
    try:
        runtime = AsteriskRuntime.locate(build=False)
    except RuntimeUnavailable as exc:
        raise click.ClickException(f"{exc} (run `vipbx asterisk setup`)") from exc
    return PhoneInstance(runtime, paths.phone, SecretStore(paths.secrets))


@click.group("phone")
def phone() -> None:
    """A test phone: every user's SIP device and the carrier, in a second Asterisk."""


@phone.command()
@config_files()
@click.option("--phones-ip", default="127.0.0.3", show_default=True,
              help="Address the devices register from (not the carrier's, not the PBX's).")
@click.option("--sip-port", default=5060, show_default=True)
@click.option("--http-port", default=8088, show_default=True, help="The phone's ARI, on --phones-ip.")
@click.option("--rtp", "rtp_range", default="40000-40999", show_default=True, help="RTP port range START-END.")
@click.pass_context
def start(ctx: click.Context, files: tuple[str, ...], phones_ip: str, sip_port: int,
          http_port: int, rtp_range: str) -> None:
    """(Re)start the phone for the tenants and platform in FILES and register every device."""
    config = load(files)
    start_port, _, end_port = rtp_range.partition("-")
    if not (start_port.isdigit() and end_port.isdigit() and int(start_port) < int(end_port)):
        raise click.ClickException(f"test phone not started: --rtp {rtp_range!r} is not a port range "
                                   "such as 40000-40999")
    try:
        settings = PhoneSettings.for_config(config, phones_ip, sip_port=sip_port,
                                            http_port=http_port, rtp_start=int(start_port),
                                            rtp_end=int(end_port))
    except ValueError as exc:
        raise click.ClickException(f"test phone not started: {exc}") from exc
    instance = _phone(ctx)
    if instance.asterisk.running:
        instance.stop()
    try:
        instance.configure(config, settings)
        pid = instance.start()
    except (AsteriskError, ValueError, OSError) as exc:
        raise click.ClickException(f"test phone not started: {' '.join(str(exc).split())}") from exc
    click.echo(f"test phone started (pid {pid}): devices on {phones_ip}, "
               f"carrier on {settings.carrier_ip}:{settings.carrier_sip_port}")
    state = instance.wait_registered(timeout=5)
    for device in instance.devices:
        click.echo(f"  {device}: {state.get(device, 'absent')}")


@phone.command()
@config_files(required=False)
@click.pass_context
def stop(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Stop the phone (FILES are accepted and ignored, for symmetry with start)."""
    instance = _phone(ctx)
    pid = instance.asterisk.pid
    if pid is None:
        click.echo("test phone: not running")
        return
    instance.stop()
    click.echo(f"test phone stopped (pid {pid})")


@phone.command()
@click.argument("number")
@click.option("--from", "device", metavar="DEVICE", help="Call from this user's device (its id).")
@click.option("--caller", metavar="+358...", help="Call from outside, through the carrier, as this number.")
@click.option("--diversion", metavar="+358...",
              help="Carrier calls: the call was diverted from this number (Diversion header).")
@click.option("--trunk", metavar="NAME",
              help="Outside calls: come in through this trunk of the platform (e.g. a user's mobile "
                   "through the mobile core) instead of the carrier.")
@click.option("--dtmf", default="", help="Keys to press once answered; a comma is a 1 s pause.")
@click.option("--wait", default=5.0, show_default=True, help="Seconds to stay after the keys.")
@click.option("--ring-timeout", default=30, show_default=True)
@click.option("--answer", "answer_after", type=float, default=None, metavar="SECONDS",
              help="Answer calls the PBX sends to a device or the carrier after SECONDS.")
@click.pass_context
def call(ctx: click.Context, number: str, device: str | None, caller: str | None,
         diversion: str | None, trunk: str | None, dtmf: str, wait: float, ring_timeout: int,
         answer_after: float | None) -> None:
    """Call NUMBER at the PBX and tell what happened.

    Calls the PBX makes meanwhile (to a device, or out through the carrier) are reported, and
    answered with --answer.
    """
    if (device is None) == (caller is None):
        raise click.UsageError("give --from DEVICE or --caller NUMBER")
    if trunk is not None and caller is None:
        raise click.UsageError("--trunk is for outside calls: give --caller NUMBER")
    instance = _phone(ctx)
    if not instance.asterisk.running:
        raise click.ClickException("the test phone is not running: vipbx phone start FILES")
    if device is not None and device not in instance.devices:
        raise click.UsageError(f"no device {device!r}; the phone has: {', '.join(instance.devices)}")
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # Every ARI request is logged at INFO: that would bury the story of the call.
        for name in ("httpx", "ari_app.client"):
            logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(_call(instance, number, device, caller, diversion, trunk, dtmf, wait,
                      ring_timeout, answer_after))


async def _call(instance: PhoneInstance, number: str, device: str | None, caller: str | None,
                diversion: str | None, trunk: str | None, dtmf: str, wait: float,
                ring_timeout: int, answer_after: float | None) -> None:
    started = time.monotonic()

    def say(text: str) -> None:
        click.echo(f"[{time.monotonic() - started:5.1f} s] {text}")

    async with instance.connect() as phone:
        who = f"device {device}" if device else f"{caller} via {trunk or 'the carrier'}"
        say(f"calling {number} from {who}" + (f", diverted from {diversion}" if diversion else ""))
        try:
            call = await phone.call(number, device=device, caller_number=caller,
                                    diversion=diversion, trunk=trunk, timeout=ring_timeout)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        except AriError as exc:
            raise click.ClickException(f"the phone could not place the call: {exc}") from exc
        watcher = asyncio.create_task(_watch_incoming(phone, say, answer_after))
        try:
            await _follow(call, say, dtmf, wait, ring_timeout)
        except (CallEnded, TimeoutError):
            pass  # told below: how it ended
        finally:
            watcher.cancel()
            await call.hangup()
            await call.wait_hangup(5)
        heard = call.segments()
        bursts = ", ".join(f"{length:.1f} s at {start:.1f}" for start, length in heard)
        say(f"heard {call.audio_seconds:.1f} s of audio" + (f" ({bursts})" if bursts else ""))
        if call.dtmf_received:
            say(f"keys sent by the PBX: {call.dtmf_received}")
        by = {"us": "us", "far": "the far end"}.get(call.hung_up_by or "", "?")
        say(f"hung up by {by}: cause {call.hangup_cause} ({call.hangup_cause_txt or 'unknown'})")


async def _watch_incoming(phone: TestPhone, say: Callable[[str], None],
                          answer_after: float | None) -> None:
    while True:
        incoming = await phone.incoming_any(timeout=3600)
        where = f"trunk {incoming.trunk}" if incoming.entry == "carrier-in" else "device"
        mark = f", marked {incoming.mark}" if incoming.mark else ""
        say(f"the PBX calls {where} {incoming.target} "
            f"(from {incoming.caller.get('number') or 'unknown'}{mark})")
        if answer_after is not None:
            asyncio.create_task(_answer_later(incoming, say, answer_after))


async def _answer_later(incoming: Call, say: Callable[[str], None], delay: float) -> None:
    await asyncio.sleep(delay)
    if not incoming.ended:
        with suppress(AriError):
            await incoming.answer()
            say(f"{incoming.target} answered")


async def _follow(call: Call, say: Callable[[str], None], dtmf: str, wait: float,
                  ring_timeout: int) -> None:
    if await call.wait_state(("Ringing", "Up"), ring_timeout) == "Ringing":
        say("ringing")
    try:
        await call.wait_state("Up", ring_timeout)
    except TimeoutError:
        say(f"no answer within {ring_timeout} s")
        raise
    say("answered")
    for group in dtmf.split(","):
        await asyncio.sleep(1)
        if group:
            await call.send_dtmf(group)
            say(f"pressed {group}")
    try:
        await call.wait_hangup(wait)
    except TimeoutError:
        say(f"still connected after {wait:g} s: hanging up")
