"""The SIP edge's files as rendered: the dispatcher sets (each node, then the standbys), the
routing table (numbers in both forms, devices), the trunks and service numbers in the
configuration, values that cannot inject configuration, and table files rewritten so that a
reload sees them. (Kamailio itself runs them in tests/e2e/test_cluster_edge_live.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.edge import (
    TRUNK_HEADER,
    Edge,
    EdgeNode,
    EdgeTrunk,
    dispatcher_sets,
    national,
    render_edge,
    route_keys,
    routes_file,
    write_edge_files,
)

NODES = [EdgeNode("n1", "10.0.0.1"), EdgeNode("s1", "10.0.0.9", standby=True), EdgeNode("n2", "10.0.0.2", 5070)]


def edge(tmp_path: Path) -> Edge:
    return Edge("10.0.0.100", 5060, tmp_path / "data", tmp_path / "run")


def test_each_serving_node_has_a_set_with_the_standbys_behind_it(tmp_path: Path) -> None:
    sets = dispatcher_sets(NODES)
    assert [(s.id, s.node.name, [f.name for f in s.fallbacks]) for s in sets] == [(1, "n1", ["s1"]), (2, "n2", ["s1"])]
    listing = render_edge(edge(tmp_path), NODES, {}, [], [])["dispatcher.list"].splitlines()[1:]
    assert listing == ["1 sip:10.0.0.1:5060 0 10 duid=n1", "1 sip:10.0.0.9:5060 0 0 duid=s1",
                       "2 sip:10.0.0.2:5070 0 10 duid=n2", "2 sip:10.0.0.9:5060 0 0 duid=s1"]


def test_route_keys_hold_both_number_forms_and_the_devices() -> None:
    assert national("+358401110001", "358") == "0401110001"
    assert national("+46701234567", "358") is None
    assert route_keys([("+358401110001", "358"), ("+46701234567", "358")], ["acme-anna-soft"]) == [
        "num:+358401110001", "num:0401110001", "num:+46701234567", "dev:acme-anna-soft"]


def test_the_table_is_db_text_with_its_separators_escaped() -> None:
    text = routes_file({"num:+358401110001": 2, "dev:acme-anna-soft": 1})
    assert text.splitlines() == ["key_name(str) key_type(int) value_type(int) key_value(str) expires(int)",
                                 "dev\\:acme-anna-soft:0:0:1:0", "num\\:+358401110001:0:0:2:0"]


def test_trunks_and_service_numbers_are_in_the_configuration(tmp_path: Path) -> None:
    cfg = render_edge(edge(tmp_path), NODES, {}, [EdgeTrunk("carrier", ("192.0.2.10", "198.51.100.0/24")),
                                                  EdgeTrunk("core", ("2001:db8::5",))],
                      ["+358201243100", "+358201243200"])["kamailio.cfg"]
    assert 'is_in_subnet("$si", "192.0.2.10/32")) { $var(trunk) = "carrier"' in cfg
    assert 'is_in_subnet("$si", "198.51.100.0/24")) { $var(trunk) = "carrier"' in cfg
    assert 'is_in_subnet("$si", "2001:db8::5/128")) { $var(trunk) = "core"' in cfg
    assert '$rU == "+358201243100" || $rU == "+358201243200"' in cfg
    assert f'remove_hf("{TRUNK_HEADER}")' in cfg and "listen=udp:10.0.0.100:5060" in cfg
    assert f"{tmp_path}/run/kamailio_ctl" in cfg and f"text://{tmp_path}/data/db" in cfg


def test_a_nodes_call_out_to_a_number_of_the_cluster_stays_in_it(tmp_path: Path) -> None:
    cfg = render_edge(edge(tmp_path), NODES, {}, [EdgeTrunk("carrier", ("192.0.2.10",), "sip.carrier.example")],
                      [])["kamailio.cfg"]
    hairpin = cfg.split("route[HAIRPIN] {")[1].split("\n}\n")[0]
    # Only an INVITE to a number the table knows, addressed to a trunk, is turned round, and it
    # arrives at the number's node as a call from that trunk.
    assert 'if (!is_method("INVITE") || $sht(routes=>num:$rU) == $null) { return; }' in hairpin
    assert 'if ($rd == "sip.carrier.example") { $var(trunk) = "carrier"; }' in hairpin
    assert f'append_hf("{TRUNK_HEADER}: $var(trunk)\\r\\n")' in hairpin and "route(TO_NODE);" in hairpin
    from_node = cfg.split('if (ds_is_from_list("-1", "3")) {')[1].split("    }\n")[0]
    assert from_node.index("loose_route();") < from_node.index("route(HAIRPIN);") < from_node.index("route(RELAY);")


def test_a_register_reaches_its_node_with_a_path_the_node_accepts(tmp_path: Path) -> None:
    cfg = render_edge(edge(tmp_path), NODES, {}, [], [])["kamailio.cfg"]
    register = cfg.split('if (is_method("REGISTER")) {\n        add_path_received();')[1].split("    }\n")[0]
    assert 'if (!is_supported("path")) { append_hf("Supported: path\\r\\n"); }' in register
    assert 'modparam("path", "use_received", 1)' in cfg


@pytest.mark.parametrize("bad", ['1.2.3.4"; exit; #', "num:+358\n401", 'carrier") { drop; }', "a b"])
def test_no_value_can_inject_configuration(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="SIP edge"):
        render_edge(edge(tmp_path), [EdgeNode("n1", bad)], {}, [], [])
    with pytest.raises(ValueError, match="SIP edge"):
        render_edge(edge(tmp_path), NODES, {bad: 1}, [], [])
    with pytest.raises(ValueError, match="SIP edge"):
        render_edge(edge(tmp_path), NODES, {}, [EdgeTrunk(bad, ("192.0.2.1",))], [bad])
    with pytest.raises(ValueError, match="SIP edge"):
        render_edge(edge(tmp_path), NODES, {}, [EdgeTrunk("carrier", ("192.0.2.1",), bad)], [])


def test_a_rewritten_table_is_newer_than_the_one_read_in_the_same_second(tmp_path: Path) -> None:
    e = edge(tmp_path)
    write_edge_files(render_edge(e, NODES, {"num:+358401110001": 1}, [], []), e, tmp_path / "kamailio.cfg")
    table = e.data_dir / "db" / "routes"
    before = table.stat().st_mtime
    os.utime(table, (before, before))
    write_edge_files(render_edge(e, NODES, {"num:+358401110001": 2}, [], []), e, tmp_path / "kamailio.cfg")
    assert int(table.stat().st_mtime) > int(before) and table.read_text().endswith(":0:0:2:0\n")
    unchanged = table.stat().st_mtime
    write_edge_files(render_edge(e, NODES, {"num:+358401110001": 2}, [], []), e, tmp_path / "kamailio.cfg")
    assert table.stat().st_mtime == unchanged  # nothing changed, nothing touched
    assert not list(e.data_dir.rglob("*.new"))


def test_the_edges_memory_and_row_limit_follow_the_table_in_steps(tmp_path: Path) -> None:
    from cluster.edge import START_ARGS, edge_memory, max_table_rows

    # Kamailio's defaults (64 MB shared, 8 MB private, 100,000 rows) hold a small platform;
    # 300,000 keys (100,000 users) needed 1 GB and 256 MB (bench/README.md).
    assert max_table_rows(3_000) == 100_000 and max_table_rows(300_000) == 1_000_000
    assert edge_memory(300_000) == (1024, 256)
    small = render_edge(edge(tmp_path), NODES, {f"num:+35840{i:07d}": 1 for i in range(3000)}, [], [])
    grown = render_edge(edge(tmp_path), NODES, {f"num:+35840{i:07d}": 1 for i in range(3500)}, [], [])
    # A few more users change the table only: the configuration (read at start) stays.
    assert small["kamailio.cfg"] == grown["kamailio.cfg"] and small[START_ARGS] == grown[START_ARGS]
    assert "shm_mem_size=128" in small["kamailio.cfg"] and small[START_ARGS] == "-M 16\n"
    assert 'modparam("db_text", "max_result_rows", 100000)' in small["kamailio.cfg"]
