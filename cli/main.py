"""`vipbx`: the operators' command line."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from ari_app import plugins
from ari_app.service import Service
from asterisk_conf import deploy as deploying
from asterisk_conf.masking import mask_diff
from asterisk_conf.render import AGI_KEY, ARI_USER, render_config
from asterisk_conf.validate import validate_files
from base import logsetup, metrics
from base.ami import AmiError, AmiTimeout, ami_session
from base.metrics_http import MetricsServer
from base.model import Config
from base.paths import DEFAULT_HOME
from base.private import private_dir, write_private
from web.serve import run_web
from web.wiring import web_deps

from . import args as cliargs
from .asterisk import asterisk, running_pid
from .backup import backup_command, restore_command
from .cluster import cluster_group
from .conference import conference_group
from .context import Context, ami_settings, ari_url, load
from .doctor import doctor
from .forward import callwaiting_group, forward_group
from .phone import phone
from .presence import presence_group
from .progress import progress
from .prompts import prompts_group
from .recording import recording_group
from .reload import AriDevicePusher, ami_dialplan_patcher, ami_reloader, ami_timeouts
from .service import service_group
from .voicemail import voicemail
from .web import web_group

config_files = cliargs.config_files()
# Nothing `vipbx serve` writes is for other accounts; Asterisk's group may read what it must.
SERVE_UMASK = 0o027


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="VIPBX_HOME",
    default=str(DEFAULT_HOME),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State folder: secrets, configuration generations, the Asterisk instance. Env: VIPBX_HOME.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.option("--log-format", type=click.Choice(logsetup.FORMATS), default="text", show_default=True,
              envvar="VIPBX_LOG_FORMAT", help="Log lines as text or as JSON objects (for log shippers). Env: VIPBX_LOG_FORMAT.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), envvar="VIPBX_LOG_FILE",
              help="Log to this file instead of stderr, rotated at 50 MB with 5 old files kept. Env: VIPBX_LOG_FILE.")
@click.pass_context
def main(ctx: click.Context, home: Path, verbose: bool, log_format: str, log_file: Path | None) -> None:
    """Hosted mobile-PBX bundle for Asterisk: YAML tenants in, a running PBX out.

    FILES are YAML files with `platform:` and `tenants:` (several are merged); they may also be
    given in the VIPBX_CONFIG environment variable, separated by spaces.
    """
    ctx.obj = Context(home.absolute())
    # Every line on stderr goes through a filter that masks the values of secrets.json.
    logsetup.configure(verbose, ctx.obj.secret_values, fmt=log_format, file=log_file)


@main.command()
@config_files
def validate(files: tuple[str, ...]) -> None:
    """Check FILES and report every problem with file, line and key. Writes nothing."""
    problems = validate_files(files)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found")
    click.echo(f"ok: {', '.join(files)}")


@main.command()
@config_files
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write the Asterisk files into.")
@click.pass_obj
def render(obj: Context, files: tuple[str, ...], out: Path) -> None:
    """Write the Asterisk configuration for FILES into --out (nothing is deployed).

    The folder and the files are made readable by their owner only (they hold passwords and PINs).
    """
    rendered = render_config(load(files, obj.paths), obj.secrets)
    # Passwords and PINs are in these files: owner-only, whatever the umask.
    private_dir(out)
    for name, text in rendered.items():
        write_private(out / name, text)
    click.echo(f"wrote {len(rendered)} files to {out}")


@main.command()
@config_files
@click.pass_obj
def diff(obj: Context, files: tuple[str, ...]) -> None:
    """Show what `deploy` would change in the live configuration (unified diff). Exit 1 if anything.

    Passwords, generated secrets and voicemail PINs are shown as ********.
    """
    text = deploying.Generations(obj.paths).diff(render_config(load(files, obj.paths), obj.secrets))
    if not text:
        click.echo("no changes")
        return
    # Secrets and PINs never reach a terminal or a log.
    click.echo(mask_diff(text, obj.secrets.values()), nl=False)
    sys.exit(1)


@main.command()
@config_files
@click.option("--no-reload", is_flag=True, help="Swap the files in but do not ask Asterisk to reload.")
@ami_timeouts
@click.pass_obj
def deploy(obj: Context, files: tuple[str, ...], no_reload: bool, ami_timeout: float, reload_timeout: float) -> None:
    """Render FILES, check, swap in atomically and reload only the changed Asterisk modules.

    A change of dialplan extensions alone (users added, changed or removed) goes into the running
    dialplan through AMI instead of a pbx_config reload, which takes a minute at 20,000 users;
    new SIP devices alone go into res_pjsip through ARI instead of its reload.
    The previous generation is kept for `vipbx rollback`. If Asterisk refuses the reload, or does
    not answer it in time, the previous files are restored and reloaded, and the command fails
    saying which configuration is in place. If Asterisk is not running the files take effect when
    it starts; if it runs but its AMI does not answer (or accepts connections but stays silent),
    nothing is deployed and the command fails.
    """
    config = load(files, obj.paths)
    rendered = _rendered(config, obj)
    timeouts = (ami_timeout, reload_timeout)
    result = asyncio.run(_with_reloader(obj, config, no_reload, timeouts,
                                        lambda r, p, d: deploying.deploy(obj.paths, rendered, r, patch_dialplan=p,
                                                                                 push_devices=d)))
    _report(result, "deployed")


@main.command()
@config_files
@click.option("--no-reload", is_flag=True, help="Swap the files back but do not ask Asterisk to reload.")
@ami_timeouts
@click.pass_obj
def rollback(obj: Context, files: tuple[str, ...], no_reload: bool, ami_timeout: float, reload_timeout: float) -> None:
    """Return to the configuration generation before the last deploy.

    FILES tell where Asterisk's AMI listens (the platform section). If Asterisk refuses the older
    files, the newer ones are put back and reloaded, and the command fails.
    """
    config = load(files)
    timeouts = (ami_timeout, reload_timeout)
    result = asyncio.run(_with_reloader(obj, config, no_reload, timeouts,
                                        lambda r, p, d: deploying.rollback(obj.paths, r, patch_dialplan=p,
                                                                                   push_devices=d)))
    _report(result, "rolled back to")


async def _with_reloader(obj: Context, config: Config, no_reload: bool, timeouts: tuple[float, float],
                         action):  # type: ignore[no-untyped-def]
    settings = ami_settings(config, obj.secrets.get("ami"))
    reload = patch = push = None
    if not no_reload:
        try:
            async with ami_session(settings, timeout=timeouts[0]):
                reload = ami_reloader(settings, *timeouts, progress=progress())
                patch = ami_dialplan_patcher(settings, *timeouts, progress=progress())
                push = AriDevicePusher(ari_url(config), ARI_USER, obj.secrets.get("ari"), timeouts[0],
                                       progress=progress())
        except AmiTimeout as exc:
            # Something listens but does not answer: Asterisk may be hung. Swapping files in that
            # nobody reloads would leave the next start to find out whether they work.
            raise click.ClickException(f"{exc}; nothing changed (--no-reload swaps the files in "
                                       "without asking Asterisk)") from exc
        except AmiError as exc:
            pid = running_pid(obj.paths)
            if pid is not None:
                # Swapping files Asterisk cannot be told about would make `current` a lie.
                raise click.ClickException(
                    f"Asterisk runs (pid {pid}) but its AMI at {settings.host}:{settings.port} does not answer "
                    f"({exc}): nothing deployed, the live configuration stays") from exc
            click.echo(f"note: Asterisk not reachable ({exc}); the files take effect when it starts", err=True)
    try:
        return await action(reload, patch, push)
    except deploying.DeployError as exc:
        raise click.ClickException(str(exc)) from exc


def _rendered(config: Config, obj: Context) -> dict[str, str]:
    """The files for `config`; seconds at tens of thousands of users, so a terminal is told."""
    users = sum(len(tenant.users) for tenant in config.tenants)
    shown = progress()
    shown.begin(f"rendering {users} users", 1)
    try:
        return render_config(config, obj.secrets)
    finally:
        shown.advance()
        shown.end()


def _report(result: deploying.DeployResult, verb: str) -> None:
    if result.generation is None:
        click.echo("no changes: nothing deployed")
        return
    click.echo(f"{verb} generation {result.generation}; changed: {', '.join(result.changed)}")
    if result.patched:
        click.echo(f"dialplan: {result.patched} extension(s) changed live, without a reload")
    if result.pushed:
        click.echo(f"SIP: {result.pushed} new device(s) created live, without a reload")
    if result.reloaded:
        click.echo(f"reloaded: {', '.join(result.reloaded)}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.restart_needed:
        click.echo(f"{', '.join(sorted(set(result.changed) & deploying.RESTART_FILES))} changed: restart Asterisk "
                   "(`vipbx asterisk stop && vipbx asterisk start`) to load them", err=True)


@main.command()
@config_files
@click.pass_obj
def serve(obj: Context, files: tuple[str, ...]) -> None:
    """Run the ARI application, the FastAGI server and the users' home page (platform.web) until
    stopped (reconnects to Asterisk).

    Files it creates (outbox, call state, logs) are closed to other accounts (umask 027).
    """
    os.umask(SERVE_UMASK)
    config = load(files)
    plugin, deps = plugins.load(config, obj.paths, ami_settings(config, obj.secrets.get("ami")), obj.secrets.get)
    # The configuration lives as long as the process: keep the collector from walking it on every
    # full collection (20-35 ms pauses with 10,000 users, in the middle of calls' routing answers).
    gc.collect()
    gc.freeze()
    service = Service(config, ari_url(config), ARI_USER, obj.secrets.get("ari"),
                      agi_key=obj.secrets.get(AGI_KEY), handlers=plugin.handlers, background=plugin.background,
                      state=deps.callstate, on_connect=plugin.on_connect, sounds_dir=obj.paths.sounds,
                      resumers=plugin.resumers)
    if config.platform.web.enabled:
        # The home page runs in this process, over the same services as the calls.
        site = web_deps(deps, obj.paths.home, service.client)
        service.background.append(lambda: run_web(site))
    exporter = _start_metrics(config, obj, plugin.handlers)
    try:
        asyncio.run(_until_stopped(service))
    except KeyboardInterrupt:
        pass
    finally:
        if exporter is not None:
            exporter.stop()


async def _until_stopped(service: Service) -> None:
    """Run until SIGTERM (systemctl stop, deploy.sh stop, an upgrade) or SIGINT, then stop the
    way `Service.run` does when cancelled: calls handed back, recordings left to the next start."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await service.run()
    except asyncio.CancelledError:
        logging.getLogger("cli.serve").info("stopped by a signal")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _start_metrics(config: Config, obj: Context, entries: Iterable[str]) -> MetricsServer | None:
    """The Prometheus endpoint; a listener that cannot bind stops the start, as any other would."""
    metrics.install({"home": obj.paths.home, "spool": obj.paths.spool})
    metrics.prime(entries)
    settings = config.platform.metrics
    if not settings.enabled:
        return None
    exporter = MetricsServer(settings.listener)
    try:
        exporter.start()
    except OSError as exc:
        where = f"{settings.listener.bind}:{settings.listener.port}"
        raise click.ClickException(f"platform.metrics: cannot listen on {where}: {exc.strerror or exc}") from exc
    return exporter


for group in (asterisk, phone, prompts_group, voicemail, forward_group, callwaiting_group, presence_group,
              recording_group, conference_group, web_group, cluster_group, backup_command, restore_command, doctor, service_group):
    main.add_command(group)

if __name__ == "__main__":  # pragma: no cover
    main()
