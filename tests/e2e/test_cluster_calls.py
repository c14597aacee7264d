"""A cluster through real SIP calls (clusterrig.py): Kamailio in front of three Asterisk nodes with
the vipbx service, PostgreSQL call state and one shared spool. Calls from the carrier and from
devices reach users on every node; a call and a forward from a user on one node to a user on
another stay in the cluster; the voicemail number opens the caller's own mailbox on its node and
the message-waiting NOTIFY reaches the device through the edge; a node killed during calls: its
calls are lost, the standby takes new ones, and no stored message is lost.

The test that kills a node comes last: the module's cluster is not whole after it.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from clusterrig import (
    PHONES_IP,
    PROBE_SECONDS,
    REGISTER_SECONDS,
    Cluster,
    build_cluster,
    render_for_test,
    start_apps,
)
from conftest import unavailable
from edgerig import KAMAILIO
from pgserver import PgServer
from support import PbxObserver, Person, app_registered, eventually
from test_voicemail import SipSniffer, leave_message

from asterisk_conf.render import AMI_USER, ARI_USER
from asterisk_host import AsteriskRuntime
from base.ami import AmiSettings, ami_session
from base.model import Config, Device, Node, TenantNumber
from base.paths import Paths
from cli.reload import AriDevicePusher, ami_dialplan_patcher, ami_reloader
from cluster import edge_control
from cluster.deploy import deploy_nodes, live_generation
from cluster.edge import write_edge_files
from cluster.edge_config import render_cluster_edge
from testphone import Call, TestPhone
from vmstore import VoicemailStore

pytest_plugins = ("pgserver",)

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "")  # on node1
JAMES = Person("borealis", "james.taylor", "+358501220001", "borealis-james-soft", "")  # on node2
OUTSIDE = "+358451234567"
NEW_NUMBER = "+358501220099"  # a number the deploy test gives James
# A user the deploy test adds to borealis (node2), with a device of her own.
OLIVIA = Person("borealis", "olivia.brown", "+358501220077", "borealis-olivia-soft", "")
VOICEMAIL = "+358201243100"


@pytest.fixture(scope="module")
def cluster(asterisk_runtime: AsteriskRuntime, pg_server: PgServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(KAMAILIO).exists():
        unavailable("Kamailio is not installed (./deploy.sh test installs it)")
    from prompts.build import build

    home = tmp_path_factory.mktemp("cluster")
    sounds = home / "sounds"
    build(sounds)
    database = "cluster_" + secrets.token_hex(4)
    pg_server.create_database(database)
    built = build_cluster(asterisk_runtime, home / "run", pg_server, database, sounds)
    try:
        yield built
    finally:
        built.stop()
        pg_server.drop_database(database)


@pytest_asyncio.fixture
async def running(cluster: Cluster) -> AsyncIterator[Cluster]:
    async for started in start_apps(cluster):
        yield started


@pytest_asyncio.fixture
async def phone(cluster: Cluster) -> AsyncIterator[TestPhone]:
    assert cluster.phone is not None
    async with cluster.phone.connect() as connected:
        yield connected
        await connected.hangup_all()


def busy_nodes(cluster: Cluster) -> set[str]:
    """The nodes with a channel up now."""
    return {name for name, node in cluster.nodes.items() if node.pbx.instance.running and node.channels()}


async def ring_and_answer(phone: TestPhone, cluster: Cluster, caller_call: Call, person: Person) -> str:
    """`person`'s device rings; the nodes that carry the call; the call is answered."""
    ringing = await phone.incoming(person.device, 15)
    nodes = busy_nodes(cluster)
    await ringing.answer()
    await caller_call.wait_state("Up", 10)
    return ",".join(sorted(nodes))


async def answer_and_end(call: Call, ringing: Call) -> None:
    await ringing.answer()
    await call.wait_state("Up", 10)
    await call.hangup()
    await ringing.wait_hangup(10)


async def test_carrier_calls_reach_users_on_every_node(running: Cluster, phone: TestPhone) -> None:
    for person, node in ((ANNA, "node1"), (JAMES, "node2")):
        call = await phone.call(person.number, caller_number=OUTSIDE)
        assert await ring_and_answer(phone, running, call, person) == node
        await call.hangup()
        await call.wait_hangup(10)


async def test_a_device_calls_a_user_on_another_node_through_the_edge(running: Cluster, phone: TestPhone) -> None:
    call = await phone.call(JAMES.number, device=ANNA.device)
    ringing = await phone.incoming(JAMES.device, 15)
    # Anna's node placed the call out through the edge, which kept it in the cluster: James's
    # node rang him with Anna's number, and the carrier never saw it.
    assert ringing.caller.get("number") == ANNA.number
    assert busy_nodes(running) == {"node1", "node2"}
    assert phone._incoming[JAMES.number].empty(), "the call went out to the carrier"
    await answer_and_end(call, ringing)


