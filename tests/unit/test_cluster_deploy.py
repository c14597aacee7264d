"""`vipbx cluster deploy|status` without Asterisk: each node's generations under
<home>/cluster/nodes/NAME/etc, only changed nodes reloaded (each at its own address), the roll
stopped by the first node that refuses, and the status of each node. The same roll against three
real Asterisk nodes and Kamailio: tests/e2e/test_cluster_calls.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

import cli.cluster as cluster_cli
from asterisk_conf.dialplan_patch import DialplanPatch, Step
from asterisk_conf.pjsip_patch import PjsipPatch
from base.ami import AmiError, AmiSettings
from base.paths import Paths
from cli.main import main
from cluster import edge_control
from cluster.deploy import live_generation, node_paths, rolling_order

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [REPO / "examples" / "cluster" / "platform.yaml", REPO / "examples" / "acme.yaml",
            REPO / "examples" / "borealis.yaml"]


class FakeNodes:
    """Every node's AMI: what each was asked to reload, and which refuse."""

    def __init__(self) -> None:
        self.reloaded: dict[str, list[str]] = {}
        self.refusing: set[str] = set()
        self.patched: dict[str, list[Step]] = {}
        self.pushed: dict[str, list[str]] = {}  # each node's ARI: the objects created live

    def reloader(self, settings: AmiSettings, connect_timeout: float, reload_timeout: float):  # type: ignore[no-untyped-def]
        async def reload(targets: list[str]) -> None:
            if settings.host in self.refusing:
                raise AmiError(f"{settings.host} refused")
            self.reloaded.setdefault(settings.host, []).extend(targets)
        return reload

    def patcher(self, settings: AmiSettings, connect_timeout: float, action_timeout: float):  # type: ignore[no-untyped-def]
        async def patch(change: DialplanPatch) -> None:
            if settings.host in self.refusing:
                raise AmiError(f"{settings.host} refused")
            self.patched.setdefault(settings.host, []).extend(change.steps)
        return patch


    def pusher(self, ari_url: str, user: str, password: str, timeout: float):  # type: ignore[no-untyped-def]
        host = urlsplit(ari_url).hostname or ""
        fake = self

        class Pusher:
            async def push(self, patch: PjsipPatch) -> None:
                fake.pushed.setdefault(host, []).extend(f"{o.type}/{o.id}" for o in patch.objects)

            async def forget(self, objects: list[tuple[str, str]]) -> list[tuple[str, str]]:
                return []

        return Pusher()


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    fake = FakeNodes()
    monkeypatch.setattr(cluster_cli, "ami_reloader", fake.reloader)
    monkeypatch.setattr(cluster_cli, "ami_dialplan_patcher", fake.patcher)
    monkeypatch.setattr(cluster_cli, "AriDevicePusher", fake.pusher)
    return fake


def deploy(home: Path, files: list[Path], *extra: str) -> tuple[int, str]:
    done = CliRunner().invoke(main, ["--home", str(home), "cluster", "deploy", *extra, *map(str, files)])
    return done.exit_code, done.output


def with_new_number(tmp_path: Path, tenant: str = "borealis.yaml") -> list[Path]:
    """The examples with one more number for the tenant in `tenant`."""
    copy = tmp_path / tenant
    text = (REPO / "examples" / tenant).read_text()
    marker = "    users:\n"
    copy.write_text(text.replace(marker, '    numbers:\n      - {number: "+358501220099", user: james.taylor}\n'
                                         + marker, 1))
    return [p if p.name != tenant else copy for p in EXAMPLES]


def test_the_first_deploy_writes_every_node_and_the_edge(tmp_path: Path, nodes: FakeNodes) -> None:
    code, out = deploy(tmp_path, EXAMPLES, "--no-reload")  # before the nodes run
    assert code == 0, out
    for name in ("node1", "node2", "standby1"):
        assert (node_paths(Paths(tmp_path), name).current / "pjsip.conf").is_file()
        assert live_generation(Paths(tmp_path), name) == "0001"
    assert (tmp_path / "cluster" / "edge" / "data" / "db" / "routes").is_file()
    assert nodes.reloaded == {}
    code, out = deploy(tmp_path, EXAMPLES)
    assert code == 0 and out.count("no changes") == 3, out


