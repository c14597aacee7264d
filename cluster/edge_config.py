"""The SIP edge's inputs from the YAML and the placement: its nodes, the routing table (every
number and device of a tenant → its node's dispatcher set), the trunks and service numbers."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from base.model import Config

from .edge import Edge, EdgeNode, EdgeTrunk, dispatcher_sets, render_edge, route_keys
from .placement import Placement


def edge_nodes(config: Config) -> list[EdgeNode]:
    return [EdgeNode(n.name, n.address, n.port, n.standby, n.standby_for) for n in config.platform.nodes]


def edge_routes(config: Config, placement: Placement) -> dict[str, int]:
    set_of = {s.node.name: s.id for s in dispatcher_sets(edge_nodes(config))}
    routes: dict[str, int] = {}
    for tenant in config.tenants:
        numbers = [(u.number, tenant.country_code) for u in tenant.users]
        numbers += [(n.number, tenant.country_code) for n in tenant.numbers]
        devices = [d.id for u in tenant.users for d in u.devices]
        for key in route_keys(numbers, devices):
            routes[key] = set_of[placement.tenants[tenant.id]]
    return routes


def render_cluster_edge(config: Config, placement: Placement, data_dir: Path, run_dir: Path) -> dict[str, str]:
    edge = config.platform.sip_edge
    if edge is None:
        raise ValueError("no platform.sip_edge in the configuration")
    platform = config.platform
    # A trunk is known by its `match` networks, else by its host when that is an address.
    trunks = [EdgeTrunk(t.name, t.match or ((t.host,) if _is_ip(t.host) else ()), t.host) for t in platform.trunks]
    service = [platform.voicemail_number, platform.activity_number, platform.conference_number]
    return render_edge(Edge(edge.address, edge.port, data_dir, run_dir, edge.probe_seconds), edge_nodes(config),
                       edge_routes(config, placement), trunks, service)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
