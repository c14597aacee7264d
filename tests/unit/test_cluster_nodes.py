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


def sections(text: str) -> dict[str, list[dict[str, list[str]]]]:
    """pjsip.conf's sections by name (a name may hold several objects), each option's values."""
    found: dict[str, list[dict[str, list[str]]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = {}
            found.setdefault(line[1:-1], []).append(current)
        elif "=" in line and not line.startswith(";"):
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return found


def of_type(found: dict[str, list[dict[str, list[str]]]], name: str, kind: str) -> dict[str, list[str]]:
    return next(s for s in found[name] if s.get("type") == [kind])


def test_a_node_takes_sip_from_the_edge_alone_and_answers_its_probes(tmp_path: Path, secrets: SecretStore) -> None:
    files = node_files(cluster(tmp_path, ["node1"]), "node1", secrets)
    pjsip = sections(files["pjsip.conf"])
    assert pjsip["global"][0]["endpoint_identifier_order"] == ["header,username,ip"]
    acl = of_type(pjsip, "vipbx-edge-only", "acl")
    assert acl["deny"] == ["0.0.0.0/0.0.0.0", "::/0"] and acl["permit"] == ["127.0.0.30"]
    assert of_type(pjsip, "vipbx-edge", "identify")["match"] == ["127.0.0.30"]
    assert of_type(pjsip, "vipbx-edge", "endpoint")["context"] == ["vipbx-from-edge"]
    assert "[vipbx-from-edge]\nexten => _[+0-9a-zA-Z*#].,1,Hangup(21)\n" in files["extensions.conf"]
    assert "load => res_pjsip_path.so" in files["modules.conf"] and "load => res_pjsip_acl.so" in files["modules.conf"]
    assert of_type(pjsip, "vipbx-udp", "transport")["bind"] == ["127.0.0.31:5060"]


def test_a_nodes_trunks_are_named_by_the_edge_and_called_through_it(tmp_path: Path, secrets: SecretStore) -> None:
    config = cluster(tmp_path, ["node1"])
    pjsip = sections(node_files(config, "node1", secrets)["pjsip.conf"])
    for trunk in config.platform.trunks:
        endpoint = of_type(pjsip, trunk.name, "endpoint")
        assert endpoint["identify_by"] == ["header"]
        assert endpoint["outbound_proxy"] == ["sip:127.0.0.30:5060\\;lr"]
        identify = of_type(pjsip, trunk.name, "identify")
        # By the edge's header alone: every request comes from the edge's address.
        assert identify["match_header"] == [f"X-Vipbx-Trunk: {trunk.name}"] and "match" not in identify


def test_a_nodes_devices_are_reached_through_the_edges_path(tmp_path: Path, secrets: SecretStore) -> None:
    pjsip = sections(node_files(cluster(tmp_path, ["node1"]), "node1", secrets)["pjsip.conf"])
    aor = of_type(pjsip, "t00-u0-soft", "aor")
    assert aor["support_path"] == ["yes"]
    assert (aor["minimum_expiration"], aor["maximum_expiration"], aor["default_expiration"]) == (["60"],) * 3
    assert of_type(pjsip, "t00-u0-soft", "endpoint")["rewrite_contact"] == ["no"]


def test_a_short_registration_time_bounds_every_registration(tmp_path: Path, secrets: SecretStore) -> None:
    path = tmp_path / "short.yaml"
    path.write_text(PLATFORM.replace("{address: 127.0.0.30}", "{address: 127.0.0.30, register_seconds: 20}")
                    + "tenants:\n" + tenant(0, "node1"))
    pjsip = sections(node_files(load_config([path]), "node1", secrets)["pjsip.conf"])
    aor = of_type(pjsip, "t00-u0-soft", "aor")
    assert (aor["minimum_expiration"], aor["maximum_expiration"]) == (["20"], ["20"])


def test_one_machine_without_nodes_keeps_its_own_sip(secrets: SecretStore) -> None:
    from asterisk_conf.render import render_config

    examples = Path(__file__).resolve().parents[2] / "examples"
    files = render_config(load_config([examples / "platform.yaml", examples / "acme.yaml"]), secrets)
    pjsip = sections(files["pjsip.conf"])
    assert pjsip["global"][0]["endpoint_identifier_order"] == ["ip,username"]
    assert "vipbx-edge" not in pjsip and "vipbx-edge-only" not in pjsip
    assert of_type(pjsip, "carrier", "identify")["match"] == ["127.0.0.4"]
    assert "outbound_proxy" not in of_type(pjsip, "carrier", "endpoint")
    assert "support_path" not in of_type(pjsip, "acme-anna-soft", "aor")
    assert "res_pjsip_path" not in files["modules.conf"] and "vipbx-from-edge" not in files["extensions.conf"]


def test_a_standby_carries_only_the_nodes_it_stands_in_for(tmp_path: Path, secrets: SecretStore) -> None:
    from cluster.edge import dispatcher_sets
    from cluster.edge_config import edge_nodes

    path = tmp_path / "pairs.yaml"
    pairs = PLATFORM.replace("    - {name: spare, address: 127.0.0.33, standby: true}\n",
                             "    - {name: spare1, address: 127.0.0.33, standby: true, standby_for: [node1]}\n"
                             "    - {name: spare2, address: 127.0.0.34, standby: true, standby_for: [node2]}\n")
    path.write_text(pairs + "tenants:\n" + tenant(0, "node1") + tenant(1, "node2"))
    config = load_config([path])
    assert "[t00-u0-soft]" in node_files(config, "spare1", secrets)["pjsip.conf"]
    assert "[t01-u0-soft]" not in node_files(config, "spare1", secrets)["pjsip.conf"]
    assert "[t01-u0-soft]" in node_files(config, "spare2", secrets)["pjsip.conf"]
    sets = {s.node.name: [n.name for n in s.fallbacks] for s in dispatcher_sets(edge_nodes(config))}
    assert sets == {"node1": ["spare1"], "node2": ["spare2"]}