def test_a_change_reloads_only_the_nodes_that_serve_it(tmp_path: Path, nodes: FakeNodes) -> None:
    assert deploy(tmp_path, EXAMPLES, "--no-reload")[0] == 0
    code, out = deploy(tmp_path, with_new_number(tmp_path))
    assert code == 0, out
    assert "node1: no changes" in out and "edge: changed db/routes" in out
    # At each node's own address; node1 (acme only) is not asked anything. A new number is a
    # new extension: it goes into the dialplan live, without a pbx_config reload.
    assert nodes.reloaded == {}
    assert set(nodes.patched) == {"127.0.0.32", "127.0.0.33"}
    for steps in nodes.patched.values():
        assert steps[-1][0] == "Setvar"  # the new dialplan's fingerprint
        assert {(f["Context"], f["Extension"]) for _, f in steps[:-1]} == {("vipbx-public", "+358501220099")}
    assert "node2: generation 0002; changed extensions.conf; 1 dialplan extension(s) changed live" in out
    assert live_generation(Paths(tmp_path), "node1") == "0001"
    assert live_generation(Paths(tmp_path), "node2") == "0002"


def test_a_new_user_goes_into_its_nodes_live_at_their_own_ari(tmp_path: Path, nodes: FakeNodes) -> None:
    assert deploy(tmp_path, EXAMPLES, "--no-reload")[0] == 0
    copy = tmp_path / "borealis.yaml"
    copy.write_text((REPO / "examples" / "borealis.yaml").read_text() + (
        '      - {id: olivia.brown, name: Olivia Brown, number: "+358501220077", extension: "177", '
        'pin: "602817", language: en, devices: [{id: borealis-olivia-soft}]}\n'))
    code, out = deploy(tmp_path, [p if p.name != "borealis.yaml" else copy for p in EXAMPLES])
    assert code == 0, out
    assert set(nodes.pushed) == {"127.0.0.32", "127.0.0.33"}
    for created in nodes.pushed.values():
        assert created[:3] == ["auth/borealis-olivia-soft", "aor/borealis-olivia-soft", "endpoint/borealis-olivia-soft"]
    # The example cluster keeps its call state in SQLite: its mailboxes are in voicemail.conf.
    assert nodes.reloaded == {"127.0.0.32": ["app_voicemail.so"], "127.0.0.33": ["app_voicemail.so"]}
    assert "node2: generation 0002;" in out and "; 1 SIP device(s) created live" in out


def test_a_node_with_an_ari_url_is_pushed_to_through_it(tmp_path: Path, nodes: FakeNodes) -> None:
    platform = tmp_path / "platform.yaml"
    platform.write_text((REPO / "examples" / "cluster" / "platform.yaml").read_text().replace(
        "{name: node2, address: 127.0.0.32, capacity: 20000}",
        "{name: node2, address: 127.0.0.32, capacity: 20000, ari_url: 'https://node2-ari.pbx.example/ari'}", 1))
    files = [platform, *EXAMPLES[1:]]
    assert deploy(tmp_path, files, "--no-reload")[0] == 0
    copy = tmp_path / "borealis.yaml"
    copy.write_text((REPO / "examples" / "borealis.yaml").read_text() + (
        '      - {id: olivia.brown, name: Olivia Brown, number: "+358501220077", extension: "177", '
        'pin: "602817", language: en, devices: [{id: borealis-olivia-soft}]}\n'))
    assert deploy(tmp_path, [platform, EXAMPLES[1], copy])[0] == 0
    assert set(nodes.pushed) == {"node2-ari.pbx.example", "127.0.0.33"}


def test_a_cluster_on_postgresql_deploys_nothing_when_its_mailbox_table_cannot_be_written(tmp_path: Path,
                                                                                      nodes: FakeNodes) -> None:
    platform = tmp_path / "platform.yaml"
    platform.write_text((REPO / "examples" / "cluster" / "platform.yaml").read_text().replace(
        "platform:\n", "platform:\n  state_database: {backend: postgresql, host: 127.0.0.1, port: 1, connect_timeout: 2}\n", 1))
    code, out = deploy(tmp_path, [platform, *EXAMPLES[1:]], "--no-reload")
    assert code == 1
    assert "the mailbox table could not be written" in out and "no node was deployed" in out
    assert all(live_generation(Paths(tmp_path), name) is None for name in ("node1", "node2", "standby1"))


def test_a_node_that_refuses_is_rolled_back_and_stops_the_roll(tmp_path: Path, nodes: FakeNodes) -> None:
    assert deploy(tmp_path, EXAMPLES, "--no-reload")[0] == 0
    nodes.refusing.add("127.0.0.32")
    code, out = deploy(tmp_path, with_new_number(tmp_path))
    assert code != 0 and "node2 refused its files and was rolled back; not deployed: standby1" in out
    assert live_generation(Paths(tmp_path), "node2") == "0001"
    assert live_generation(Paths(tmp_path), "standby1") == "0001"
    assert "127.0.0.33" not in nodes.reloaded and "127.0.0.33" not in nodes.patched


