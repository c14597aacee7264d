"""The SIP edge through real SIP: Debian's Kamailio on the configuration vipbx renders, SIPp
stand-ins for two Asterisk nodes and a standby. Each request reaches the node of the tenant it
concerns (by the called number, the Diversion, the caller for a service number, the device),
a changed routing table is read without a restart, and a node that stops answering is replaced
by the standby within the probing time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from edgerig import CARRIER_IP, DEVICE_IP, EDGE_IP, NODES, PORT, EdgeRig, Node, sipp

from cluster.edge import TRUNK_HEADER, EdgeNode, route_keys

pytest_plugins = ("edgerig",)

ANNA, ANNA_DEVICE = "+358401110001", "acme-anna-soft"  # tenant on n1 (set 1)
PEKKA, PEKKA_DEVICE = "+358501220001", "borealis-pekka-soft"  # tenant on n2 (set 2)
VOICEMAIL = "+358201243100"


def start(rig: EdgeRig, tmp_path: Path) -> None:
    rig.routes.update({key: 1 for key in route_keys([(ANNA, "358")], [ANNA_DEVICE])})
    rig.routes.update({key: 2 for key in route_keys([(PEKKA, "358")], [PEKKA_DEVICE])})
    for node in NODES:
        rig.nodes[node.name] = Node(node, tmp_path / f"{node.name}.trace")
        rig.nodes[node.name].start()
    rig.start()
    for node in NODES:
        rig.wait_until(node.name, up=True)


def invites(rig: EdgeRig) -> dict[str, int]:
    return {name: len(node.received("INVITE")) for name, node in rig.nodes.items()}


def test_each_request_reaches_its_tenants_node(edge_rig: EdgeRig, tmp_path: Path) -> None:
    rig = edge_rig
    start(rig, tmp_path)
    # From the carrier to each user's number.
    assert sipp("edge_invite.xml", ANNA, source=CARRIER_IP, caller="+358451234567") == 0
    assert sipp("edge_invite.xml", PEKKA, source=CARRIER_IP, caller="+358451234567") == 0
    assert invites(rig) == {"n1": 1, "n2": 1, "s1": 0}
    first = rig.nodes["n1"].received("INVITE")[0]
    assert f"{TRUNK_HEADER}: carrier" in first and f"Record-Route: <sip:{EDGE_IP}" in first
    # The voicemail number by the caller (Pekka's handset, in the national form a trunk may use).
    assert sipp("edge_invite.xml", VOICEMAIL, source=CARRIER_IP, caller="0501220001") == 0
    assert invites(rig) == {"n1": 1, "n2": 2, "s1": 0}
    # A call diverted by Anna's mobile network: by its Diversion, whatever number it is to.
    assert sipp("edge_invite.xml", "+358201243100", source=CARRIER_IP, caller="+358451234567",
                extra=f"Diversion: <sip:{ANNA}@{CARRIER_IP}>;reason=no-answer") == 0
    assert invites(rig) == {"n1": 2, "n2": 2, "s1": 0}
    # A device's own call goes to its node, whatever it dials; a trunk header it adds is dropped.
    assert sipp("edge_invite.xml", "103", source=DEVICE_IP, caller=PEKKA_DEVICE,
                extra=f"{TRUNK_HEADER}: carrier") == 0
    assert invites(rig) == {"n1": 2, "n2": 3, "s1": 0}
    assert TRUNK_HEADER not in rig.nodes["n2"].received("INVITE")[-1]
    # Its registration too, with a Path back through the edge.
    assert sipp("edge_register.xml", "", source=DEVICE_IP, caller=ANNA_DEVICE) == 0
    registered = rig.nodes["n1"].received("REGISTER")
    assert len(registered) == 1 and f"Path: <sip:{EDGE_IP}" in registered[0]
    # Nobody's number, and a device nobody has: refused at the edge.
    assert sipp("edge_invite.xml", "+358409999999", source=CARRIER_IP, caller="+358451234567") == 0
    assert sipp("edge_invite.xml", "101", source=DEVICE_IP, caller="stranger") == 0
    assert invites(rig) == {"n1": 2, "n2": 3, "s1": 0}


def test_a_changed_table_is_read_without_a_restart(edge_rig: EdgeRig, tmp_path: Path) -> None:
    rig = edge_rig
    start(rig, tmp_path)
    process = rig.kamailio.process
    assert process is not None
    pid = process.pid
    rig.routes.update({key: 2 for key in route_keys([(ANNA, "358")], [ANNA_DEVICE])})  # Anna's tenant moved
    rig.write()
    assert "reloaded" in rig.rpc("htable.reload", "routes")
    assert sipp("edge_invite.xml", ANNA, source=CARRIER_IP, caller="+358451234567") == 0
    assert invites(rig) == {"n1": 0, "n2": 1, "s1": 0}
    assert rig.kamailio.process is process and process.pid == pid and process.poll() is None


def test_the_standby_takes_a_failed_nodes_calls(edge_rig: EdgeRig, tmp_path: Path) -> None:
    rig = edge_rig
    start(rig, tmp_path)
    rig.nodes["n1"].stop()
    stopped = time.monotonic()
    rig.wait_until("n1", up=False)
    marked_down = time.monotonic() - stopped
    assert sipp("edge_invite.xml", ANNA, source=CARRIER_IP, caller="+358451234567") == 0
    assert invites(rig) == {"n1": 0, "n2": 0, "s1": 1}
    assert marked_down < 5, marked_down  # probing every second: the documented take-over time
    # Back: the node answers OPTIONS again and takes its calls again.
    rig.nodes["n1"].trace = tmp_path / "n1-again.trace"
    rig.nodes["n1"].start()
    rig.wait_until("n1", up=True)
    assert sipp("edge_invite.xml", ANNA, source=CARRIER_IP, caller="+358451234567") == 0
    assert invites(rig) == {"n1": 1, "n2": 0, "s1": 1}


def test_a_call_in_the_probing_gap_fails_over_at_once(edge_rig: EdgeRig, tmp_path: Path) -> None:
    """A node dead but not yet marked down: the INVITE fails there, and the edge tries the standby."""
    rig = edge_rig
    start(rig, tmp_path)
    rig.nodes["n2"].stop()
    assert sipp("edge_invite.xml", PEKKA, source=CARRIER_IP, caller="+358451234567") == 0
    assert invites(rig)["s1"] == 1


def test_a_node_reaches_a_device_through_the_edge(edge_rig: EdgeRig, tmp_path: Path) -> None:
    """A node's call to a device registered through the edge: addressed to the device's contact
    with a Route to the edge (what the Path makes), it is relayed, not taken for a device's call."""
    rig = edge_rig
    start(rig, tmp_path)
    device = Node(EdgeNode("device", DEVICE_IP, 25070), tmp_path / "device.trace")
    rig.nodes["device"] = device
    device.start()
    time.sleep(0.3)
    assert sipp("edge_invite.xml", ANNA_DEVICE, source=NODES[0].address, caller="+358451234567",
                host=f"{DEVICE_IP}:25070", extra=f"Route: <sip:{EDGE_IP}:{PORT};lr>") == 0
    reached = device.received("INVITE")
    assert len(reached) == 1 and f"Record-Route: <sip:{EDGE_IP}" in reached[0]
    assert invites(rig) == {"n1": 0, "n2": 0, "s1": 0, "device": 1}
