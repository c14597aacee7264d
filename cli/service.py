"""`vipbx service ...`: Asterisk and `vipbx serve` as systemd services, and what runs now.

    vipbx service units --out DIR FILES   write the unit files (to install by hand)
    vipbx service install FILES           install, enable and start them (systemd only)
    vipbx service uninstall               stop, disable and remove them
    vipbx service status                  Asterisk and vipbx serve: running (pid, manager) or stopped
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path

import click

from asterisk_host.instance import AsteriskError
from asterisk_host.runtime import AsteriskRuntime, RuntimeUnavailable, default_cache
from asterisk_host.units import (
    ASTERISK_UNIT,
    SERVE_UNIT,
    STOP_ORDER,
    UNIT_DIR,
    UNITS,
    ProcessState,
    Systemctl,
    SystemctlError,
    UnitSettings,
    UnitValueError,
    background_serve_pid,
    is_serve,
    remove_units,
    render_units,
    serve_pid_file,
    states,
    systemd_runs,
    unit_of,
    write_units,
)
from base.paths import Paths

from .args import config_files
from .asterisk import pbx_instance, pbx_pid_file, running_pid
from .context import paths_of

NO_SYSTEMD = ("systemd is not this machine's service manager (no /run/systemd/system: a container or "
              "CI?). Run Asterisk and vipbx serve in the background with `./deploy.sh start`, or write "
              "the unit files for another machine with `vipbx service units --out DIR`.")

venv_option = click.option(
    "--venv", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The Python environment vipbx is installed in (its bin/vipbx runs the services). "
         "Default: the one running this command.")
unit_dir_option = click.option(
    "--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=UNIT_DIR, show_default=True,
    help="Where systemd reads the unit files from.")


def _settings(paths: Paths, files: tuple[str, ...], venv: Path | None) -> UnitSettings:
    config = tuple(str(Path(f).absolute()) for f in files)
    spaced = [f for f in config if any(ch.isspace() for ch in f)]
    if spaced:
        # VIPBX_CONFIG separates the files by blanks: such a name cannot be passed in it.
        raise click.ClickException(f"a YAML file's path holds a blank, which VIPBX_CONFIG cannot carry: {spaced[0]!r}")
    return UnitSettings(venv=(venv or Path(sys.prefix)).absolute(), home=paths.home,
                        cache=default_cache().absolute(), config=config,
                        asterisk_pid_file=pbx_pid_file(paths))


def _render(settings: UnitSettings) -> dict[str, str]:
    try:
        return render_units(settings)
    except UnitValueError as exc:
        raise click.ClickException(f"cannot write the units: {exc}") from exc


@click.group("service")
def service_group() -> None:
    """Run Asterisk and vipbx serve as systemd services (restarted on failure, started at boot,
    logged to the journal); or see them run in the background where systemd does not run."""


@service_group.command()
@config_files()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the unit files into.")
@venv_option
@click.pass_context
def units(ctx: click.Context, files: tuple[str, ...], out: Path, venv: Path | None) -> None:
    """Write the unit files for FILES into --out, for installing by hand or by configuration
    management (VIPBX_HOME, VIPBX_CACHE and --venv are written into them). Changes nothing else."""
    rendered = _render(_settings(paths_of(ctx), files, venv))
    try:
        write_units(rendered, out)
    except OSError as exc:
        raise click.ClickException(f"cannot write the units into {out}: {exc}") from exc
    click.echo(f"wrote {', '.join(rendered)} to {out}")


@service_group.command()
@config_files()
@venv_option
@unit_dir_option
@click.option("--stop-background", is_flag=True,
              help="End an Asterisk or vipbx serve running in the background (by pid) first, so that "
                   "the units take over; without it they are a reason to refuse.")
@click.pass_context
def install(ctx: click.Context, files: tuple[str, ...], venv: Path | None, unit_dir: Path,
            stop_background: bool) -> None:
    """Install the units for FILES, enable them and start them (systemctl enable --now).

    Refused where systemd is not the service manager. Asterisk and vipbx serve then start at boot,
    are restarted when they fail, and log to the journal (`journalctl -u vipbx-serve`). Units
    that already run are not restarted: a changed unit is named, to restart when convenient.
    """
    if not systemd_runs():
        raise click.ClickException(NO_SYSTEMD)
    paths = paths_of(ctx)
    settings = _settings(paths, files, venv)
    missing = [f for f in settings.config if not Path(f).is_file()]
    if missing:
        raise click.ClickException(f"no such YAML file: {missing[0]}")
    if not os.access(settings.vipbx, os.X_OK):
        raise click.ClickException(f"{settings.vipbx} is not an executable vipbx (give --venv)")
    if not paths.current.exists():
        raise click.ClickException(f"nothing deployed in {paths.home} yet: run `vipbx deploy FILES` first")
    check_runtime()
    rendered = _render(settings)
    _take_over(paths, stop_background)
    try:
        changed = write_units(rendered, unit_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot write the units into {unit_dir}: {exc}") from exc
    click.echo(f"units in {unit_dir}: " + ", ".join(
        f"{name} ({'written' if name in changed else 'unchanged'})" for name in rendered))
    systemctl = Systemctl()
    already = {unit for unit in (ASTERISK_UNIT, SERVE_UNIT) if _active(systemctl, unit)}
    try:
        systemctl.run("daemon-reload", timeout=120)
        # systemd starts Asterisk first (vipbx-serve is After= it) and waits until it is fully
        # booted, which takes a while on a large platform.
        systemctl.run("enable", "--now", *UNITS)
    except SystemctlError as exc:
        raise click.ClickException(f"{exc}\n{_journal_hint()}") from exc
    for unit in sorted(already & set(changed)):
        click.echo(f"{unit} runs with its previous unit file: `systemctl restart {unit}` applies the new one")
    _echo_states(paths, systemctl)


def check_runtime() -> None:
    """Asterisk must be there to start: `vipbx asterisk setup` finds or builds it."""
    try:
        AsteriskRuntime.locate(build=False)
    except RuntimeUnavailable as exc:
        raise click.ClickException(f"{exc}: run `vipbx asterisk setup` first") from exc


def _take_over(paths: Paths, stop_background: bool) -> None:
    """Refuse (or, asked to, end by pid) an Asterisk or vipbx serve that runs outside the units:
    a second one could not bind the same addresses."""
    serve = background_serve_pid(paths.home)
    pbx = running_pid(paths)
    if pbx is not None and unit_of(pbx) == ASTERISK_UNIT:
        pbx = None  # the unit's own
    running = [f"{label} (pid {pid})" for label, pid in (("vipbx serve", serve), ("Asterisk", pbx)) if pid]
    if not running:
        return
    if not stop_background:
        raise click.ClickException(
            f"{' and '.join(running)} run in the background, outside systemd: stop them first "
            "(`./deploy.sh stop`), or give --stop-background")
    if serve is not None:
        click.echo(f"stopping vipbx serve running in the background (pid {serve})")
        _end(serve)
        serve_pid_file(paths.home).unlink(missing_ok=True)
    if pbx is not None:
        click.echo(f"stopping Asterisk running in the background (pid {pbx})")
        try:
            pbx_instance(paths, AsteriskRuntime.locate(build=False)).stop()
        except (AsteriskError, RuntimeUnavailable) as exc:
            raise click.ClickException(f"could not stop Asterisk (pid {pbx}): {exc}") from exc


def _end(pid: int, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_serve(pid):  # ended (a zombie counts: its parent reaps it)
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _active(systemctl: Systemctl, unit: str) -> bool:
    try:
        return systemctl.show(unit, "ActiveState").get("ActiveState") == "active"
    except SystemctlError:
        return False


def _journal_hint() -> str:
    return (f"See `systemctl status {ASTERISK_UNIT} {SERVE_UNIT}` and "
            f"`journalctl -u {ASTERISK_UNIT} -u {SERVE_UNIT} -n 50`.")


@service_group.command()
@unit_dir_option
@click.pass_context
def uninstall(ctx: click.Context, unit_dir: Path) -> None:
    """Stop and disable the units and remove their files. `./deploy.sh start` then runs Asterisk
    and vipbx serve in the background again, where systemd does not run."""
    systemctl = Systemctl() if systemd_runs() else None
    if systemctl is not None:
        for unit in STOP_ORDER:
            # A unit systemd does not know (never installed) is not an error here.
            with suppress(SystemctlError):
                systemctl.run("disable", "--now", unit)
    removed = remove_units(unit_dir)
    if systemctl is not None:
        with suppress(SystemctlError):
            systemctl.run("daemon-reload", timeout=120)
        for unit in UNITS:
            with suppress(SystemctlError):
                systemctl.run("reset-failed", unit)
    if removed:
        click.echo(f"removed {', '.join(removed)} from {unit_dir}"
                   + ("" if systemctl else " (systemd does not run here: nothing was stopped)"))
    else:
        click.echo(f"no vipbx units in {unit_dir}")
    if systemctl is not None:
        _echo_states(paths_of(ctx), systemctl)


@service_group.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """One line each for Asterisk and vipbx serve: running (pid, and whether systemd or the
    background mode runs it) or stopped. Exit status 1 when either is stopped."""
    paths = paths_of(ctx)
    if not all(state.running for state in _echo_states(paths, Systemctl() if systemd_runs() else None)):
        sys.exit(1)


def _echo_states(paths: Paths, systemctl: Systemctl | None) -> tuple[ProcessState, ProcessState]:
    found = states(paths.home, running_pid(paths), systemctl)
    for state in found:
        click.echo(state.line())
    return found

