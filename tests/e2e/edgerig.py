"""The SIP edge on loopback for tests: Debian's Kamailio on a rendered configuration, with SIPp
stand-ins for the Asterisk nodes, the carrier and devices.

Addresses: the edge 127.0.0.50, nodes .51 .52 and the standby .53, the carrier .54, devices .55;
all on port 25060. Every process is started here, ended by its pid, and bounded in time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.edge import (
    START_ARGS,
    Edge,
    EdgeNode,
    EdgeTrunk,
    render_edge,
    write_edge_files,
)

KAMAILIO = "/usr/sbin/kamailio"
SCENARIOS = Path(__file__).resolve().parent / "sipp"
EDGE_IP, CARRIER_IP, DEVICE_IP = "127.0.0.50", "127.0.0.54", "127.0.0.55"
PORT = 25060
NODES = (EdgeNode("n1", "127.0.0.51", PORT), EdgeNode("n2", "127.0.0.52", PORT),
         EdgeNode("s1", "127.0.0.53", PORT, standby=True))
SERVICE_NUMBERS = ("+358201243100", "+358201243200")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class Kamailio:
    """Debian's Kamailio on `config`, in the foreground, ended by its pid; `rpc` over its control
    socket (the rendered configuration puts it at `<run_dir>/kamailio_ctl`)."""

    config: Path
    run_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        check = subprocess.run([KAMAILIO, "-c", "-f", str(self.config)], capture_output=True,
                               text=True, timeout=30, check=False)
        assert check.returncode == 0, check.stderr[-2000:]
        # The memory options rendered beside the edge's data (cluster.edge.START_ARGS).
        args = next(self.config.parent.glob(f"*/{START_ARGS}"), None)
        memory = args.read_text().split() if args is not None else []
        self.process = subprocess.Popen(
            [KAMAILIO, "-f", str(self.config), "-P", str(self.run_dir / "kamailio.pid"),
             "-Y", str(self.run_dir), "-w", str(self.run_dir), "-DD", "-E", *memory],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        socket = self.run_dir / "kamailio_ctl"
        deadline = time.monotonic() + 15
        while not socket.exists():
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "Kamailio did not open its control socket"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def rpc(self, *command: str) -> str:
        done = subprocess.run(["kamcmd", "-s", f"unix:{self.run_dir}/kamailio_ctl", *command],
                              capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def up(self, address: str, port: int) -> bool:
        """Whether the edge counts the node at address:port as up now (its dispatcher flags
        start with A, not I)."""
        flags = self.rpc("dispatcher.list").split(f"URI: sip:{address}:{port}")[1].split("FLAGS:")[1].split()[0]
        return flags.startswith("A")


@dataclass
class Node:
    """A SIPp UAS standing in for an Asterisk node; `received()` is what reached it."""

    node: EdgeNode
    trace: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / "edge_node.xml"), "-i", self.node.address, "-p", str(self.node.port),
             "-aa", "-nostdin", "-timeout", "600", "-trace_msg", "-message_file", str(self.trace)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def received(self, method: str) -> list[str]:
        """The `method` requests this node received, each as its text."""
        if not self.trace.exists():
            return []
        found = []
        for block in self.trace.read_text(errors="replace").split("----------------------------------------------- "):
            body = block.partition("\n\n")[2]
            if body.startswith(f"{method} sip:") and "message received" in block:
                found.append(body)
        return found


@dataclass
class EdgeRig:
    home: Path
    routes: dict[str, int]
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kamailio = Kamailio(self.home / "kamailio.cfg", self.edge.run_dir, self.home / "kamailio.log")

    @property
    def edge(self) -> Edge:
        return Edge(EDGE_IP, PORT, self.home / "data", self.home / "run", probe_seconds=1)

    def write(self) -> None:
        files = render_edge(self.edge, NODES, self.routes, [EdgeTrunk("carrier", (CARRIER_IP,))], SERVICE_NUMBERS)
        write_edge_files(files, self.edge, self.home / "kamailio.cfg")
        self.edge.run_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.write()
        self.kamailio.start()

    def stop(self) -> None:
        self.kamailio.stop()

    def rpc(self, *command: str) -> str:
        return self.kamailio.rpc(*command)

    def up(self, node: str) -> bool:
        """Whether the edge counts `node` as up now (its dispatcher flags start with A, not I)."""
        address = next(n.address for n in NODES if n.name == node)
        return self.kamailio.up(address, PORT)

    def wait_until(self, node: str, up: bool, timeout: float = 15) -> float:
        start = time.monotonic()
        while self.up(node) != up:
            assert time.monotonic() - start < timeout, f"{node} still {'down' if up else 'up'} after {timeout} s"
            time.sleep(0.1)
        return time.monotonic() - start


def sipp(scenario: str, to: str, *, source: str, caller: str, extra: str = "", host: str = "") -> int:
    """One SIPp UAC exchange from `source` through the edge: its exit status (0: as scripted)."""
    done = subprocess.run(
        ["sipp", EDGE_IP + f":{PORT}", "-sf", str(SCENARIOS / scenario), "-i", source, "-p", "0", "-m", "1",
         "-nostdin", "-timeout", "20", "-timeout_error", "-key", "to", to, "-key", "from", caller,
         "-key", "extra", extra or "X-Test: plain", "-key", "host", host or f"{EDGE_IP}:{PORT}", "-d", "100"],
        capture_output=True, timeout=40, check=False)
    return done.returncode


@pytest.fixture
def edge_rig(tmp_path: Path) -> Iterator[EdgeRig]:
    if shutil.which("sipp") is None or not Path(KAMAILIO).exists():
        raise AssertionError("Kamailio and SIPp are needed: ./deploy.sh test installs them")
    rig = EdgeRig(tmp_path, {})
    yield rig
    rig.stop()
    for node in rig.nodes.values():
        node.stop()
