"""Each node's own Asterisk files: the configuration of its tenants only (a standby: of every
tenant of the nodes it stands in for), listening on the node's address."""

from __future__ import annotations

from dataclasses import replace

from asterisk_conf.render import render_config
from base.model import Config, Listener, Node
from base.secrets import SecretStore

from .placement import Placement


def node_config(config: Config, placement: Placement, node: Node) -> Config:
    """`config` as `node` serves it: its tenants, its SIP listener."""
    if node.standby:
        tenants = tuple(t for t in config.tenants if node.stands_in_for(placement.tenants.get(t.id, "")))
    else:
        tenants = tuple(t for t in config.tenants if placement.tenants.get(t.id) == node.name)
    platform = replace(config.platform, sip=Listener(node.address, node.port))
    return replace(config, platform=platform, tenants=tenants)


def render_node(config: Config, placement: Placement, node: Node, secrets: SecretStore) -> dict[str, str]:
    return render_config(node_config(config, placement, node), secrets)
