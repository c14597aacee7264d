"""A cluster at scale: 100 tenants × 1,000 users placed on Asterisk nodes, and the SIP edge's
added latency. Three parts, each on its own:

    python3 bench/bench_cluster.py render              # validate, place, render, deploy every node
    python3 bench/bench_cluster.py boot                # one node's Asterisk: boot, one-user change
    python3 bench/bench_cluster.py edge                # Kamailio's added latency at 200 calls/s

render: `make_tenants.py` writes the tenants; the platform has NODES serving nodes (capacity
  21,000 users each: 20,000 placed, room to grow) and a standby per node (`standby_for`), as
  docs/cluster.md recommends at this size. Times: validation, placement, each node's render and first deploy (files written as
  `vipbx cluster deploy --no-reload` does), and a one-user change (validate, place, render every
  node, deploy: which nodes' files changed). Validation uses the home's parse cache as the CLI
  does: the first one fills it, the change parses the one changed file.
boot: the first serving node's files from the same platform in a real Asterisk (127.0.0.80; AMI
  19038), the time to fully booted and its memory, then the one-user change deployed to it with
  an AMI reloader like `vipbx cluster deploy`'s (extensions changed live through AMI, the new
  device through ARI, the other modules reloaded), timing each step.
edge: Debian's Kamailio on the rendered edge configuration (127.0.0.90:26060) with the routing
  table of USERS users, SIPp stand-ins for the nodes (127.0.0.91-95, answering at once) and a
  SIPp carrier (127.0.0.97) calling random users' numbers at RATE calls/s for SECONDS; the same
  calls straight to one stand-in give the baseline. The added latency is the difference of the
  INVITE → 200 OK times (SIPp response-time 1, in microseconds).

Needs root for `boot` (Asterisk in a chroot) and Kamailio and SIPp for `edge`. Every process is
started here and stopped by its pid; the load ends after SECONDS.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_reload import NEW_USER, rss_mb, timed_reloader
from make_tenants import write

from asterisk_conf.render import AMI_USER
from asterisk_conf.validate import ParseCache, load_config
from base.ami import AmiSettings
from base.paths import Paths
from base.secrets import SecretStore
from cluster import edge_control
from cluster.deploy import deploy_nodes, node_paths
from cluster.edge import (
    START_ARGS,
    Edge,
    EdgeNode,
    EdgeTrunk,
    render_edge,
    route_keys,
    write_edge_files,
)
from cluster.edge_config import render_cluster_edge
from cluster.nodes import render_node
from cluster.placement import place

KAMAILIO = "/usr/sbin/kamailio"
UAS = HERE.parent / "tests" / "e2e" / "sipp" / "edge_node.xml"
UAC = HERE / "sipp" / "uac_rtt.xml"
PG_PORT = 15952  # the PostgreSQL of `boot` (127.0.0.1)
NODE_BASE = "127.0.0.8"  # nodes 127.0.0.81.., standbys 127.0.0.86.. (render and boot)
EDGE_IP, EDGE_PORT = "127.0.0.90", 26060
STAND_INS = [f"127.0.0.{91 + i}" for i in range(5)]
CARRIER_IP = "127.0.0.97"
SO_TIMESTAMPNS = 35  # socket.h: kernel receive time as a timespec


def platform_yaml(nodes: int, pg_port: int | None = None) -> str:
    lines = [
        "platform:",
        *([f"  state_database: {{backend: postgresql, host: 127.0.0.1, port: {pg_port}, name: bench}}"]
          if pg_port else []),
        "  sip: {bind: 127.0.0.80, port: 19060}",
        "  http: {bind: 127.0.0.80, port: 19088}",
        "  ami: {bind: 127.0.0.80, port: 19038}",
        "  agi: {bind: 127.0.0.80, port: 19073}",
        "  rtp: {start: 19100, end: 19598}",
        f"  carrier: {{host: {CARRIER_IP}, port: 19061, match: [{CARRIER_IP}]}}",
        f"  sip_edge: {{address: {EDGE_IP}, port: {EDGE_PORT}}}",
        "  nodes:",
    ]
    lines += [f"    - {{name: node{i + 1}, address: 127.0.0.{81 + i}, port: 19060, capacity: 21000}}"
              for i in range(nodes)]
    lines += [f"    - {{name: standby{i + 1}, address: 127.0.0.{81 + nodes + i}, port: 19060, standby: true, "
              f"standby_for: [node{i + 1}]}}" for i in range(nodes)]
    return "\n".join(lines) + "\n"


def write_platform(tenants: int, users: int, nodes: int, folder: Path, pg_port: int | None = None) -> list[str]:
    paths = write(tenants, users, folder)
    (folder / "platform.yaml").write_text(platform_yaml(nodes, pg_port), encoding="utf-8")
    return [str(p) for p in paths]


def timed(what: str, times: dict[str, float], action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = action()
    times[what] = time.perf_counter() - start
    return result


def render_part(args: argparse.Namespace, work: Path) -> None:
    files = write_platform(args.tenants, args.users, args.nodes, work / "yaml")
    home = Paths(work / "home")
    secrets = SecretStore(home.secrets)
    times: dict[str, float] = {}
    config = timed("validate", times, lambda: load_config(files, ParseCache(home.yaml_cache)))
    placement = timed("place", times, lambda: place(config))
    sizes: dict[str, float] = {}
    node_times: dict[str, float] = {}
    for node in config.platform.nodes:
        start = time.perf_counter()
        rendered = render_node(config, placement, node, secrets)
        node_times[node.name] = time.perf_counter() - start
        sizes[node.name] = sum(len(t.encode()) for t in rendered.values()) / 1e6
    edge_dir = home.cluster / "edge"
    edge = Edge(EDGE_IP, EDGE_PORT, edge_dir / "data", edge_dir / "run")
    edge_files = timed("render edge", times, lambda: render_cluster_edge(config, placement, edge.data_dir,
                                                                         edge.run_dir))
    write_edge_files(edge_files, edge, edge_dir / "kamailio.cfg")
    timed("first deploy (render + write every node)", times, lambda: asyncio.run(
        deploy_nodes(home, config, placement, secrets, lambda node: None)))
    print(f"{args.tenants} tenants × {args.users:,} users, {args.nodes} nodes + {args.nodes} standbys")
    for what, seconds in times.items():
        print(f"  {what}: {seconds:.2f} s")
    for name, seconds in node_times.items():
        print(f"  {name}: render {seconds:.2f} s, {sizes[name]:.1f} MB, "
              f"{placement.users.get(name, 0):,} users")
    print(f"  edge table: {edge_files['db/routes'].count(chr(10)) - 1:,} keys")

    # One user added to the first tenant: everything from the YAML again, as `vipbx cluster deploy`.
    with open(Path(files[1]), "a", encoding="utf-8") as f:
        f.write(NEW_USER)
    change: dict[str, float] = {}
    start = time.perf_counter()
    config = timed("validate", change, lambda: load_config(files, ParseCache(home.yaml_cache)))
    placement = timed("place", change, lambda: place(config, placement.tenants))
    changed_edge = write_edge_files(render_cluster_edge(config, placement, edge.data_dir, edge.run_dir), edge,
                                    edge_dir / "kamailio.cfg")
    done = timed("render + deploy every node", change, lambda: asyncio.run(
        deploy_nodes(home, config, placement, secrets, lambda node: None)))
    total = time.perf_counter() - start
    print(f"  one-user change: {total:.2f} s in all ("
          + ", ".join(f"{k} {v:.2f} s" for k, v in change.items()) + ")")
    print(f"    edge files changed: {', '.join(changed_edge)}; nodes changed: "
          + ", ".join(f"{d.node} ({', '.join(d.result.changed)})" for d in done if d.changed))


def boot_part(args: argparse.Namespace, work: Path) -> None:
    sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
    from pgserver import PgServer, find_bindir

    # The call state on PostgreSQL, as a cluster has it: the node reads its mailboxes from there.
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("boot needs the PostgreSQL server programs (initdb, pg_ctl, postgres)")
    # Its own folder under /tmp: the server runs as `postgres`, which cannot enter `work`.
    folder = Path(tempfile.mkdtemp(prefix="vipbx-bench-pg-"))
    pg = PgServer(bindir, folder, port=PG_PORT)
    try:
        pg.start()
        pg.create_database("bench")
        boot_node(args, work, pg.password)
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def boot_node(args: argparse.Namespace, work: Path, pg_password: str) -> None:
    from asterisk_conf.deploy import deploy
    from asterisk_conf.dialplan_patch import DialplanPatch
    from asterisk_conf.pjsip_patch import PjsipPatch
    from asterisk_conf.render import ARI_USER
    from asterisk_host import AsteriskInstance, AsteriskRuntime
    from cli.reload import RELOAD_TIMEOUT, AriDevicePusher, ami_dialplan_patcher
    from cluster.mailboxes import sync_mailboxes

    files = write_platform(args.tenants, args.users, args.nodes, work / "yaml", PG_PORT)
    home = Paths(work / "home")
    home.home.mkdir(parents=True, exist_ok=True)
    home.secrets.write_text(json.dumps({"postgresql": pg_password}), encoding="utf-8")
    home.secrets.chmod(0o600)
    secrets = SecretStore(home.secrets)
    config = load_config(files, ParseCache(home.yaml_cache))
    placement = place(config)
    sync_mailboxes(config, secrets.get)
    node = config.platform.nodes[0]
    node_home = node_paths(home, node.name)
    asyncio.run(deploy(node_home, render_node(config, placement, node, secrets), None))
    runtime = AsteriskRuntime.locate()
    instance = AsteriskInstance(runtime, node_home.home / "pbx", node_home.current, name=node.name)
    start = time.perf_counter()
    pid = instance.start(timeout=args.start_timeout)
    try:
        boot = time.perf_counter() - start
        rss = rss_mb(pid)
        with open(Path(files[1]), "a", encoding="utf-8") as f:
            f.write(NEW_USER)
        reloads: dict[str, float] = {}
        settings = AmiSettings(config.platform.ami.bind, config.platform.ami.port, AMI_USER, secrets.get("ami"))
        patcher = ami_dialplan_patcher(settings, 5, RELOAD_TIMEOUT)

        async def timed_patch(change: DialplanPatch) -> None:
            begun = time.perf_counter()
            await patcher(change)
            reloads[f"dialplan live ({change.extensions} extensions, {len(change.steps)} AMI actions)"] = (
                time.perf_counter() - begun)

        http = config.platform.http
        pusher = AriDevicePusher(f"http://{http.bind}:{http.port}/ari", ARI_USER, secrets.get("ari"), RELOAD_TIMEOUT)

        class TimedPusher:
            async def push(self, change: PjsipPatch) -> None:
                begun = time.perf_counter()
                await pusher.push(change)
                reloads[f"devices live ({change.devices} device, {len(change.objects)} ARI requests)"] = (
                    time.perf_counter() - begun)

            async def forget(self, objects: list[tuple[str, str]]) -> list[tuple[str, str]]:
                return await pusher.forget(objects)

        steps: dict[str, float] = {}
        start = time.perf_counter()
        changed = timed("validate", steps, lambda: load_config(files, ParseCache(home.yaml_cache)))
        placement = timed("place", steps, lambda: place(changed, placement.tenants))
        timed("mailbox table", steps, lambda: sync_mailboxes(changed, secrets.get))
        rendered = timed("render", steps, lambda: render_node(changed, placement, node, secrets))
        result = timed("deploy", steps, lambda: asyncio.run(deploy(
            node_home, rendered, timed_reloader(settings, reloads), patch_dialplan=timed_patch,
            push_devices=TimedPusher())))
        change = time.perf_counter() - start
        found = instance.cli("pjsip show endpoint t000-bench-new")
        assert "t000-bench-new" in found, found
        found = instance.cli("voicemail show users for t000")
        assert "358499999999" in found, found
    finally:
        instance.stop()
    print(f"{node.name}: {placement.users[node.name]:,} users; fully booted in {boot:.1f} s, RSS {rss:.0f} MB")
    print(f"  one-user change (validate, place, render, deploy, reload): {change:.2f} s; changed "
          f"{', '.join(result.changed)}; reloads " + ", ".join(f"{m} {s:.2f} s" for m, s in reloads.items()))
    asterisk = sum(reloads.values())
    print("  steps: " + ", ".join(f"{what} {s:.2f} s" for what, s in steps.items())
          + f" (of which Asterisk {asterisk:.2f} s, check + stage + swap {steps['deploy'] - asterisk:.2f} s)")


class EdgeSniffer:
    """Kernel timestamps (SO_TIMESTAMPNS) of the SIP datagrams on `lo` to and from the edge: an
    INVITE's arrival at the edge and its departure to a node, and the same for its 200 OK on the
    way back, matched by Call-ID. SIPp's own response times tick in whole milliseconds."""

    def __init__(self, edge_ip: str, port: int) -> None:
        self.edge = socket.inet_aton(edge_ip)
        self.port = port
        self.seen: dict[tuple[str, str, str], float] = {}  # (call-id, message, "in"|"out") -> seconds
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._sock.bind(("lo", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.settimeout(0.2)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            try:
                frame, ancillary, _, address = self._sock.recvmsg(65535, 256)
            except TimeoutError:
                continue
            if address[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            if ip[9] != socket.IPPROTO_UDP:
                continue
            udp = ip[(ip[0] & 0x0F) * 4:]
            direction = "in" if ip[16:20] == self.edge and struct.unpack("!H", udp[2:4])[0] == self.port else (
                "out" if ip[12:16] == self.edge and struct.unpack("!H", udp[0:2])[0] == self.port else "")
            payload = udp[8:80].decode("ascii", "replace")
            kind = "invite" if payload.startswith("INVITE ") else "200" if payload.startswith("SIP/2.0 200") else ""
            if not direction or not kind:
                continue
            text = udp[8:].decode("utf-8", "replace")
            call_id = next((line[9:].strip() for line in text.split("\r\n") if line.startswith("Call-ID:")), "")
            if "CSeq: 1 INVITE" not in text:
                continue
            for level, kind_of, data in ancillary:
                if level == socket.SOL_SOCKET and kind_of == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    self.seen.setdefault((call_id, kind, direction), sec + nsec / 1e9)

    def added_ms(self, kind: str) -> list[float]:
        return [(self.seen[(c, k, "out")] - t) * 1000 for (c, k, d), t in list(self.seen.items())
                if k == kind and d == "in" and (c, k, "out") in self.seen]

    def close(self) -> None:
        self._stopped = True
        self._thread.join(2)
        self._sock.close()


def edge_part(args: argparse.Namespace, work: Path) -> None:
    nodes = [EdgeNode(f"n{i + 1}", ip, EDGE_PORT) for i, ip in enumerate(STAND_INS[:args.nodes])]
    numbers = [f"+3584{t:03d}{u:05d}" for t in range(max(1, args.users // 1000)) for u in range(min(args.users, 1000))]
    routes: dict[str, int] = {}
    for index, number in enumerate(numbers):
        for key in route_keys([(number, "358")], [f"dev{index}"]):
            routes[key] = 1 + (index // 1000) % len(nodes)
    edge = Edge(EDGE_IP, EDGE_PORT, work / "data", work / "run", probe_seconds=2)
    write_edge_files(render_edge(edge, nodes, routes, [EdgeTrunk("carrier", (CARRIER_IP,))], []), edge,
                     work / "kamailio.cfg")
    edge.run_dir.mkdir(parents=True, exist_ok=True)
    called = work / "called.csv"
    rng = random.Random(7)
    called.write_text("RANDOM\n" + "".join(f"{rng.choice(numbers)};\n" for _ in range(5000)))
    started: list[subprocess.Popen[bytes]] = []
    sniffer = None
    try:
        for node in nodes:
            started.append(subprocess.Popen(
                ["sipp", "-sf", str(UAS), "-i", node.address, "-p", str(EDGE_PORT), "-aa", "-nostdin",
                 "-timeout", str(args.seconds * 4 + 60)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen(
            [KAMAILIO, "-f", str(work / "kamailio.cfg"), "-P", str(edge.run_dir / "kamailio.pid"), "-Y",
             str(edge.run_dir), "-w", str(edge.run_dir), "-DD", "-E", *(edge.data_dir / START_ARGS).read_text().split()],
            stdout=subprocess.DEVNULL, stderr=(work / "kamailio.log").open("wb")))
        try:
            wait_all_up(edge.run_dir, nodes)  # the edge has loaded its table and probed every node
        except SystemExit:
            print((work / "kamailio.log").read_text()[-1500:], file=sys.stderr)
            raise
        shm = edge_control.rpc(edge.run_dir, "core.shmmem")
        shm_used = next(int(line.split(":")[1]) for line in shm.splitlines() if "real_used" in line) / 2**20
        sniffer = EdgeSniffer(EDGE_IP, EDGE_PORT)
        failed = run_uac(work / "uac", f"{EDGE_IP}:{EDGE_PORT}", called, args)
        time.sleep(1)
    finally:
        if sniffer is not None:
            sniffer.close()
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert sniffer is not None
    print(f"{len(numbers):,} users ({len(routes):,} table keys), {len(nodes)} nodes, {args.rate} calls/s "
          f"for {args.seconds} s; failed calls: {failed}; shared memory in use {shm_used:.0f} MB")
    for kind, what in (("invite", "INVITE in → out"), ("200", "200 OK in → out")):
        values = sniffer.added_ms(kind)
        if values:
            print(f"  {what}: {len(values)} calls, p50 {pct(values, 50):.3f} ms, p99 {pct(values, 99):.3f} ms, "
                  f"max {max(values):.3f} ms")


def wait_all_up(run_dir: Path, nodes: list[EdgeNode], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = edge_control.node_states(run_dir)
            if all(states.get(f"{n.address}:{n.port}") and states[f"{n.address}:{n.port}"].up for n in nodes):
                return
        except edge_control.EdgeControlError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the edge did not count every node up within {timeout:.0f} s")
        time.sleep(0.5)


def run_uac(folder: Path, target: str, called: Path, args: argparse.Namespace) -> str:
    """SIPp as the carrier, RATE calls/s for SECONDS; its count of failed calls."""
    folder.mkdir()
    calls = args.rate * args.seconds
    done = subprocess.run(
        ["sipp", target, "-sf", str(UAC), "-inf", str(called), "-i", CARRIER_IP, "-p", "0", "-r", str(args.rate),
         "-m", str(calls), "-l", str(args.rate * 2), "-nostdin", "-timeout", str(args.seconds * 3 + 30),
         "-trace_stat", "-fd", "60"],
        cwd=folder, capture_output=True, timeout=args.seconds * 4 + 60, check=False)
    for path in folder.glob("*_.csv"):
        rows = list(csv.reader(path.open(), delimiter=";"))
        if len(rows) >= 2 and "FailedCall(C)" in rows[0]:
            return rows[-1][rows[0].index("FailedCall(C)")]
    return f"unknown (SIPp exit {done.returncode})"


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if p < 100 else max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("render", "boot", "edge"))
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--users", type=int, default=1000, help="users per tenant (edge: users in all)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--rate", type=int, default=200, help="edge: calls per second")
    parser.add_argument("--seconds", type=int, default=15, help="edge: how long the load lasts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vipbx-bench-cluster-") as tmp:
        {"render": render_part, "boot": boot_part, "edge": edge_part}[args.part](args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
