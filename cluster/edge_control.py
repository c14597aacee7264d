"""The running SIP edge, over Kamailio's control socket (`kamcmd`): read a new routing table or
node list without a restart, and ask which nodes it counts as up."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .edge import ROUTES_TABLE

SOCKET_NAME = "kamailio_ctl"
KAMCMD_TIMEOUT = 10  # seconds


class EdgeControlError(Exception):
    """The edge did not answer, or refused the command."""


@dataclass(frozen=True)
class EdgeNodeState:
    uri: str  # sip:address:port
    flags: str  # AP: up (probed), IP: down, ...

    @property
    def up(self) -> bool:
        return self.flags.startswith("A")


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def running(run_dir: Path) -> bool:
    return socket_path(run_dir).exists()


def rpc(run_dir: Path, *command: str) -> str:
    kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
    try:
        done = subprocess.run([kamcmd, "-s", f"unix:{socket_path(run_dir)}", *command], capture_output=True,
                              text=True, timeout=KAMCMD_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgeControlError(f"the edge's control socket {socket_path(run_dir)}: {exc}") from exc
    if done.returncode != 0:
        raise EdgeControlError(f"the edge refused {' '.join(command)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def reload_changed(run_dir: Path, changed: list[str]) -> list[str]:
    """Has the running edge read the files that changed; returns what it reloaded. A changed
    kamailio.cfg needs a restart of the edge (Kamailio reads its script only at start)."""
    reloaded = []
    if f"db/{ROUTES_TABLE}" in changed:
        # A failed reload still exits 0: only this answer says it worked.
        answer = rpc(run_dir, "htable.reload", ROUTES_TABLE)
        if "reloaded" not in answer.lower():
            raise EdgeControlError(f"the edge did not reload its routing table: {answer.strip()}")
        reloaded.append("routes")
    if "dispatcher.list" in changed:
        rpc(run_dir, "dispatcher.reload")
        reloaded.append("dispatcher")
    return reloaded


def node_states(run_dir: Path) -> dict[str, EdgeNodeState]:
    """What the edge thinks of each node now, by `address:port`."""
    states: dict[str, EdgeNodeState] = {}
    uri = ""
    for line in rpc(run_dir, "dispatcher.list").splitlines():
        field, _, value = line.strip().partition(":")
        if field == "URI":
            uri = value.strip()
        elif field == "FLAGS" and uri:
            states.setdefault(uri.removeprefix("sip:"), EdgeNodeState(uri, value.strip()))
    return states
