"""The topology's cross-checks that involve more than one key: the tenants that name a node
against its capacity (across files), an empty node list, and an edge on a node's own address."""

from __future__ import annotations

from pathlib import Path

import pytest
from yamlcase import find, problems, tenant_yaml

from asterisk_conf.validate import validate_files

NODES = """\
platform:
  sip_edge: {address: 127.0.0.30}
  nodes:
    - {name: node1, address: 127.0.0.31, capacity: 3}
    - {name: node2, address: 127.0.0.32, capacity: 100}
    - {name: spare, address: 127.0.0.33, standby: true}
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "acme.yaml", not a temporary folder
    return tmp_path


def tenant_file(tid: str, users: int, node: str, first: int) -> str:
    """A tenant with `users` users named for `node:` (line 6)."""
    lines = [
        "tenants:",
        f"  - id: {tid}",
        f"    name: {tid.title()}",
        f"    domain: {tid}.example",
        '    country_code: "358"',
        f"    node: {node}",
        "    users:",
    ]
    for n in range(first, first + users):
        lines += [f"      - id: u{n}", f"        name: User {n}", f'        number: "+35840111{n:04d}"',
                  f'        extension: "{100 + n}"', '        pin: "480264"']
    return "\n".join(lines) + "\n"


def test_tenants_over_a_named_nodes_capacity_are_reported_at_the_one_that_overfills_it(in_tmp: Path) -> None:
    Path("platform.yaml").write_text(NODES)
    Path("acme.yaml").write_text(tenant_file("acme", 2, "node1", 0))
    Path("beta.yaml").write_text(tenant_file("beta", 2, "node1", 10))
    Path("gamma.yaml").write_text(tenant_file("gamma", 50, "node2", 20))  # fits: no problem
    found = validate_files(["platform.yaml", "acme.yaml", "beta.yaml", "gamma.yaml"])
    assert [(p.file, p.line, p.key) for p in found] == [("beta.yaml", 6, "tenants[beta].node")], found
    assert "node 'node1' has room for 3 users" in found[0].message
    assert "have 4: acme (2), beta (2)" in found[0].message


def test_tenants_that_fill_a_node_exactly_are_accepted(in_tmp: Path) -> None:
    Path("platform.yaml").write_text(NODES)
    Path("acme.yaml").write_text(tenant_file("acme", 1, "node1", 0))
    Path("beta.yaml").write_text(tenant_file("beta", 2, "node1", 10))
    assert validate_files(["platform.yaml", "acme.yaml", "beta.yaml"]) == []


def test_tenants_placed_by_vipbx_do_not_count_against_a_named_nodes_capacity(in_tmp: Path) -> None:
    # Only explicit placements are known when the YAML is checked; `vipbx cluster plan` does the rest.
    Path("platform.yaml").write_text(NODES)
    Path("acme.yaml").write_text(tenant_file("acme", 3, "node1", 0))
    Path("beta.yaml").write_text(tenant_file("beta", 5, "node2", 10).replace("    node: node2\n", ""))
    assert validate_files(["platform.yaml", "acme.yaml", "beta.yaml"]) == []


def test_an_empty_node_list_is_not_one_machine(in_tmp: Path) -> None:
    text = NODES.split("  nodes:\n")[0] + "  nodes: []\n"
    find(problems(text + tenant_yaml()), 3, "platform.nodes", "empty", "leave nodes: and sip_edge: out")


def test_the_edge_cannot_share_a_nodes_address_and_port(in_tmp: Path) -> None:
    find(problems(NODES.replace("{address: 127.0.0.30}", "{address: 127.0.0.32}") + tenant_yaml()),
         2, "platform.sip_edge.address", "127.0.0.32:5060", "node 'node2'")
    # The same address on another port is the edge's own listener.
    assert problems(NODES.replace("{address: 127.0.0.30}", "{address: 127.0.0.32, port: 5080}") + tenant_yaml()) == []


def test_register_seconds_is_bounded(in_tmp: Path) -> None:
    text = NODES.replace("{address: 127.0.0.30}", "{address: 127.0.0.30, register_seconds: 5}")
    find(problems(text + tenant_yaml()), 2, "platform.sip_edge.register_seconds", "10")
    ok = NODES.replace("{address: 127.0.0.30}", "{address: 127.0.0.30, register_seconds: 30}")
    assert problems(ok + tenant_yaml()) == []


STANDBYS = """\
platform:
  sip_edge: {address: 127.0.0.30}
  nodes:
    - {name: node1, address: 127.0.0.31, capacity: 100}
    - {name: node2, address: 127.0.0.32, capacity: 100}
    - {name: spare1, address: 127.0.0.33, standby: true, standby_for: [node1]}
    - {name: spare2, address: 127.0.0.34, standby: true, standby_for: [node2]}
"""


def test_standbys_may_each_stand_in_for_some_nodes(in_tmp: Path) -> None:
    assert problems(STANDBYS + tenant_yaml()) == []


def test_a_node_no_standby_stands_in_for_is_reported(in_tmp: Path) -> None:
    text = STANDBYS.replace("standby_for: [node2]", "standby_for: [node1]")
    find(problems(text + tenant_yaml()), 3, "platform.nodes", "no standby stands in for node2")


@pytest.mark.parametrize(("change", "line", "words"), [
    ("standby_for: [node2]}", 7, "'node3' is not a serving node"),
    ("standby_for: [spare1]}", 7, "'spare1' is not a serving node"),
])
def test_standby_for_names_serving_nodes(in_tmp: Path, change: str, line: int, words: str) -> None:
    wrong = change.replace("node2", "node3") if "node2" in change else change
    text = STANDBYS.replace("standby_for: [node2]}", wrong)
    find(problems(text + tenant_yaml()), line, "platform.nodes[3].standby_for", words)


def test_only_a_standby_stands_in(in_tmp: Path) -> None:
    text = STANDBYS.replace("capacity: 100}\n    - {name: node2", "capacity: 100, standby_for: [node2]}\n    - {name: node2", 1)
    find(problems(text + tenant_yaml()), 4, "platform.nodes[0].standby_for", "only a standby node")
