"""`vipbx cluster plan|show|deploy|status`: where a cluster's tenants live, the SIP edge's files,
each node's own Asterisk files, and what is running.

`plan` places the tenants on `platform.nodes` (docs/cluster.md: a tenant's `node:`, else where it
was placed before, else the node with the most room), saves the placement in
`<home>/cluster/placement.json` and writes the edge's Kamailio files to `<home>/cluster/edge/`,
each replaced whole. `deploy` does the same, has a running edge read what changed, and then rolls
through the nodes (cluster/deploy.py), reloading only those whose files changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click

from asterisk_conf.deploy import RESTART_FILES
from asterisk_conf.render import ARI_USER
from base.ami import AmiError, AmiSettings, ami_session
from base.model import Config, Node
from base.paths import Paths
from cluster import edge_control
from cluster.deploy import NodeDeploy, deploy_nodes, live_generation
from cluster.edge import Edge, write_edge_files
from cluster.edge_config import render_cluster_edge
from cluster.mailboxes import MailboxSync, MailboxSyncError
from cluster.placement import Placement, PlacementError, load, place, save

from . import args as cliargs
from .context import AMI_USER, Context, ari_url
from .context import load as load_files
from .reload import AriDevicePusher, ami_dialplan_patcher, ami_reloader, ami_timeouts

config_files = cliargs.config_files()


@click.group("cluster")
def cluster_group() -> None:
    """A cluster: tenants placed on Asterisk nodes behind a Kamailio SIP edge (docs/cluster.md)."""


@cluster_group.command("plan")
@config_files
@click.option("--dry-run", is_flag=True, help="Show the placement; save and write nothing.")
@click.pass_obj
def cluster_plan(ctx: Context, files: tuple[str, ...], dry_run: bool) -> None:
    """Place the tenants on the nodes and write the SIP edge's files.

    A tenant's own node: wins; one placed before stays; the rest go, largest first, to the node
    with the most room. The placement is saved in <home>/cluster/placement.json and the edge's
    Kamailio files are written to <home>/cluster/edge/; a running edge reads the new routing
    table with `kamcmd -s unix:<home>/cluster/edge/run/kamailio_ctl htable.reload routes`."""
    config = _cluster_config(files, ctx.paths)
    placement = _place(ctx, config)
    _show(config.platform.nodes, placement)
    if dry_run:
        return
    _write_edge(ctx, config, placement)
    click.echo(f"placement saved in {ctx.paths.cluster / 'placement.json'}; the edge's files in "
               f"{ctx.paths.cluster / 'edge'}")


@cluster_group.command("deploy")
@config_files
@click.option("--no-reload", is_flag=True, help="Write every file but reload neither the edge nor a node.")
@ami_timeouts
@click.pass_obj
def cluster_deploy(ctx: Context, files: tuple[str, ...], no_reload: bool, ami_timeout: float,
                   reload_timeout: float) -> None:
    """Place, write the edge's files, then deploy node by node.

    A running edge reads a changed routing table and node list at once (a changed kamailio.cfg
    needs the edge restarted). With the call state on PostgreSQL, the nodes' mailbox table is
    written next (also with --no-reload; if it cannot be, no node is deployed). Each node's files
    go to <home>/cluster/nodes/NAME/etc/ as a new generation, and only a node whose files changed
    is reloaded, through its AMI at the node's address and platform.ami.port: a change of
    dialplan extensions alone goes in live, and new devices alone through the node's ARI (at its
    address and platform.http.port), without a reload. Serving nodes go first, standbys last; the
    first node that refuses its files is rolled back and stops the roll: the nodes after it keep
    what they run."""
    config = _cluster_config(files, ctx.paths)
    placement = _place(ctx, config)
    changed = _write_edge(ctx, config, placement)
    run_dir = ctx.paths.cluster / "edge" / "run"
    if changed:
        click.echo(f"edge: changed {', '.join(changed)}")
        if "kamailio.cfg" in changed and edge_control.running(run_dir):
            click.echo("edge: kamailio.cfg changed: restart the edge to read it", err=True)
    if changed and not no_reload and edge_control.running(run_dir):
        try:
            reloaded = edge_control.reload_changed(run_dir, changed)
        except edge_control.EdgeControlError as exc:
            raise click.ClickException(f"{exc}; no node was deployed") from exc
        if reloaded:
            click.echo(f"edge: reloaded {', '.join(reloaded)}")
    secret = ctx.secrets.get("ami")

    def reloader_for(node: Node):  # type: ignore[no-untyped-def]
        if no_reload:
            return None
        return ami_reloader(_node_ami(config, node, secret), ami_timeout, reload_timeout)

    def patcher_for(node: Node):  # type: ignore[no-untyped-def]
        if no_reload:
            return None
        return ami_dialplan_patcher(_node_ami(config, node, secret), ami_timeout, reload_timeout)

    def pusher_for(node: Node):  # type: ignore[no-untyped-def]
        if no_reload:
            return None
        # Through the operator's proxy when the node names one; else at the node's address, which
        # answers only on its own machine: elsewhere the refused connection means a reload.
        url = node.ari_url or ari_url(config, node.address)
        return AriDevicePusher(url, ARI_USER, ctx.secrets.get("ari"), ami_timeout)

    def mailboxes_written(synced: MailboxSync) -> None:
        if synced.any:
            click.echo(f"mailboxes: {synced.added} added, {synced.changed} changed, {synced.removed} removed "
                       "in the mailbox table")
        if synced.to_remove:
            click.echo(f"mailboxes: {synced.to_remove} gone from the YAML stay in the table until a deploy "
                       "reaches every node", err=True)

    try:
        done = asyncio.run(deploy_nodes(ctx.paths, config, placement, ctx.secrets, reloader_for,
                                        patcher_for=patcher_for, pusher_for=pusher_for,
                                        on_mailboxes=mailboxes_written))
    except MailboxSyncError as exc:
        raise click.ClickException(f"{exc}; no node was deployed") from exc
    for each in done:
        click.echo(_deployed_line(each))
    if done and done[-1].error:
        left = [n.name for n in config.platform.nodes if n.name not in {d.node for d in done}]
        raise click.ClickException(f"{done[-1].node} refused its files and was rolled back; not deployed: "
                                   + (", ".join(left) or "none"))


@cluster_group.command("status")
@config_files
@click.option("--ami-timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              metavar="SECONDS", help="How long each node's AMI may take to answer.")
@click.pass_obj
def cluster_status(ctx: Context, files: tuple[str, ...], ami_timeout: float) -> None:
    """Each node: its role, tenants and users, the generation deployed to it, whether its
    Asterisk answers, and whether the edge counts it as up. Exit 1 if any node is down."""
    config = _cluster_config(files, ctx.paths)
    saved = load(ctx.paths.cluster / "placement.json")
    placement = Placement(saved, _users(config, saved))
    run_dir = ctx.paths.cluster / "edge" / "run"
    edge_view: dict[str, edge_control.EdgeNodeState] = {}
    if not edge_control.running(run_dir):
        click.echo("edge: not running (no control socket)")
    else:
        try:
            edge_view = edge_control.node_states(run_dir)
            click.echo("edge: running")
        except edge_control.EdgeControlError as exc:
            click.echo(f"edge: does not answer ({exc})")
    secret = ctx.secrets.get("ami")
    healthy = True
    for node in config.platform.nodes:
        answer = asyncio.run(_asterisk_answers(_node_ami(config, node, secret), ami_timeout))
        state = edge_view.get(f"{node.address}:{node.port}")
        edge_says = "-" if state is None else ("up" if state.up else f"down ({state.flags})")
        role = "standby" if node.standby else f"{placement.users.get(node.name, 0)}/{node.capacity} users"
        tenants = ", ".join(placement.tenants_of(node.name)) or "-"
        generation = live_generation(ctx.paths, node.name) or "none"
        click.echo(f"{node.name:<12} {role:<20} generation {generation:<6} asterisk {answer:<12} "
                   f"edge {edge_says:<10} {tenants}")
        healthy = healthy and answer == "up" and (state is None or state.up)
    if not healthy:
        raise SystemExit(1)


@cluster_group.command("show")
@config_files
@click.pass_obj
def cluster_show(ctx: Context, files: tuple[str, ...]) -> None:
    """The saved placement, node by node (nothing changes)."""
    config = load_files(files)
    saved = load(ctx.paths.cluster / "placement.json")
    if not saved:
        raise click.ClickException("no placement saved yet: run `vipbx cluster plan` first")
    _show(config.platform.nodes, Placement(saved, _users(config, saved)))


def _users(config: Config, saved: dict[str, str]) -> dict[str, int]:
    size = {t.id: len(t.users) for t in config.tenants}
    return {n.name: sum(size.get(t, 0) for t, node in saved.items() if node == n.name) for n in config.platform.nodes}


def _cluster_config(files: tuple[str, ...], paths: Paths) -> Config:
    config = load_files(files, paths)
    if not config.platform.nodes or config.platform.sip_edge is None:
        raise click.ClickException("the configuration has no platform.nodes and sip_edge: it is one machine")
    return config


def _place(ctx: Context, config: Config) -> Placement:
    try:
        return place(config, load(ctx.paths.cluster / "placement.json"))
    except PlacementError as exc:
        raise click.ClickException(str(exc)) from exc


def _write_edge(ctx: Context, config: Config, placement: Placement) -> list[str]:
    """The edge's files and the placement, saved; the names of the edge's files that changed."""
    edge_dir = ctx.paths.cluster / "edge"
    data_dir, run_dir = edge_dir / "data", edge_dir / "run"
    edge = config.platform.sip_edge
    assert edge is not None
    changed = write_edge_files(render_cluster_edge(config, placement, data_dir, run_dir),
                               Edge(edge.address, edge.port, data_dir, run_dir), edge_dir / "kamailio.cfg")
    run_dir.mkdir(parents=True, exist_ok=True)
    save(ctx.paths.cluster / "placement.json", placement)
    return changed


def _node_ami(config: Config, node: Node, secret: str) -> AmiSettings:
    """A node's AMI: at the node's address, on the platform's AMI port."""
    return AmiSettings(node.address, config.platform.ami.port, AMI_USER, secret)


