"""`vipbx cluster plan|show`: where a cluster's tenants live, and the SIP edge's files.

`plan` places the tenants on `platform.nodes` (docs/cluster.md: a tenant's `node:`, else where it
was placed before, else the node with the most room), saves the placement in
`<home>/cluster/placement.json` and writes the edge's Kamailio files to `<home>/cluster/edge/`,
each replaced whole. A running edge reads a new routing table with
`kamcmd -s unix:<home>/cluster/edge/run/kamailio_ctl htable.reload routes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from base.model import Node
from cluster.edge import Edge, write_edge_files
from cluster.edge_config import render_cluster_edge
from cluster.placement import Placement, PlacementError, load, place, save

from . import args as cliargs
from .context import Context, load as load_files

config_files = cliargs.config_files()


@click.group("cluster")
def cluster_group() -> None:
    """Place tenants on the Asterisk nodes of a cluster and render its SIP edge (Kamailio)."""


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
    config = load_files(files)
    if not config.platform.nodes or config.platform.sip_edge is None:
        raise click.ClickException("the configuration has no platform.nodes and sip_edge: it is one machine")
    saved = ctx.paths.cluster / "placement.json"
    try:
        placement = place(config, load(saved))
    except PlacementError as exc:
        raise click.ClickException(str(exc)) from exc
    _show(config.platform.nodes, placement)
    if dry_run:
        return
    edge_dir = ctx.paths.cluster / "edge"
    data_dir, run_dir = edge_dir / "data", edge_dir / "run"
    files_out = render_cluster_edge(config, placement, data_dir, run_dir)
    edge = config.platform.sip_edge
    write_edge_files(files_out, Edge(edge.address, edge.port, data_dir, run_dir), edge_dir / "kamailio.cfg")
    run_dir.mkdir(parents=True, exist_ok=True)
    save(saved, placement)
    click.echo(f"placement saved in {saved}; the edge's files in {edge_dir}")


@cluster_group.command("show")
@config_files
@click.pass_obj
def cluster_show(ctx: Context, files: tuple[str, ...]) -> None:
    """The saved placement, node by node (nothing changes)."""
    config = load_files(files)
    saved = load(ctx.paths.cluster / "placement.json")
    if not saved:
        raise click.ClickException("no placement saved yet: run `vipbx cluster plan` first")
    size = {t.id: len(t.users) for t in config.tenants}
    users = {n.name: sum(size.get(t, 0) for t, node in saved.items() if node == n.name) for n in config.platform.nodes}
    _show(config.platform.nodes, Placement(saved, users))


def _show(nodes: Sequence[Node], placement: Placement) -> None:
    for node in nodes:
        role = "standby" if node.standby else f"{placement.users.get(node.name, 0)}/{node.capacity} users"
        tenants = ", ".join(placement.tenants_of(node.name)) or "-"
        click.echo(f"{node.name:<12} {node.address}:{node.port:<6} {role:<22} {tenants}")