def test_no_reload_writes_every_file_and_asks_nobody(tmp_path: Path, nodes: FakeNodes) -> None:
    assert deploy(tmp_path, EXAMPLES, "--no-reload")[0] == 0
    code, out = deploy(tmp_path, with_new_number(tmp_path), "--no-reload")
    assert code == 0, out
    assert nodes.reloaded == {} and nodes.patched == {}
    assert live_generation(Paths(tmp_path), "node2") == "0002"


def test_standbys_deploy_last() -> None:
    from asterisk_conf.validate import load_config

    config = load_config(EXAMPLES)
    assert [n.name for n in rolling_order(config.platform.nodes)] == ["node1", "node2", "standby1"]


def test_status_names_every_node_and_fails_when_one_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            nodes: FakeNodes) -> None:
    assert deploy(tmp_path, EXAMPLES, "--no-reload")[0] == 0

    async def answers(settings: AmiSettings, timeout: float) -> str:
        return "down (AmiError)" if settings.host == "127.0.0.32" else "up"

    monkeypatch.setattr(cluster_cli, "_asterisk_answers", answers)
    done = CliRunner().invoke(main, ["--home", str(tmp_path), "cluster", "status", *map(str, EXAMPLES)])
    assert done.exit_code == 1, done.output
    lines = {line.split()[0]: line for line in done.output.splitlines()}
    assert "edge: not running" in done.output
    assert "generation 0001" in lines["node1"] and "asterisk up" in lines["node1"] and "acme" in lines["node1"]
    assert "asterisk down" in lines["node2"] and "borealis" in lines["node2"]
    assert "standby" in lines["standby1"]


def test_the_edge_reload_reads_its_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def rpc(run_dir: Path, *command: str) -> str:
        asked.append(command)
        return "Htable reloaded" if command[0] == "htable.reload" else "ok"

    monkeypatch.setattr(edge_control, "rpc", rpc)
    assert edge_control.reload_changed(tmp_path, ["db/routes", "dispatcher.list"]) == ["routes", "dispatcher"]
    assert asked == [("htable.reload", "routes"), ("dispatcher.reload",)]
    assert edge_control.reload_changed(tmp_path, ["kamailio.cfg"]) == []
    monkeypatch.setattr(edge_control, "rpc", lambda run_dir, *command: "error: no such table")
    with pytest.raises(edge_control.EdgeControlError, match="did not reload"):
        edge_control.reload_changed(tmp_path, ["db/routes"])


def test_the_edges_view_of_the_nodes_is_read_from_dispatcher_list(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    listing = ("{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: 1\n\t\t\tTARGETS: {\n\t\t\t\tDEST: {\n"
               "\t\t\t\t\tURI: sip:127.0.0.31:5060\n\t\t\t\t\tFLAGS: AP\n\t\t\t\t}\n\t\t\t\tDEST: {\n"
               "\t\t\t\t\tURI: sip:127.0.0.33:5060\n\t\t\t\t\tFLAGS: IP\n\t\t\t\t}\n")
    monkeypatch.setattr(edge_control, "rpc", lambda run_dir, *command: listing)
    states = edge_control.node_states(tmp_path)
    assert states["127.0.0.31:5060"].up and not states["127.0.0.33:5060"].up


def test_a_node_whose_inputs_did_not_change_is_not_even_rendered(tmp_path: Path) -> None:
    import asyncio

    from asterisk_conf.validate import load_config
    from base.secrets import SecretStore
    from cluster.deploy import INPUTS_FILE, deploy_nodes
    from cluster.nodes import render_node
    from cluster.placement import place

    rendered: list[str] = []

    def render(config, placement, node, secrets):  # type: ignore[no-untyped-def]
        rendered.append(node.name)
        return render_node(config, placement, node, secrets)

    paths, secrets = Paths(tmp_path / "home"), SecretStore(tmp_path / "home" / "secrets.json")

    def roll(files: list[Path]) -> list[str]:
        rendered.clear()
        config = load_config(files)
        asyncio.run(deploy_nodes(paths, config, place(config), secrets, lambda node: None, render))
        return list(rendered)

    assert roll(EXAMPLES) == ["node1", "node2", "standby1"]
    assert roll(EXAMPLES) == []
    assert roll(with_new_number(tmp_path)) == ["node2", "standby1"]
    # A live file changed by hand is not noticed by the digest: removing the digest renders again.
    (node_paths(paths, "node1").etc / INPUTS_FILE).unlink()
    assert roll(with_new_number(tmp_path)) == ["node1"]