async def _asterisk_answers(settings: AmiSettings, timeout: float) -> str:
    try:
        async with ami_session(settings, timeout, action_timeout=timeout) as ami:
            await ami.action("Ping")
    except AmiError as exc:
        return f"down ({type(exc).__name__})"
    return "up"


def _deployed_line(each: NodeDeploy) -> str:
    if each.error:
        return f"{each.node}: refused, rolled back: {each.error}"
    if not each.changed:
        return f"{each.node}: no changes"
    assert each.result is not None
    line = f"{each.node}: generation {each.result.generation}; changed {', '.join(each.result.changed)}"
    if each.result.patched:
        line += f"; {each.result.patched} dialplan extension(s) changed live"
    if each.result.pushed:
        line += f"; {each.result.pushed} SIP device(s) created live"
    if each.result.reloaded:
        line += f"; reloaded {', '.join(each.result.reloaded)}"
    for warning in each.result.warnings:
        line += f"; warning: {warning}"
    if each.result.restart_needed:
        line += f"; {', '.join(sorted(set(each.result.changed) & RESTART_FILES))} changed: restart this node's Asterisk"
    return line


def _show(nodes: Sequence[Node], placement: Placement) -> None:
    for node in nodes:
        role = "standby" if node.standby else f"{placement.users.get(node.name, 0)}/{node.capacity} users"
        tenants = ", ".join(placement.tenants_of(node.name)) or "-"
        click.echo(f"{node.name:<12} {node.address}:{node.port:<6} {role:<22} {tenants}")
