"""The SIP edge (Kamailio) in front of the Asterisk nodes: its configuration and routing data.

Carrier trunks and devices talk only to the edge. It sends each request to the node of the
tenant concerned, looked up in one table (`routes`, htable over a db_text file, reloaded with
`htable.reload` without a restart):

    num:<number>    a user's or tenant's number, E.164 and the national form
                    → a call to it; a diverted call by its Diversion number; a call to a
                      shared service number (voicemail, activity, conference) by the caller
    dev:<device>    a device's SIP user name → its REGISTER, SUBSCRIBE and its own calls

and the value is the dispatcher set of the tenant's node: that node first, then the standby
nodes (probed with OPTIONS; a node that stops answering is skipped). Requests from a node
(towards a device through the Path it registered with, or towards a carrier) are relayed as
addressed. A request from a trunk's address carries `X-Vipbx-Trunk: <name>` to the node, and that
header is removed from every other request, so only the edge can say "this came from a trunk".

Everything written into the files is a value the YAML checker already validated (numbers,
identifiers, IP addresses); `_safe` refuses anything else rather than let it reach the config.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from asterisk_conf.render import EDGE_TRUNK_HEADER, templates_dir

ROUTES_TABLE = "routes"
START_ARGS = "kamailio.args"  # the edge's command-line options, beside its data
TRUNK_HEADER = EDGE_TRUNK_HEADER
_SAFE_KEY = re.compile(r"(num:|dev:)?[A-Za-z0-9+._-]{1,120}")
_SAFE_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[?[0-9a-fA-F:.]{2,45}\]?")
_SAFE_ADDRESS = re.compile(r"[0-9a-fA-F:.]{2,45}(/[0-9]{1,3})?")


@dataclass(frozen=True)
class EdgeNode:
    name: str
    address: str
    port: int = 5060
    standby: bool = False
    standby_for: tuple[str, ...] = ()  # empty: every serving node


@dataclass(frozen=True)
class EdgeTrunk:
    name: str
    match: tuple[str, ...]  # source addresses or networks
    host: str = ""  # where a node's calls out to it are addressed (its R-URI host)


@dataclass(frozen=True)
class Edge:
    """The edge's own listener and where its running files live."""

    address: str
    port: int
    data_dir: Path  # the db_text database (routes) and dispatcher.list
    run_dir: Path  # the control socket
    probe_seconds: int = 2


@dataclass(frozen=True)
class DispatcherSet:
    id: int
    node: EdgeNode
    fallbacks: tuple[EdgeNode, ...]


def dispatcher_sets(nodes: Iterable[EdgeNode]) -> list[DispatcherSet]:
    """One set per serving node, numbered in the YAML's order: the node, then the standbys that
    stand in for it."""
    nodes = list(nodes)
    serving = [n for n in nodes if not n.standby]
    return [DispatcherSet(i, node, tuple(s for s in nodes if s.standby and (not s.standby_for or node.name in s.standby_for)))
            for i, node in enumerate(serving, start=1)]


def national(number: str, country_code: str) -> str | None:
    """+358401110001 → 0401110001 (the form a national trunk may deliver), else None."""
    prefix = "+" + country_code
    return "0" + number[len(prefix):] if number.startswith(prefix) else None


def route_keys(numbers: Iterable[tuple[str, str]], devices: Iterable[str]) -> list[str]:
    """The table keys of one tenant: its (E.164 number, country code)s and device names."""
    keys: list[str] = []
    for number, country_code in numbers:
        keys.append(f"num:{number}")
        if (local := national(number, country_code)) is not None:
            keys.append(f"num:{local}")
    keys.extend(f"dev:{device}" for device in devices)
    return keys


def routes_file(routes: Mapping[str, int]) -> str:
    """The db_text table the htable loads: key → dispatcher set id."""
    lines = ["key_name(str) key_type(int) value_type(int) key_value(str) expires(int)"]
    for key in sorted(routes):
        _safe(key, _SAFE_KEY, "routing key")
        lines.append(f"{key.replace(':', chr(92) + ':')}:0:0:{int(routes[key])}:0")
    return "\n".join(lines) + "\n"