async def test_a_forward_to_a_user_on_another_node_rings_that_user(running: Cluster, phone: TestPhone) -> None:
    # Set through another node's service: the call state is one, in PostgreSQL.
    state = running.nodes["standby1"].app.deps.callstate  # type: ignore[union-attr]
    state.set_forward(ANNA.tenant, ANNA.user, "immediate", JAMES.number, actor="e2e", source="test")
    try:
        call = await phone.call(ANNA.number, caller_number=OUTSIDE)
        ringing = await phone.incoming(JAMES.device, 15)
        assert busy_nodes(running) == {"node1", "node2"}
        assert phone._incoming[ANNA.device].empty(), "Anna rang although her calls are forwarded"
        await answer_and_end(call, ringing)
    finally:
        state.reset_routing(ANNA.tenant, ANNA.user, actor="e2e", source="test")


async def test_star_1_transfers_a_caller_to_a_user_on_another_node(running: Cluster, phone: TestPhone) -> None:
    call = await phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await phone.incoming(ANNA.device, 15)
    await leg.answer()
    await call.wait_state("Up", 10)
    await asyncio.sleep(0.5)
    await leg.send_dtmf("*1")
    await asyncio.sleep(2.5)  # Asterisk says "transfer" before it listens for the number
    await leg.send_dtmf("0" + JAMES.number[4:] + "#")  # James's number as dialled at home
    james = await phone.incoming(JAMES.device, 15)
    # Anna's node sent the caller out through the edge, which kept the call in the cluster.
    assert james.caller.get("number") == OUTSIDE
    assert "node2" in busy_nodes(running)
    assert phone._incoming[JAMES.number].empty(), "the transfer went out to the carrier"
    await leg.wait_hangup(10)  # Anna is out of the call
    await james.answer()
    await james.wait_state("Up", 5)
    assert not call.ended
    await call.hangup()
    await james.wait_hangup(10)


async def deposit(cluster: Cluster, phone: TestPhone, person: Person, node: str) -> None:
    """A mobile network's divert to the voicemail number: the edge sends it to the node of the
    diverted user, whose service records it into the shared spool. Returns once it is there."""
    store = VoicemailStore(cluster.spool)
    count = len(store.list(person.tenant, person.box, "INBOX"))
    observer = PbxObserver(cluster.nodes[node].pbx, cluster.nodes[node].pbx.home / "sounds", store)
    watcher = asyncio.create_task(observer.client.run())
    try:
        await observer.client.wait_connected(10)
        await leave_message(phone, observer, OUTSIDE, diverted=person, seconds=2.0)
    finally:
        await observer.client.close()
        watcher.cancel()
    await eventually(lambda: len(store.list(person.tenant, person.box, "INBOX")) > count, 10,
                     f"the message in {person.box}@{person.tenant}")


async def fallback_deposit(cluster: Cluster, phone: TestPhone, person: Person, node: str) -> None:
    """A divert to the voicemail number while `node`'s application is down: app_voicemail's
    VoiceMail() records it into the person's mailbox (a tone over its greeting and beep). Returns
    once the message is in the spool; the application runs again after."""
    store = VoicemailStore(cluster.spool)
    box = person.number[1:]
    assert store.list(person.tenant, box, "INBOX") == []
    serving = cluster.nodes[node]
    await serving.stop_app()
    try:
        await eventually(lambda: not app_registered(serving.pbx.cli)(), 10, "the vipbx ARI app gone")
        call = await phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=person.number)
        await call.wait_state("Up", 15)
        await call.play_tone(40.0, wait=False)  # over the greeting and the beep, into the recording
        # Recording after the beep: app_voicemail writes the message into the mailbox's tmp/.
        recording = store.mailbox_dir(person.tenant, box) / "tmp"
        await eventually(lambda: recording.is_dir() and any(recording.iterdir()), 30, "the fallback recording")
        await asyncio.sleep(3)
        await call.hangup()
        await call.wait_hangup(10)
        inbox = await eventually(lambda: store.list(person.tenant, box, "INBOX"), 10,
                                 f"the fallback's message in {box}@{person.tenant}")
        assert len(inbox) == 1 and inbox[0].envelope.caller_number == OUTSIDE
    finally:
        await serving.start_app()


