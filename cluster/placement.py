"""Which node each tenant lives on (docs/cluster.md, "Placement").

Rules, in order: a tenant's own `node:` wins; a tenant placed before stays where it is while its
node exists, takes tenants and has room; every other tenant goes, largest first, to the serving
node with the most room left (ties: the YAML's node order). So adding a tenant never moves one
that was placed, and the result depends only on the YAML and the previous placement.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from base.model import Config, Node


class PlacementError(Exception):
    """The tenants do not fit on the nodes (or a node named for one is over its capacity)."""


@dataclass(frozen=True)
class Placement:
    tenants: dict[str, str]  # tenant id → node name
    users: dict[str, int]  # node name → users placed on it

    def tenants_of(self, node: str) -> list[str]:
        return sorted(t for t, n in self.tenants.items() if n == node)


def place(config: Config, previous: Mapping[str, str] | None = None) -> Placement:
    nodes = [n for n in config.platform.nodes if not n.standby]
    if not nodes:
        raise PlacementError("no nodes to place tenants on: platform.nodes has none that takes tenants")
    by_name = {n.name: n for n in nodes}
    size = {t.id: len(t.users) for t in config.tenants}
    placed: dict[str, str] = {}
    users = {n.name: 0 for n in nodes}

    def put(tenant: str, node: str) -> None:
        placed[tenant] = node
        users[node] += size[tenant]

    for tenant in config.tenants:
        if tenant.node is not None:
            put(tenant.id, tenant.node)
    for node in nodes:
        if users[node.name] > node.capacity:
            raise PlacementError(f"node {node.name!r} has room for {node.capacity} users; the tenants that name it "
                                 f"({', '.join(t for t, n in placed.items() if n == node.name)}) have "
                                 f"{users[node.name]}")
    for tenant in config.tenants:
        before = (previous or {}).get(tenant.id)
        if tenant.id not in placed and before in by_name and _fits(by_name[before], users, size[tenant.id]):
            put(tenant.id, before)
    waiting = sorted((t for t in config.tenants if t.id not in placed), key=lambda t: (-size[t.id], t.id))
    for tenant in waiting:
        node = max(nodes, key=lambda n: (n.capacity - users[n.name], -nodes.index(n)))
        if not _fits(node, users, size[tenant.id]):
            raise PlacementError(f"tenant {tenant.id!r} ({size[tenant.id]} users) fits on no node: the most room "
                                 f"left is {node.capacity - users[node.name]} users, on {node.name!r}")
        put(tenant.id, node.name)
    return Placement(dict(sorted(placed.items())), users)


def _fits(node: Node, users: Mapping[str, int], more: int) -> bool:
    return users[node.name] + more <= node.capacity


def load(path: Path) -> dict[str, str]:
    """A saved placement (tenant → node); none yet: empty."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(k): str(v) for k, v in data.get("tenants", {}).items()}


def save(path: Path, placement: Placement) -> None:
    """Written whole (a reader sees the old or the new placement)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps({"tenants": placement.tenants, "users": placement.users}, indent=2) + "\n")
    os.replace(tmp, path)
