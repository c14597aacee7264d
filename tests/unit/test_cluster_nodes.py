"""A node's own Asterisk files grow with its tenants, not with the platform: tenants placed on
other nodes leave its files byte for byte the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from asterisk_conf.validate import load_config
from base.model import Config
from base.secrets import SecretStore
from cluster.nodes import render_node
from cluster.placement import place

FILES = ("pjsip.conf", "extensions.conf", "voicemail.conf")
PLATFORM = """\
platform:
  sip_edge: {address: 127.0.0.30}
  nodes:
    - {name: node1, address: 127.0.0.31, capacity: 1000}
    - {name: node2, address: 127.0.0.32, capacity: 1000}
    - {name: spare, address: 127.0.0.33, standby: true}
"""


def tenant(index: int, node: str, users: int = 20) -> str:
    tid = f"t{index:02d}"
    lines = [f"  - id: {tid}", f"    name: Tenant {index}", f"    domain: {tid}.example", '    country_code: "358"',
             f"    node: {node}", "    users:"]
    for n in range(users):
        lines += [f"      - id: u{n}", f"        name: User {n}", f'        number: "+3584{index:02d}11{n:04d}"',
                  f'        extension: "{100 + n}"', '        pin: "480264"', "        devices:",
                  f"          - id: {tid}-u{n}-soft"]
    return "\n".join(lines) + "\n"


def cluster(tmp_path: Path, nodes: list[str]) -> Config:
    path = tmp_path / f"cluster-{len(nodes)}-{nodes.count('node1')}.yaml"
    path.write_text(PLATFORM + "tenants:\n" + "".join(tenant(i, n) for i, n in enumerate(nodes)))
    return load_config([path])


def node_files(config: Config, name: str, secrets: SecretStore) -> dict[str, str]:
    node = next(n for n in config.platform.nodes if n.name == name)
    return render_node(config, place(config), node, secrets)


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    return SecretStore(tmp_path / "secrets.json")


def test_a_node_holds_only_its_own_tenants_users(tmp_path: Path, secrets: SecretStore) -> None:
    config = cluster(tmp_path, ["node1", "node2", "node2"])
    files = node_files(config, "node1", secrets)
    for name in FILES:
        assert "t00" in files[name], name
        assert "t01" not in files[name] and "t02" not in files[name], name
    assert "[t00-u0-soft]" in files["pjsip.conf"] and "[t01-u0-soft]" not in files["pjsip.conf"]


def test_tenants_on_other_nodes_leave_a_nodes_files_unchanged(tmp_path: Path, secrets: SecretStore) -> None:
    small = cluster(tmp_path, ["node1", "node2"])
    large = cluster(tmp_path, ["node1"] + ["node2"] * 9)  # the platform five times larger
    mine = node_files(small, "node1", secrets)
    assert node_files(large, "node1", secrets) == mine
    assert all(len(node_files(large, "node2", secrets)[n]) > len(node_files(small, "node2", secrets)[n]) for n in FILES)


def test_a_nodes_files_grow_with_its_own_tenants(tmp_path: Path, secrets: SecretStore) -> None:
    # The per-tenant share of each file: one tenant's worth, then three tenants' worth.
    base = node_files(cluster(tmp_path, ["node2"]), "node1", secrets)  # a node without tenants
    one = node_files(cluster(tmp_path, ["node1", "node2"]), "node1", secrets)
    three = node_files(cluster(tmp_path, ["node1", "node1", "node1", "node2"]), "node1", secrets)
    for name in FILES:
        share = len(one[name]) - len(base[name])
        assert share > 0, name
        assert 2.8 * share <= len(three[name]) - len(base[name]) <= 3.2 * share, name


def test_the_standby_holds_every_tenant(tmp_path: Path, secrets: SecretStore) -> None:
    config = cluster(tmp_path, ["node1", "node2", "node2"])
    standby = node_files(config, "spare", secrets)
    for name in FILES:
        assert all(t in standby[name] for t in ("t00", "t01", "t02")), name
    assert "bind=127.0.0.33:5060" in standby["pjsip.conf"].replace(" ", "")
