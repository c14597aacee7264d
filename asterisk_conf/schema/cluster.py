"""`platform.nodes` and `platform.sip_edge`: the Asterisk nodes of a cluster and the Kamailio
edge in front of them (docs/cluster.md). Without them the platform is one machine, as before."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from asterisk_conf.checks import Checker, Fields, Loc, list_items
from asterisk_conf.values import (
    boolean,
    host,
    integer,
    ip_address,
    pattern,
    port,
    string_value,
)
from base.model import Node, SipEdge, Tenant

NODE_KEYS = ("name", "address", "port", "capacity", "standby", "standby_for", "ari_url")
EDGE_KEYS = ("address", "port", "probe_seconds", "register_seconds")
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/\[\]%-]+")
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
node_name = pattern(NODE_NAME, "lowercase letters, digits and '-', starting with a letter", '"node1"')
capacity = integer(1, 1_000_000)


def ari_url(chk: Checker, loc: Loc, value: Any) -> str:
    """Where a deploying host reaches a node's ARI through an operator's TLS reverse proxy:
    https://HOST[:PORT]/PATH (plain http only to a loopback address), no user or password (the
    deploy sends the generated ARI password), nothing that would end up in a request line."""
    got = string_value(chk, loc, value, '"https://node1.pbx.example:8089/ari"')
    if got is None:
        return ""
    try:
        url = urlsplit(got)
        _ = url.port  # a port that is no number raises here
    except ValueError:
        url = None
    bad = (url is None or url.scheme not in ("https", "http") or not url.hostname or url.username is not None
           or url.password is not None or url.query or url.fragment or not _URL_CHARS.fullmatch(got))
    if bad or url is None:
        chk.report(loc, f"{got!r} is not an ARI address: https://host[:port]/path, e.g. "
                        "https://node1.pbx.example:8089/ari (no user, password or query)")
        return ""
    probe = Checker()
    host(probe, loc, url.hostname)
    if probe.problems:
        chk.report(loc, f"{got!r}: {url.hostname!r} is not an IP address or a lowercase DNS name")
        return ""
    if url.scheme == "http" and not _is_loopback(url.hostname):
        chk.report(loc, "plain http would send the ARI password over the network: use https (a TLS "
                        "reverse proxy in front of the node's ARI, docs/cluster.md)")
        return ""
    return got.rstrip("/")


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


def node_names(chk: Checker, loc: Loc, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        chk.report(loc, 'a list of node names, e.g. [node1, node2]')
        return []
    return [name for i, item in enumerate(value) if (name := node_name(chk, loc / i, item))]


def nodes(chk: Checker, loc: Loc, value: Any) -> tuple[Node, ...]:
    found: list[Node] = []
    locs: list[Loc] = []
    names: dict[str, Loc] = {}
    addresses: dict[tuple[str, int], Loc] = {}
    if value == []:
        # One machine is said by leaving nodes: out; an empty list would leave an edge with no node.
        chk.report(loc, "empty: list the Asterisk nodes (or leave nodes: and sip_edge: out for one machine)")
    for item, item_loc in list_items(chk, loc, value, "nodes"):
        f = Fields(chk, item_loc, item, NODE_KEYS, "a node", 'name: node1')
        node = Node(
            name=f.get("name", node_name, "", missing="missing (required: a short name)"),
            address=f.get("address", ip_address, "", missing="missing (required: the node's SIP address)"),
            port=f.get("port", port, 5060),
            capacity=f.get("capacity", capacity, Node("", "").capacity),
            standby=f.get("standby", boolean, False),
            standby_for=tuple(f.get("standby_for", node_names, [])),
            ari_url=f.get("ari_url", ari_url, ""),
        )
        if node.standby_for and not node.standby:
            chk.report(item_loc / "standby_for", "only a standby node stands in for others (add standby: true)")
        if node.name and node.name in names:
            chk.report(item_loc / "name", f"node {node.name!r} is already named at {names[node.name].describe()}")
        elif node.name:
            names[node.name] = item_loc / "name"
        where = (node.address, node.port)
        if node.address and where in addresses:
            chk.report(item_loc / "address",
                       f"{node.address}:{node.port} is already the address of the node at {addresses[where].describe()}")
        elif node.address:
            addresses[where] = item_loc / "address"
        found.append(node)
        locs.append(item_loc)
    serving = [n for n in found if not n.standby]
    if found and not serving:
        chk.report(loc, "every node is a standby: at least one must take tenants")
    serving_names = {n.name for n in serving}
    for node, item_loc in zip(found, locs, strict=True):
        for name in node.standby_for:
            if name not in serving_names:
                chk.report(item_loc / "standby_for", f"{name!r} is not a serving node of this list")
    uncovered = [n.name for n in serving if not any(s.stands_in_for(n.name) for s in found)]
    if len(serving) > 1 and len(serving) != len(found) and uncovered:
        chk.report(loc, f"no standby stands in for {', '.join(uncovered)} (name it in a standby's standby_for)")
    if len(serving) > 1 and len(serving) == len(found):
        chk.report(loc, "no standby node: a failed node's tenants would have nowhere to go "
                        "(add a node with standby: true)")
    return tuple(found)


def sip_edge(chk: Checker, loc: Loc, value: Any) -> SipEdge:
    f = Fields(chk, loc, value, EDGE_KEYS, "sip_edge", "address: 192.0.2.10")
    return SipEdge(
        address=f.get("address", ip_address, "", missing="missing (required: the edge's SIP address)"),
        port=f.get("port", port, 5060),
        probe_seconds=f.get("probe_seconds", integer(1, 60), 2),
        register_seconds=f.get("register_seconds", integer(10, 3600), 60),
    )


def edge_apart(chk: Checker, loc: Loc, edge: SipEdge, found: Sequence[Node]) -> None:
    """The edge sends every request to a node's address: on the same address and port, it
    would send them to itself."""
    for node in found:
        if edge.address and (node.address, node.port) == (edge.address, edge.port):
            chk.report(loc / "address", f"{edge.address}:{edge.port} is also the address of node {node.name!r}: "
                                        "the edge needs its own address or port")


def named_nodes_fit(chk: Checker, found: Sequence[Node], tenants: Sequence[tuple[Tenant, Loc]]) -> None:
    """The tenants that name a node must fit in its capacity. Reported at the `node:` of the
    tenant that overfills it (in file order), so the check fails before anything is placed."""
    capacity = {n.name: n.capacity for n in found if n.capacity > 0}  # below 1: already reported
    named = [(t, loc) for t, loc in tenants if t.node in capacity]
    total = {name: sum(len(t.users) for t, _ in named if t.node == name) for name in capacity}
    running = dict.fromkeys(capacity, 0)
    for tenant, loc in named:
        node = tenant.node or ""
        before = running[node]
        running[node] += len(tenant.users)
        if before <= capacity[node] < running[node]:
            names = ", ".join(f"{t.id} ({len(t.users)})" for t, _ in named if t.node == node)
            chk.report(loc / "node", f"node {node!r} has room for {capacity[node]} users; the tenants that name it "
                                     f"have {total[node]}: {names}")
