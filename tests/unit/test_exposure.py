"""Control listeners (ARI's HTTP, AMI, FastAGI): loopback unless the file says who else may connect,
and what is rendered from that (AMI's ACL and its least privilege, the FastAGI key)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from asterisk_conf.errors import Problem
from asterisk_conf.render import AGI_KEY, render_config
from asterisk_conf.validate import load_config, validate_files
from base.model import Listener
from base.secrets import SecretStore

EXAMPLES = sorted(str(p) for p in (Path(__file__).parents[2] / "examples").glob("*.yaml"))


def problems_of(tmp_path: Path, platform_yaml: str) -> list[Problem]:
    path = tmp_path / "platform.yaml"
    path.write_text("platform:\n" + platform_yaml, encoding="utf-8")
    return validate_files([str(path)])


def only(problems: list[Problem], line: int, key: str, *words: str) -> None:
    hits = [p for p in problems if (p.line, p.key) == (line, key) and all(w in p.message for w in words)]
    assert len(hits) == 1, "\n".join(map(str, problems)) or "no problems"


@pytest.mark.parametrize("name, what", [("ami", "AMI"), ("agi", "FastAGI"), ("http", "ARI")])
@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_control_listener_off_loopback_is_refused(tmp_path: Path, name: str, what: str, bind: str) -> None:
    problems = problems_of(tmp_path, f'  {name}: {{bind: "{bind}"}}\n')
    only(problems, 2, f"platform.{name}.bind", f"exposes {what} to other hosts", "127.0.0.1")


@pytest.mark.parametrize("name", ["ami", "agi", "http"])
@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.42", "::1"])
def test_loopback_binds_are_fine(tmp_path: Path, name: str, bind: str) -> None:
    assert problems_of(tmp_path, f'  {name}: {{bind: "{bind}"}}\n') == []


@pytest.mark.parametrize("name", ["ami", "agi"])
def test_allow_remote_with_a_permit_list_is_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(f"platform:\n  {name}:\n    bind: 0.0.0.0\n    allow_remote: true\n"
                    "    permit: [192.0.2.0/24, 2001:db8::1]\n", encoding="utf-8")
    listener = getattr(load_config([str(path)]).platform, name)
    assert listener == Listener("0.0.0.0", listener.port, True, ("192.0.2.0/24", "2001:db8::1"))


@pytest.mark.parametrize(
    "yaml_text, line, key, words",
    [
        ("  ami: {bind: 0.0.0.0, allow_remote: true}\n", 2, "platform.ami.allow_remote", ("needs a permit",)),
        ("  ami: {bind: 0.0.0.0, allow_remote: true, permit: []}\n", 2, "platform.ami.permit", ("at least one",)),
        ("  agi:\n    bind: 0.0.0.0\n    allow_remote: true\n    permit: [0.0.0.0/0]\n",
         5, "platform.agi.permit[0]", ("admits every address",)),
        ("  agi:\n    bind: 0.0.0.0\n    allow_remote: true\n    permit: [10.0.0.0/8, '::/0']\n",
         5, "platform.agi.permit[1]", ("admits every address",)),
        ("  agi:\n    bind: 0.0.0.0\n    allow_remote: true\n    permit: [10.0.0.0/33]\n",
         5, "platform.agi.permit[0]", ("not an IP address or network",)),
        ("  ami: {bind: 127.0.0.1, permit: [10.0.0.0/8]}\n", 2, "platform.ami.permit", ("no effect",)),
        ("  ami: {bind: 0.0.0.0, allow_remote: yes please, permit: [10.0.0.0/8]}\n",
         2, "platform.ami.allow_remote", ("true or false",)),
        ("  http: {bind: 0.0.0.0, allow_remote: true, permit: [10.0.0.0/8]}\n",
         2, "platform.http.allow_remote", ("no address filter", "reverse proxy")),
        ("  sip: {bind: 0.0.0.0, allow_remote: true}\n", 2, "platform.sip.allow_remote", ("unknown key",)),
    ],
)
def test_remote_access_rules(tmp_path: Path, yaml_text: str, line: int, key: str, words: tuple[str, ...]) -> None:
    only(problems_of(tmp_path, yaml_text), line, key, *words)


def test_sip_may_listen_everywhere(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "  sip: {bind: 0.0.0.0}\n") == []


def manager_user(text: str) -> list[str]:
    """The lines of the AMI user's section, comments dropped."""
    section = text.split("[vipbx]", 1)[1]
    return [line for line in section.splitlines() if line and not line.startswith(";")]


def test_ami_user_acl_and_least_privilege(tmp_path: Path) -> None:
    config = load_config(EXAMPLES)
    secrets = SecretStore(tmp_path / "secrets.json")
    lines = manager_user(render_config(config, secrets)["manager.conf"])
    acl = [line for line in lines if line.startswith(("permit=", "deny="))]
    # Deny everything first (Asterisk applies every rule, the last match wins), then loopback.
    assert acl == ["deny=0.0.0.0/0.0.0.0", "deny=::/0", "permit=127.0.0.0/255.0.0.0", "permit=::1/128"]
    assert "read=cdr" in lines  # the call records only (the call log), no other events
    write = next(line for line in lines if line.startswith("write="))
    assert set(write.removeprefix("write=").split(",")) == {"system", "call", "user"}

    remote = replace(config.platform.ami, bind="0.0.0.0", allow_remote=True, permit=("192.0.2.0/24", "2001:db8::/32"))
    config = replace(config, platform=replace(config.platform, ami=remote))
    lines = manager_user(render_config(config, secrets)["manager.conf"])
    acl = [line for line in lines if line.startswith(("permit=", "deny="))]
    assert acl[-2:] == ["permit=192.0.2.0/24", "permit=2001:db8::/32"]


def test_every_agi_call_of_the_dialplan_carries_the_key(tmp_path: Path) -> None:
    secrets = SecretStore(tmp_path / "secrets.json")
    dialplan = render_config(load_config(EXAMPLES), secrets)["extensions.conf"]
    calls = re.findall(r"AGI\(([^)]*)\)", dialplan)
    assert calls
    key = secrets.get(AGI_KEY)
    for call in calls:
        url, first, *_ = call.split(",")
        assert first == key and key not in url  # an argument: Asterisk logs the URL on failures