async def test_voicemail_number_keeps_each_message_in_its_mailbox_and_mwi_crosses_the_edge(
        running: Cluster, phone: TestPhone) -> None:
    store = VoicemailStore(running.spool)
    sniffer = SipSniffer(PHONES_IP, phone.settings.sip_port)
    try:
        for person, node in ((ANNA, "node1"), (JAMES, "node2")):
            await deposit(running, phone, person, node)
            inbox = await eventually(lambda p=person: store.list(p.tenant, p.box, "INBOX"), 10, "message")
            assert len(inbox) == 1 and inbox[0].envelope.caller_number == OUTSIDE
            # The NOTIFY for the device left its node through the edge (the device's Path).
            notify = await eventually(lambda p=person: [n for n in sniffer.notifies(p.device)
                                                        if "Voice-Message: 1/0" in n], 10, "MWI NOTIFY")
            assert f"Via: SIP/2.0/UDP {running.edge_address}" in notify[-1].split("\r\n\r\n")[0]
        assert store.list(ANNA.tenant, JAMES.box, "INBOX") == []
        assert store.list(JAMES.tenant, ANNA.box, "INBOX") == []
    finally:
        sniffer.close()


async def test_a_new_user_and_number_deploy_to_their_nodes_only_live_and_the_edge_routes_them_at_once(
        running: Cluster, phone: TestPhone) -> None:
    paths = Paths(running.home)
    secret = running.secrets.get("ami")
    old = running.config
    borealis = next(t for t in old.tenants if t.id == JAMES.tenant)
    james = next(u for u in borealis.users if u.id == JAMES.user)
    olivia = replace(james, id=OLIVIA.user, name="Olivia Brown", number=OLIVIA.number, extension="177",
                     email=None, pin="602817", devices=(Device(OLIVIA.device),))
    extra = replace(borealis, numbers=(*borealis.numbers, TenantNumber(NEW_NUMBER, JAMES.user)),
                    users=(*borealis.users, olivia))
    new = replace(old, tenants=tuple(extra if t.id == JAMES.tenant else t for t in old.tenants))
    assert running.phone is not None

    def reloader_for(node: Node):  # type: ignore[no-untyped-def]
        # Where `vipbx cluster deploy` reaches a node: its address, the platform's AMI port.
        return ami_reloader(AmiSettings(node.address, old.platform.ami.port, AMI_USER, secret), 5, 60)

    def patcher_for(node: Node):  # type: ignore[no-untyped-def]
        return ami_dialplan_patcher(AmiSettings(node.address, old.platform.ami.port, AMI_USER, secret), 5, 60)

    async def mailbox_pin(node: str) -> str:
        """VM_INFO(...,password) of Olivia's mailbox in the node's app_voicemail ("" if none)."""
        settings = AmiSettings(running.nodes[node].node.address, old.platform.ami.port, AMI_USER, secret)
        async with ami_session(settings, 5) as ami:
            answer = await ami.action("Getvar", Variable=f"VM_INFO({OLIVIA.number[1:]}@{OLIVIA.tenant},password)")
        return answer.get("Value") or ""

    def pusher_for(node: Node):  # type: ignore[no-untyped-def]
        http = running.nodes[node.name].config.platform.http
        return AriDevicePusher(f"http://{http.bind}:{http.port}/ari", ARI_USER, running.secrets.get("ari"), 60)

    async def roll(config: Config) -> tuple[list[str], dict[str, tuple[list[str], int]]]:
        edge_changed = write_edge_files(
            render_cluster_edge(config, running.placement, running.edge_dir / "data", running.edge.run_dir),
            running.edge_files, running.edge_dir / "kamailio.cfg")
        reloaded = edge_control.reload_changed(running.edge.run_dir, edge_changed)
        done = await deploy_nodes(paths, config, running.placement, running.secrets, reloader_for, render_for_test,
                                  patcher_for=patcher_for, pusher_for=pusher_for)
        assert [d.error for d in done if d.error] == []
        return reloaded, {d.node: (d.result.reloaded, d.result.patched, d.result.pushed)
                          for d in done if d.result is not None}

    async def phone_has(config: Config) -> None:
        """The test phone's devices are those of `config`, registered through the edge."""
        assert running.phone is not None
        running.phone.configure(config, running.phone.settings)
        running.phone.asterisk.cli("module reload res_pjsip.so")
        state = await asyncio.to_thread(running.phone.wait_registered, timeout=30)
        assert all(state.get(d) == "Registered" for d in running.phone.devices), state

    try:
        edge_reloaded, nodes_reloaded = await roll(new)
        # Node1 serves neither the tenant nor the numbers: untouched. Node2 and the standby (which
        # carries every tenant) get the extensions in their running dialplan and Olivia's device
        # in their running SIP stack, without a pbx_config or res_pjsip reload; the edge reads
        # its new table.
        assert edge_reloaded == ["routes"]
        # Her mailbox is a row of the mailbox table, which app_voicemail reads at once: no module
        # reloads at all.
        assert nodes_reloaded["node1"] == ([], 0, 0)
        for node in ("node2", "standby1"):
            reloaded, patched, pushed = nodes_reloaded[node]
            assert reloaded == [] and pushed == 1, reloaded
            assert patched >= 3, patched  # her number and extension, James's new number
            assert await mailbox_pin(node) == "602817"  # what the native fallback asks for
        call = await phone.call(NEW_NUMBER, caller_number=OUTSIDE)
        assert await ring_and_answer(phone, running, call, JAMES) == "node2"
        await call.hangup()
        await call.wait_hangup(10)
        # Olivia's softphone registers through the edge with the node2 device made live, and a
        # call to her number rings it there.
        await phone_has(new)
        call = await phone.call(OLIVIA.number, caller_number=OUTSIDE)
        assert await ring_and_answer(phone, running, call, OLIVIA) == "node2"
        await call.hangup()
        await call.wait_hangup(10)
        # With node2's application down, a call diverted from her number is recorded by the native
        # fallback: app_voicemail finds her mailbox in the table, without a reload.
        await fallback_deposit(running, phone, OLIVIA, "node2")
    finally:
        await roll(old)
        await phone_has(old)
        shutil.rmtree(VoicemailStore(running.spool).mailbox_dir(OLIVIA.tenant, OLIVIA.number[1:]),
                      ignore_errors=True)
    assert live_generation(paths, "node1") == "0001"
    # Her removal reloaded res_pjsip, and the device made live went with it; her mailbox row too.
    shown = running.nodes["node2"].pbx.cli(f"pjsip show endpoint {OLIVIA.device}")
    assert "Unable to find object" in shown, shown
    assert await mailbox_pin("node2") == ""


