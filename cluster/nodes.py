"""Each node's own Asterisk files: the configuration of its tenants only (a standby: of every
tenant, since it may stand in for any node), listening on the node's address."""

from __future__ import annotations

from dataclasses import replace

from asterisk_conf.render import render_config
from base.model import Config, Listener, Node
from base.secrets import SecretStore

from .placement import Placement


def node_config(config: Config, placement: Placement, node: Node) -> Config:
    """`config` as `node` serves it: its tenants, its SIP listener."""
    tenants = config.tenants if node.standby else tuple(
        t for t in config.tenants if placement.tenants.get(t.id) == node.name)
    platform = replace(config.platform, sip=Listener(node.address, node.port))
    return replace(config, platform=platform, tenants=tenants)


def render_node(config: Config, placement: Placement, node: Node, secrets: SecretStore) -> dict[str, str]:
    return render_config(node_config(config, placement, node), secrets)
