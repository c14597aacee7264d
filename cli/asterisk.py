"""`vipbx asterisk ...`: find or build Asterisk and run the PBX instance on the deployed files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asterisk_host.instance import AsteriskError, AsteriskInstance
from asterisk_host.runtime import AsteriskRuntime, RuntimeUnavailable
from asterisk_host.units import (
    ASTERISK_UNIT,
    Systemctl,
    SystemctlError,
    systemd_runs,
    unit_of,
)
from base.paths import Paths

from .context import paths_of


def pbx_instance(paths: Paths, runtime: AsteriskRuntime) -> AsteriskInstance:
    """The PBX: its own folders in `home/pbx`, its configuration the live generation, and the
    prompt catalogue `home/sounds` shared with the application."""
    return AsteriskInstance(runtime, paths.pbx, paths.current, name="pbx", shared=[paths.sounds])


def pbx_pid_file(paths: Paths) -> Path:
    """Where the PBX's pid is kept (the systemd unit's PIDFile=); needs no Asterisk installed."""
    return AsteriskInstance.pid_file_in(paths.pbx)


def running_pid(paths: Paths) -> int | None:
    """The pid of the PBX of this home if it runs (None also when no Asterisk is installed)."""
    try:
        runtime = AsteriskRuntime.locate(build=False)
    except RuntimeUnavailable:
        return None
    return pbx_instance(paths, runtime).pid


def _installed_unit(instance: AsteriskInstance) -> str | None:
    """The systemd unit that runs this PBX, when one is installed and this is not its own start."""
    if not systemd_runs() or unit_of("self") == ASTERISK_UNIT:
        return None
    try:
        shown = Systemctl().show(ASTERISK_UNIT, "LoadState", "PIDFile")
    except SystemctlError:
        return None
    pid_file = shown.get("PIDFile", "")
    if shown.get("LoadState") != "loaded" or not pid_file or Path(pid_file) != instance.pid_file:
        return None  # not installed, or installed for another VIPBX_HOME
    return ASTERISK_UNIT


def _systemctl(*args: str) -> None:
    try:
        Systemctl().run(*args)
    except SystemctlError as exc:
        raise click.ClickException(f"{exc} (see `journalctl -u {ASTERISK_UNIT}`)") from exc


def _runtime(build: bool = False) -> AsteriskRuntime:
    try:
        return AsteriskRuntime.locate(build=build)
    except RuntimeUnavailable as exc:
        raise click.ClickException(f"{exc} (run `vipbx asterisk setup`)") from exc


@click.group("asterisk")
def asterisk() -> None:
    """Run the PBX's Asterisk: the system's own, else one in a cached Debian rootfs."""


@asterisk.command()
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the rootfs is built and kept. Env: VIPBX_CACHE; default /var/cache/vipbx.")
def setup(cache_dir: Path | None) -> None:
    """Find Asterisk, building a Debian-unstable rootfs with it if there is none (about 1 min)."""
    try:
        runtime = AsteriskRuntime.locate(cache_dir, build=True)
    except RuntimeUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    where = "system" if runtime.is_system else f"rootfs {runtime.root}"
    click.echo(f"Asterisk {runtime.version()} ({where})")


@asterisk.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for it to boot.")
@click.pass_context
def start(ctx: click.Context, timeout: float) -> None:
    """Start the PBX on the deployed configuration and wait until it is fully booted.

    Where it is installed as a systemd service (`vipbx service install`), systemd starts it.
    """
    paths = paths_of(ctx)
    if not paths.current.exists():
        raise click.ClickException(f"nothing deployed in {paths.home} yet: run `vipbx deploy FILES` first")
    instance = pbx_instance(paths, _runtime())
    if instance.running:
        click.echo(f"already running (pid {instance.pid})")
        return
    unit = _installed_unit(instance)
    if unit is not None:
        # Installed as a service: systemd starts it (by running this command inside the unit),
        # so that it is supervised, restarted and logged like every other start.
        _systemctl("start", unit)
        click.echo(f"started by systemd ({unit}, pid {instance.pid}); log: {instance.log_path}")
        return
    try:
        pid = instance.start(timeout)
    except AsteriskError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"started (pid {pid}); log: {instance.log_path}")


@asterisk.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the PBX (SIGTERM, then SIGKILL after 20 s); through systemd when its service runs it."""
    instance = pbx_instance(paths_of(ctx), _runtime())
    pid = instance.pid
    if pid is None:
        click.echo("not running")
        return
    if systemd_runs() and unit_of(pid) == ASTERISK_UNIT:
        # systemd would see its main process end; it stops the unit itself (SIGTERM to that pid).
        _systemctl("stop", ASTERISK_UNIT)
        click.echo(f"stopped by systemd ({ASTERISK_UNIT}, pid {pid})")
        return
    instance.stop()
    click.echo(f"stopped (pid {pid})")


@asterisk.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Say whether the PBX runs; exit 1 when it does not."""
    runtime = _runtime()
    instance = pbx_instance(paths_of(ctx), runtime)
    if not instance.running:
        click.echo("asterisk: stopped")
        sys.exit(1)
    uptime = ""
    try:
        # "System uptime: 12\nLast reload: 3"
        lines = instance.cli("core show uptime seconds").splitlines()
        seconds = [line.split(":")[-1].strip() for line in lines if ":" in line]
        if seconds:
            uptime = f", up {seconds[0]} s"
    except AsteriskError:
        uptime = ", not answering on its control socket"
    click.echo(f"asterisk: running (pid {instance.pid}, {runtime.version()}{uptime})")


@asterisk.command(name="cli")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def cli_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run an Asterisk CLI COMMAND on the PBX, e.g. `vipbx asterisk cli pjsip show contacts`."""
    instance = pbx_instance(paths_of(ctx), _runtime())
    try:
        click.echo(instance.cli(" ".join(command)), nl=False)
    except AsteriskError as exc:
        raise click.ClickException(str(exc)) from exc