def dispatcher_file(sets: Iterable[DispatcherSet]) -> str:
    lines = ["# set destination flags priority attributes"]
    for each in sets:
        for priority, node in [(10, each.node), *((0, n) for n in each.fallbacks)]:
            lines.append(f"{each.id} sip:{_host(node.address)}:{int(node.port)} 0 {priority} duid={node.name}")
    return "\n".join(lines) + "\n"


def render_edge(edge: Edge, nodes: Iterable[EdgeNode], routes: Mapping[str, int], trunks: Iterable[EdgeTrunk],
                service_numbers: Iterable[str]) -> dict[str, str]:
    """kamailio.cfg, dispatcher.list and the routes table (with db_text's `version`)."""
    nodes = list(nodes)
    trunks = list(trunks)
    service_numbers = sorted(set(service_numbers))
    for value in [edge.address, *(n.address for n in nodes), *(m for t in trunks for m in t.match)]:
        _safe(value, _SAFE_ADDRESS, "address")
    for value in [*(n.name for n in nodes), *(t.name for t in trunks), *service_numbers]:
        _safe(value, _SAFE_KEY, "name or number")
    for value in [t.host for t in trunks if t.host]:
        _safe(value, _SAFE_HOST, "trunk host")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir() / "kamailio"), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    config = env.get_template("kamailio.cfg.j2").render(
        edge=edge, listen_host=_host(edge.address), trunks=trunks, service_numbers=service_numbers,
        table=ROUTES_TABLE, trunk_header=TRUNK_HEADER, node_count=len(nodes),
        max_rows=max_table_rows(len(routes)), shm_mb=edge_memory(len(routes))[0])
    return {
        "kamailio.cfg": config,
        "dispatcher.list": dispatcher_file(dispatcher_sets(nodes)),
        f"db/{ROUTES_TABLE}": routes_file(routes),
        "db/version": f"table_name(str) table_version(int)\n{ROUTES_TABLE}:2\n",
        # Private memory is a command-line option only: `kamailio -f kamailio.cfg $(cat kamailio.args)`.
        START_ARGS: f"-M {edge_memory(len(routes))[1]}\n",
    }


def max_table_rows(rows: int) -> int:
    """db_text's row limit for a table of `rows` (db_text's own default, 100,000, at least): a
    power of ten with room to grow, so that the configuration (read only at the edge's start)
    changes seldom as tenants are added."""
    limit = 100_000
    while limit < 2 * rows:
        limit *= 10
    return limit


def edge_memory(rows: int) -> tuple[int, int]:
    """(shared, private) memory in MB the edge needs for a table of `rows`. Measured: about 0.8 KB
    of shared memory a key once loaded, more while db_text reads the file; each process reads the
    query's rows (and an array of db_text's row limit) into its private memory (bench/README.md).
    Powers of two: the configuration changes seldom as tenants are added."""
    shared = 64 + math.ceil(rows * 2048 / 2**20)
    private = 8 + math.ceil((max_table_rows(rows) * 8 + rows * 512) / 2**20)
    return 2 ** math.ceil(math.log2(shared)), 2 ** math.ceil(math.log2(private))


def write_edge_files(files: Mapping[str, str], edge: Edge, config_path: Path) -> list[str]:
    """Writes `render_edge`'s files: kamailio.cfg at `config_path`, the rest under the data
    directory, each replaced whole (a reader sees the old or the new file, never a half).

    db_text re-reads a table only when its modification time changed, in whole seconds: a table
    rewritten within the second it was read would be missed by `htable.reload`, so a changed
    file's time is moved past the old one's. Returns the names of the files that changed."""
    changed = []
    for name, text in files.items():
        path = config_path if name == "kamailio.cfg" else edge.data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat().st_mtime if path.exists() else None
        if old is not None and path.read_text() == text:
            continue
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(text)
        if old is not None:
            later = max(time.time(), int(old) + 1.0)
            os.utime(tmp, (later, later))
        tmp.replace(path)
        changed.append(name)
    return changed


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _safe(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"not a valid {what} for the SIP edge: {value!r}")
    return value
