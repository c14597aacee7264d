"""A cluster in the YAML (`platform.nodes`, `platform.sip_edge`, a tenant's `node:`), where the
tenants are placed, the edge's routing table made from that, and `vipbx cluster plan|show`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from yamlcase import find, problems, tenant_yaml

from asterisk_conf.validate import load_config
from base.model import Config, Node, Platform, SipEdge, Tenant
from cli.main import main
from cluster.edge_config import edge_routes, render_cluster_edge
from cluster.placement import PlacementError, load, place, save

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "examples" / "cluster" / "platform.yaml", REPO / "examples" / "acme.yaml",
            REPO / "examples" / "borealis.yaml"]
NODES = """\
platform:
  sip_edge: {address: 127.0.0.30}
  nodes:
    - {name: node1, address: 127.0.0.31, capacity: 100}
    - {name: node2, address: 127.0.0.32, capacity: 100}
    - {name: spare, address: 127.0.0.33, standby: true}
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "acme.yaml", not a temporary folder
    return tmp_path


def test_the_example_cluster_is_valid_and_one_machine_configs_are_unchanged() -> None:
    config = load_config([str(p) for p in EXAMPLES])
    assert [n.name for n in config.platform.nodes] == ["node1", "node2", "standby1"]
    assert config.platform.sip_edge == SipEdge("127.0.0.30", 5060, 2)
    single = load_config([str(REPO / "examples" / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")])
    assert single.platform.nodes == () and single.platform.sip_edge is None
    assert all(t.node is None for t in single.tenants)


def test_a_node_names_where_its_ari_is_reached(in_tmp: Path) -> None:
    platform = NODES.replace("capacity: 100}", "capacity: 100, ari_url: 'https://node1.pbx.example:8089/ari/'}", 1)
    nodes = load_config([_write(platform + tenant_yaml())]).platform.nodes
    assert [n.ari_url for n in nodes] == ["https://node1.pbx.example:8089/ari", "", ""]


def test_a_tenant_names_its_node(in_tmp: Path) -> None:
    config = load_config([_write(NODES + tenant_yaml("node: node2\n"))])
    assert config.tenants[0].node == "node2"


@pytest.mark.parametrize(("platform", "line", "key", "words"), [
    (NODES.replace("name: node2", "name: node1"), 5, "platform.nodes[1].name", ("already named",)),
    (NODES.replace("127.0.0.32", "127.0.0.31"), 5, "platform.nodes[1].address", ("already the address",)),
    (NODES.replace("capacity: 100}", "capacity: 0}", 1), 4, "platform.nodes[0].capacity", ("from 1",)),
    (NODES.replace("name: node1", "name: Node_1"), 4, "platform.nodes[0].name", ("lowercase",)),
    (NODES.replace("  sip_edge: {address: 127.0.0.30}\n", ""), 2, "platform.nodes", ("sip_edge",)),
    (NODES.replace("    - {name: spare, address: 127.0.0.33, standby: true}\n", ""), 3, "platform.nodes",
     ("no standby",)),
    (NODES.replace("127.0.0.30}", "127.0.0.30, probe: 2}"), 2, "platform.sip_edge.probe", ("unknown key",)),
    # Where the deploy reaches a node's ARI: https through a proxy, never a password in the URL.
    (NODES.replace("capacity: 100}", "capacity: 100, ari_url: 'http://10.0.0.1:8088/ari'}", 1), 4,
     "platform.nodes[0].ari_url", ("use https",)),
    (NODES.replace("capacity: 100}", "capacity: 100, ari_url: 'https://vipbx:pw@node1.example/ari'}", 1), 4,
     "platform.nodes[0].ari_url", ("no user, password",)),
    (NODES.replace("capacity: 100}", "capacity: 100, ari_url: 'https://node1.example/ari?x=1'}", 1), 4,
     "platform.nodes[0].ari_url", ("not an ARI address",)),
    (NODES.replace("capacity: 100}", "capacity: 100, ari_url: 'https://Node_1/ari'}", 1), 4,
     "platform.nodes[0].ari_url", ("lowercase DNS name",)),
])
def test_topology_mistakes_name_their_line_and_key(in_tmp: Path, platform: str, line: int, key: str,
                                                   words: tuple[str, ...]) -> None:
    find(problems(platform + tenant_yaml()), line, key, *words)


@pytest.mark.parametrize(("node", "words"), [("node9", ("no node", "node1, node2")), ("spare", ("standby",))])
def test_a_tenants_node_must_be_one_that_takes_tenants(in_tmp: Path, node: str, words: tuple[str, ...]) -> None:
    find(problems(NODES + tenant_yaml(f"node: {node}\n")), 12, "tenants[acme].node", *words)


def _write(text: str) -> str:
    Path("acme.yaml").write_text(text, encoding="utf-8")
    return "acme.yaml"


def cluster(*sizes: int, capacity: int = 100, explicit: dict[str, str] | None = None) -> Config:
    from people import user

    tenants = tuple(
        Tenant(id=f"t{i}", name=f"T{i}", domain=f"t{i}.example", node=(explicit or {}).get(f"t{i}"),
               users=tuple(user(f"u{j}", f"+35840{i:03d}{j:04d}", f"{100 + j}") for j in range(size)))
        for i, size in enumerate(sizes))
    nodes = (Node("node1", "10.0.0.1", capacity=capacity), Node("node2", "10.0.0.2", capacity=capacity),
             Node("spare", "10.0.0.9", standby=True))
    return Config(replace(Platform(), nodes=nodes, sip_edge=SipEdge("10.0.0.100")), tenants)


def test_tenants_are_balanced_largest_first_and_never_on_the_standby() -> None:
    placed = place(cluster(50, 30, 20, 10))
    assert placed.tenants == {"t0": "node1", "t1": "node2", "t2": "node2", "t3": "node1"}
    assert placed.users == {"node1": 60, "node2": 50}
    assert place(cluster(50, 30, 20, 10)) == placed  # the same YAML, the same answer


def test_adding_a_tenant_moves_no_one() -> None:
    before = place(cluster(50, 30, 20))
    after = place(cluster(50, 30, 20, 40), before.tenants)  # a newcomer larger than two of them
    assert {t: after.tenants[t] for t in before.tenants} == before.tenants
    assert after.tenants["t3"] == "node1" and after.users == {"node1": 90, "node2": 50}  # a tie: node order
    # Placed afresh, the same tenants would be laid out otherwise: the saved placement is what holds.
    assert place(cluster(50, 30, 20, 40)).tenants != after.tenants


def test_a_named_node_wins_and_its_capacity_holds() -> None:
    placed = place(cluster(10, 10, explicit={"t1": "node1"}))
    assert placed.tenants["t1"] == "node1"
    with pytest.raises(PlacementError, match="'node1' has room for 100 users.*t0, t1.*120"):
        place(cluster(60, 60, explicit={"t0": "node1", "t1": "node1"}))
    with pytest.raises(PlacementError, match="tenant 't2' \\(60 users\\) fits on no node.*40 users"):
        place(cluster(60, 60, 60))


def test_the_placement_is_saved_whole_and_read_back(tmp_path: Path) -> None:
    placed = place(cluster(5, 3))
    save(tmp_path / "c" / "placement.json", placed)
    assert load(tmp_path / "c" / "placement.json") == placed.tenants
    assert load(tmp_path / "none.json") == {}
    assert json.loads((tmp_path / "c" / "placement.json").read_text())["users"] == placed.users


def test_the_edge_routes_each_number_and_device_to_its_tenants_node(tmp_path: Path) -> None:
    config = load_config([str(p) for p in EXAMPLES])
    placed = place(config)
    routes = edge_routes(config, placed)
    acme_set = 1 if placed.tenants["acme"] == "node1" else 2
    assert routes["num:+358401110001"] == routes["num:0401110001"] == routes["dev:acme-anna-soft"] == acme_set
    assert {v for k, v in routes.items() if k.startswith("dev:borealis")} == {3 - acme_set}
    files = render_cluster_edge(config, placed, tmp_path / "data", tmp_path / "run")
    assert '$rU == "+358201243100"' in files["kamailio.cfg"] and "duid=standby1" in files["dispatcher.list"]


def test_cluster_plan_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    files = [str(p) for p in EXAMPLES]
    dry = runner.invoke(main, ["--home", str(tmp_path), "cluster", "plan", "--dry-run", *files])
    assert dry.exit_code == 0, dry.output
    assert "standby" in dry.output and not (tmp_path / "cluster").exists()
    done = runner.invoke(main, ["--home", str(tmp_path), "cluster", "plan", *files])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cluster" / "edge" / "kamailio.cfg").is_file()
    assert (tmp_path / "cluster" / "edge" / "data" / "db" / "routes").is_file()
    shown = runner.invoke(main, ["--home", str(tmp_path), "cluster", "show", *files])
    assert shown.exit_code == 0 and "acme" in shown.output and "borealis" in shown.output
    one_machine = [str(REPO / "examples" / n) for n in ("platform.yaml", "acme.yaml")]
    refused = runner.invoke(main, ["--home", str(tmp_path / "other"), "cluster", "plan", *one_machine])
    assert refused.exit_code != 0 and "one machine" in refused.output


def test_each_node_renders_only_its_tenants_and_the_standby_all(tmp_path: Path) -> None:
    from base.secrets import SecretStore
    from cluster.nodes import render_node

    config = load_config([str(p) for p in EXAMPLES])
    placed = place(config)
    secrets = SecretStore(tmp_path / "secrets.json")
    by_name = {n.name: n for n in config.platform.nodes}
    acme_node, borealis_node = by_name[placed.tenants["acme"]], by_name[placed.tenants["borealis"]]
    assert acme_node != borealis_node
    acme = render_node(config, placed, acme_node, secrets)
    borealis = render_node(config, placed, borealis_node, secrets)
    standby = render_node(config, placed, by_name["standby1"], secrets)
    for name in ("pjsip.conf", "extensions.conf", "voicemail.conf"):
        assert "acme" in acme[name] and "acme" not in borealis[name], name
        assert "borealis" in borealis[name] and "borealis" not in acme[name], name
        assert len(standby[name]) > max(len(acme[name]), len(borealis[name]))
    assert "[acme]" not in borealis["voicemail.conf"] and "[acme]" in acme["voicemail.conf"]
    assert f"bind={acme_node.address}:{acme_node.port}" in acme["pjsip.conf"].replace(" ", "")
    # The same secrets on every node: a device registers with one password wherever it lands.
    anna = [line for line in acme["pjsip.conf"].splitlines() if line.startswith("password")][:1]
    assert anna and anna[0] in standby["pjsip.conf"]