async def test_a_killed_node_loses_its_calls_and_the_standby_takes_over_with_every_message(
        running: Cluster, phone: TestPhone) -> None:
    store = VoicemailStore(running.spool)
    if not store.list(ANNA.tenant, ANNA.box, "INBOX"):  # this test alone
        await deposit(running, phone, ANNA, "node1")
    before = [m.envelope.msg_id for m in store.list(ANNA.tenant, ANNA.box, "INBOX")]
    assert before
    node1 = running.nodes["node1"]
    assert running.edge_up("node1") and running.edge_up("standby1")
    call = await phone.call(ANNA.number, caller_number=OUTSIDE)
    assert await ring_and_answer(phone, running, call, ANNA) == "node1"

    node1.pbx.instance.kill()
    killed = time.monotonic()
    # The call is lost with its node: silence, and the callers hang up.
    await call.hangup()
    await phone.hangup_all()
    while running.edge_up("node1"):
        assert time.monotonic() - killed < PROBE_SECONDS + 5, "the edge still counts node1 as up"
        await asyncio.sleep(0.1)
    down_after = time.monotonic() - killed

    # A new call to Anna's number goes to the standby at once: with her device not yet registered
    # there, it reaches her voicemail; once the device registered again (within register_seconds),
    # it rings her.
    standby = running.nodes["standby1"]
    deadline = killed + REGISTER_SECONDS + 10
    while True:
        call = await phone.call(ANNA.number, caller_number=OUTSIDE)
        try:
            ringing = await phone.incoming(ANNA.device, 4)
        except TimeoutError:
            assert busy_nodes(running) == {"standby1"}, busy_nodes(running)
            await call.hangup()
            await call.wait_hangup(10)
            assert time.monotonic() < deadline, "Anna's device never rang from the standby"
            await asyncio.sleep(1)
            continue
        assert busy_nodes(running) == {"standby1"}
        await answer_and_end(call, ringing)
        break
    rang_after = time.monotonic() - killed

    # Every message stored before the failure is there, and Anna hears it from the standby.
    after = [m.envelope.msg_id for m in store.list(ANNA.tenant, ANNA.box, "INBOX")]
    assert after[:len(before)] == before
    observer = PbxObserver(standby.pbx, standby.pbx.home / "sounds", store)
    watcher = asyncio.create_task(observer.client.run())
    try:
        await observer.client.wait_connected(10)
        since = observer.mark()
        own = await phone.call(VOICEMAIL, device=ANNA.device)
        await own.wait_state("Up", 15)
        await observer.wait_prompt(ANNA.number, "vm-main-menu", since=since, timeout=20)
        prompts = observer.prompts(ANNA.number, since)
        await own.hangup()
    finally:
        await observer.client.close()
        watcher.cancel()
    assert prompts[:2] == ["vm-you-have", f"vm-new-{len(after)}"], prompts
    print(f"node1 marked down after {down_after:.1f} s; Anna's device rang from the standby "
          f"after {rang_after:.1f} s")
