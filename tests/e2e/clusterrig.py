"""A whole cluster on loopback: Debian's Kamailio as the SIP edge, three real Asterisk nodes
(node1, node2 and the standby) each with the vipbx service, one PostgreSQL for the call state and
one voicemail spool shared by every node, and the test phone, whose devices and carrier talk only
to the edge.

Addresses: the edge 127.0.0.70:25060; node1 .71, node2 .72, standby1 .73 (SIP on 15060, ARI,
AMI and FastAGI on their usual test ports, each on its own address); the phone's devices .74 and
its carrier .75. The YAML is examples/cluster/platform.yaml with the example tenants: acme is
placed on node1 and borealis on node2.

The nodes share what a real cluster shares: secrets.json (device passwords, ARI and AMI secrets),
the PostgreSQL database and the spool (a directory bind-mounted into every node, as an NFS
mount would be). Every process is started here and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from conftest import EXAMPLES, Pbx, on_test_addresses
from edgerig import Kamailio
from pgserver import PgServer
from support import Running, pbx_channel_count, start_service

from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from asterisk_host import AsteriskInstance, AsteriskRuntime
from base.model import Config, Listener, Node, SipEdge, StateDatabase
from base.paths import Paths
from base.secrets import SecretStore
from cluster import edge_control
from cluster.deploy import deploy_nodes, node_paths
from cluster.edge import Edge, write_edge_files
from cluster.edge_config import render_cluster_edge
from cluster.nodes import node_config
from cluster.placement import Placement, place
from testphone import PhoneInstance, PhoneSettings

EDGE_IP, EDGE_PORT = "127.0.0.70", 25060
NODE_IPS = {"node1": "127.0.0.71", "node2": "127.0.0.72", "standby1": "127.0.0.73"}
NODE_SIP_PORT = 15060
PHONES_IP, CARRIER_IP = "127.0.0.74", "127.0.0.75"
# Each node's RTP ports apart from the others' and from the session PBX's (15100-15599).
NODE_RTP = {"node1": (17100, 17299), "node2": (17300, 17499), "standby1": (17500, 17699)}
PHONE_RTP = (17700, 17999)
PROBE_SECONDS = 1
REGISTER_SECONDS = 15  # devices of a failed node reach the standby within this (docs/cluster.md)
CLUSTER_FILES = [EXAMPLES / "cluster" / "platform.yaml", EXAMPLES / "acme.yaml", EXAMPLES / "borealis.yaml"]


def cluster_config(pg: PgServer, database: str) -> Config:
    """The example cluster on the addresses above, its call state on the test PostgreSQL."""
    config = load_config([str(p) for p in CLUSTER_FILES])
    platform = config.platform
    nodes = tuple(replace(n, address=NODE_IPS[n.name], port=NODE_SIP_PORT) for n in platform.nodes)
    state = StateDatabase("postgresql", host="127.0.0.1", port=pg.port, name=database, user="vipbx")
    platform = on_test_addresses(platform, pbx_ip=EDGE_IP, carrier_ip=CARRIER_IP)
    platform = replace(platform, nodes=nodes, state_database=state,
                       sip=Listener(EDGE_IP, EDGE_PORT),
                       sip_edge=SipEdge(EDGE_IP, EDGE_PORT, probe_seconds=PROBE_SECONDS,
                                        register_seconds=REGISTER_SECONDS))
    return replace(config, platform=platform)


@dataclass
class ClusterNode:
    node: Node
    pbx: Pbx
    config: Config  # what this node serves (node_config)
    app: Running | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.node.name

    def channels(self) -> int:
        return pbx_channel_count(self.pbx)

    async def start_app(self) -> None:
        service, deps = start_service(self.pbx, self.config)
        self.task = asyncio.create_task(service.run(), name=f"vipbx-{self.name}")
        self.app = Running(service, deps)
        await service.client.wait_connected(15)

    async def stop_app(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        if self.app is not None:
            self.app.deps.callstate.close()
        self.app, self.task = None, None


@dataclass
class Cluster:
    home: Path
    config: Config  # the whole platform (every tenant)
    placement: Placement
    secrets: SecretStore
    spool: Path
    sounds: Path
    edge: Kamailio
    nodes: dict[str, ClusterNode] = field(default_factory=dict)
    phone: PhoneInstance | None = None

    @property
    def edge_dir(self) -> Path:
        return self.home / "cluster" / "edge"

    @property
    def edge_files(self) -> Edge:
        return Edge(EDGE_IP, EDGE_PORT, self.edge_dir / "data", self.edge_dir / "run", PROBE_SECONDS)

    @property
    def edge_address(self) -> str:
        return f"{EDGE_IP}:{EDGE_PORT}"

    def node_of(self, tenant: str) -> ClusterNode:
        return self.nodes[self.placement.tenants[tenant]]

    def edge_up(self, node: str) -> bool:
        """Whether the edge counts `node` as up, read as `vipbx cluster status` reads it."""
        return edge_control.node_states(self.edge.run_dir)[f"{NODE_IPS[node]}:{NODE_SIP_PORT}"].up

    def stop(self) -> None:
        if self.phone is not None:
            self.phone.stop()
        for each in self.nodes.values():
            each.pbx.instance.stop()
        self.edge.stop()


def build_cluster(runtime: AsteriskRuntime, home: Path, pg: PgServer, database: str, sounds: Path) -> Cluster:
    """Renders and starts the edge and every node (not their services: `start_apps`)."""
    config = cluster_config(pg, database)
    placement = place(config)
    home.mkdir(parents=True, exist_ok=True)
    secrets_path = home / "secrets.json"
    secrets_path.write_text(json.dumps({"postgresql": pg.password}))
    os.chmod(secrets_path, 0o600)
    secrets = SecretStore(secrets_path)
    spool = home / "spool"
    spool.mkdir(exist_ok=True)

    edge_home = home / "cluster" / "edge"
    edge = Edge(EDGE_IP, EDGE_PORT, edge_home / "data", edge_home / "run", PROBE_SECONDS)
    write_edge_files(render_cluster_edge(config, placement, edge.data_dir, edge.run_dir), edge,
                     edge_home / "kamailio.cfg")
    cluster = Cluster(home, config, placement, secrets, spool, sounds,
                      Kamailio(edge_home / "kamailio.cfg", edge.run_dir, edge_home / "kamailio.log"))
    # Every node's first generation, as `vipbx cluster deploy` writes it (nothing runs to reload).
    done = asyncio.run(deploy_nodes(Paths(home), config, placement, secrets, lambda node: None, render_for_test))
    assert [d.error for d in done if d.error] == []
    try:
        cluster.edge.start()
        for node in config.platform.nodes:
            cluster.nodes[node.name] = _start_node(runtime, cluster, node)
        cluster.phone = _start_phone(runtime, cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def render_for_test(config: Config, placement: Placement, node: Node, secrets: SecretStore) -> dict[str, str]:
    """What render_node renders, with the node's own listeners (ARI, AMI, FastAGI) and RTP ports
    on test addresses, as several nodes share this machine."""
    return render_config(served_by(config, placement, node), secrets)


def served_by(config: Config, placement: Placement, node: Node) -> Config:
    served = node_config(config, placement, node)
    platform = on_test_addresses(served.platform, pbx_ip=node.address, carrier_ip=CARRIER_IP,
                                 rtp=NODE_RTP[node.name])
    return replace(served, platform=platform)


def _start_node(runtime: AsteriskRuntime, cluster: Cluster, node: Node) -> ClusterNode:
    home = node_paths(Paths(cluster.home), node.name).home
    shutil.copy2(cluster.secrets.path, home / "secrets.json")
    (home / "pbx").mkdir()
    # The shared spool where every node (and its service) expects its own: an NFS mount point.
    (home / "pbx" / "spool").symlink_to(cluster.spool)
    # The prompts where the node's service names them (hard links: built once).
    shutil.copytree(cluster.sounds, home / "sounds", copy_function=os.link)
    instance = AsteriskInstance(runtime, home / "pbx", Paths(home).current, name=node.name,
                                shared=[home / "sounds", cluster.spool])
    instance.start()
    served = served_by(cluster.config, cluster.placement, node)
    return ClusterNode(node, Pbx(instance, served, SecretStore(home / "secrets.json"), home), served)


def _start_phone(runtime: AsteriskRuntime, cluster: Cluster) -> PhoneInstance:
    """The devices and the carrier, all pointed at the edge; returns once every device registered
    (through the edge, with its node)."""
    settings = PhoneSettings.for_config(cluster.config, PHONES_IP, sip_port=16060, http_port=16088,
                                        rtp_start=PHONE_RTP[0], rtp_end=PHONE_RTP[1])
    phone = PhoneInstance(runtime, cluster.home / "phone", cluster.secrets)
    phone.configure(cluster.config, settings)
    phone.start()
    cluster.phone = phone
    state = phone.wait_registered(timeout=30)
    missing = {d: state.get(d, "absent") for d in phone.devices if state.get(d) != "Registered"}
    assert not missing, f"devices did not register through the edge: {missing}\n" + cluster.edge.log.read_text()[-3000:]
    return phone


async def start_apps(cluster: Cluster) -> AsyncIterator[Cluster]:
    """Every node's service running (one after another: the first creates the schema)."""
    try:
        for each in cluster.nodes.values():
            await each.start_app()
        yield cluster
    finally:
        for each in cluster.nodes.values():
            await each.stop_app()
