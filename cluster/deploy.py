"""Deploying a cluster, node by node: each node gets its own generations of Asterisk files (its
tenants only, asterisk_conf.deploy: check, swap, reload the changed modules, roll back on refusal)
under `<home>/cluster/nodes/<name>/etc/`, where the node's Asterisk reads them (shared storage or a
copy; docs/cluster.md). A node whose files did not change is not touched. The serving nodes go
first and the standbys last; the first node that refuses stops the roll, and the nodes after it
keep the configuration they run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asterisk_conf import deploy as deploying
from base.model import Config, Node
from base.paths import Paths
from base.secrets import SecretStore

from .nodes import render_node
from .placement import Placement

NodeRenderer = Callable[[Config, Placement, Node, SecretStore], dict[str, str]]
ReloaderFor = Callable[[Node], "deploying.Reloader | None"]


@dataclass
class NodeDeploy:
    node: str
    result: deploying.DeployResult | None = None
    error: str = ""

    @property
    def changed(self) -> bool:
        return self.result is not None and self.result.generation is not None


def node_paths(paths: Paths, node: str) -> Paths:
    """A node's own home: its `etc/current` is the folder its Asterisk reads."""
    return Paths(paths.cluster / "nodes" / node)


def rolling_order(nodes: tuple[Node, ...]) -> list[Node]:
    return [n for n in nodes if not n.standby] + [n for n in nodes if n.standby]


async def deploy_nodes(paths: Paths, config: Config, placement: Placement, secrets: SecretStore,
                       reloader_for: ReloaderFor, render: NodeRenderer = render_node) -> list[NodeDeploy]:
    """Every node in rolling order; stops at the first that fails (its own deploy rolled it back)."""
    done: list[NodeDeploy] = []
    for node in rolling_order(config.platform.nodes):
        files = render(config, placement, node, secrets)
        try:
            result = await deploying.deploy(node_paths(paths, node.name), files, reloader_for(node))
        except deploying.DeployError as exc:
            done.append(NodeDeploy(node.name, error=str(exc)))
            break
        done.append(NodeDeploy(node.name, result))
    return done


def live_generation(paths: Paths, node: str) -> str | None:
    """The generation a node's `current` points at (None before its first deploy)."""
    target = deploying.Generations(node_paths(paths, node)).target(node_paths(paths, node).current)
    return target.name if isinstance(target, Path) else None
