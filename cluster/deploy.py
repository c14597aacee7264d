"""Deploying a cluster, node by node: each node gets its own generations of Asterisk files (its
tenants only, asterisk_conf.deploy: check, swap, reload the changed modules, roll back on refusal)
under `<home>/cluster/nodes/<name>/etc/`, where the node's Asterisk reads them (shared storage or a
copy; docs/cluster.md). A node whose files did not change is not touched, and a node whose inputs
did not change (its tenants, the platform, its secrets, the renderer) is not even rendered: each
node's deploy leaves the digest of its inputs beside its generations. The serving nodes go first
and the standbys last; the first node that refuses stops the roll, and the nodes after it keep
the configuration they run."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from asterisk_conf import deploy as deploying
from asterisk_conf.mailbox_table import in_table
from asterisk_conf.render import AGI_KEY, templates_dir
from base.model import Config, Node
from base.paths import Paths
from base.secrets import POSTGRESQL_SECRET, SecretStore

from .mailboxes import MailboxSync, MailboxSyncError, sync_mailboxes
from .nodes import node_config, render_node
from .placement import Placement

log = logging.getLogger(__name__)

NodeRenderer = Callable[[Config, Placement, Node, SecretStore], dict[str, str]]
ReloaderFor = Callable[[Node], "deploying.Reloader | None"]
PatcherFor = Callable[[Node], "deploying.DialplanPatcher | None"]
PusherFor = Callable[[Node], "deploying.DevicePusher | None"]
INPUTS_FILE = "inputs.sha256"  # in a node's etc/: the digest of what its live files were made from


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
                       reloader_for: ReloaderFor, render: NodeRenderer = render_node, *,
                       patcher_for: PatcherFor | None = None,
                       pusher_for: PusherFor | None = None,
                       on_mailboxes: Callable[[MailboxSync], None] | None = None) -> list[NodeDeploy]:
    """The mailbox table first (a cluster on PostgreSQL: MailboxSyncError and nothing deployed
    when it cannot be written), then every node in rolling order; stops at the first that fails
    (its own deploy rolled it back). Mailboxes gone leave the table only after a roll in which no
    node failed: a node that kept its files may still lead calls to them."""
    # New and changed mailboxes before any node leads to them; gone ones after every node stopped.
    synced = await asyncio.to_thread(sync_mailboxes, config, secrets.get, remove=False)
    done: list[NodeDeploy] = []
    seen: dict[int, bytes] = {}  # a standby serves its node's tenants again: each is read once
    for node in rolling_order(config.platform.nodes):
        own = node_paths(paths, node.name)
        stamp = own.etc / INPUTS_FILE
        inputs = node_inputs(config, placement, node, secrets, render, seen)
        if _read(stamp) == inputs and deploying.Generations(own).target(own.current) is not None:
            done.append(NodeDeploy(node.name, deploying.DeployResult(generation=None)))
            continue
        files = render(config, placement, node, secrets)
        try:
            patcher = patcher_for(node) if patcher_for else None
            pusher = pusher_for(node) if pusher_for else None
            result = await deploying.deploy(own, files, reloader_for(node), patch_dialplan=patcher,
                                            push_devices=pusher)
        except deploying.DeployError as exc:
            done.append(NodeDeploy(node.name, error=str(exc)))
            break
        _write(stamp, inputs)
        done.append(NodeDeploy(node.name, result))
    if synced is not None and synced.to_remove and not any(d.error for d in done):
        try:
            removed = await asyncio.to_thread(sync_mailboxes, config, secrets.get)
        except MailboxSyncError as exc:  # the nodes are deployed: the rows go at the next deploy
            log.warning("%s; the mailboxes gone stay in the table until the next deploy", exc)
        else:
            synced = replace(synced, removed=removed.removed if removed else 0, to_remove=0)
    if synced is not None and on_mailboxes is not None:
        on_mailboxes(synced)
    return done


def node_inputs(config: Config, placement: Placement, node: Node, secrets: SecretStore,
                render: NodeRenderer = render_node, seen: dict[int, bytes] | None = None) -> str:
    """A digest of everything a node's files are made from: what it serves (its tenants and the
    platform), the secrets its files hold, and the renderer (templates and code). `seen`: each
    tenant's digest by id(), kept across the nodes of one deploy."""
    served = node_config(config, placement, node)
    names = ["ari", "ami", AGI_KEY] + [f"device:{d.id}" for t in served.tenants for u in t.users for d in u.devices]
    if in_table(served.platform):
        names.append(POSTGRESQL_SECRET)  # in res_pgsql.conf
    digest = hashlib.sha256(_renderer_digest().encode())
    # Not `sources`: the files a tenant came from do not change what is rendered.
    digest.update(f"{render.__module__}.{render.__qualname__}\n{served.platform!r}\n".encode())
    seen = {} if seen is None else seen
    for tenant in served.tenants:
        if id(tenant) not in seen:
            seen[id(tenant)] = hashlib.sha256(repr(tenant).encode()).digest()
        digest.update(seen[id(tenant)])
    for name, value in sorted(secrets.ensure(names).items()):
        digest.update(f"{name}={value}\n".encode())
    return digest.hexdigest()


@cache
def _renderer_digest() -> str:
    digest = hashlib.sha256()
    code = Path(__file__).resolve().parents[1]
    for folder, pattern in ((templates_dir(), "**/*.j2"), (code / "asterisk_conf", "*.py"), (code / "cluster", "*.py")):
        for path in sorted(folder.glob(pattern)):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def live_generation(paths: Paths, node: str) -> str | None:
    """The generation a node's `current` points at (None before its first deploy)."""
    target = deploying.Generations(node_paths(paths, node)).target(node_paths(paths, node).current)
    return target.name if isinstance(target, Path) else None
