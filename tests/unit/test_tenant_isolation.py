"""Tenant isolation in what is rendered and in the CLI: two tenants with the same extensions and
the same user ids. A device of one tenant lands in its own tenant's context, which names only its
own users (a user of another tenant is reachable only by the public number, like from outside);
its feature codes and transfers carry its own tenant; the CLI never guesses a tenant."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from asterisk_conf import confcheck
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.model import Config
from base.secrets import SecretStore
from cli.forward import forward_group

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TENANT = """\
tenants:
  - id: {tid}
    name: {tid}
    domain: {tid}.example
    country_code: "358"
    users:
      - id: anna
        name: Anna
        number: "{number}1"
        extension: "101"
        pin: "{pin}"
        devices:
          - id: {tid}-anna
      - id: mikko
        name: Mikko
        number: "{number}2"
        extension: "102"
        pin: "{pin}"
        devices:
          - id: {tid}-mikko
"""


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    out = [str(EXAMPLES / "platform.yaml")]
    for tid, number, pin in (("acme", "+35840111000", "480264"), ("beta", "+35850122000", "615248")):
        path = tmp_path / f"{tid}.yaml"
        path.write_text(TENANT.format(tid=tid, number=number, pin=pin), encoding="utf-8")
        out.append(str(path))
    return out


@pytest.fixture
def config(files: list[str]) -> Config:
    return load_config(files)


@pytest.fixture
def rendered(config: Config, tmp_path: Path) -> dict[str, list[confcheck.Section]]:
    files = render_config(config, SecretStore(tmp_path / "secrets.json"))
    out: dict[str, list[confcheck.Section]] = {}
    for name in ("extensions.conf", "pjsip.conf"):
        parsed, errors = confcheck.parse(files[name], name)
        assert errors == []
        for section in parsed:
            out.setdefault(f"{name}:{section.name}", []).append(section)
    return out


def lines(sections: dict[str, list[confcheck.Section]], context: str) -> list[tuple[str, str]]:
    [section] = sections[f"extensions.conf:{context}"]
    return [(key, value) for key, value, _ in section.settings]


def extens(sections: dict[str, list[confcheck.Section]], context: str) -> dict[str, list[str]]:
    """exten → its lines' applications, for `exten =>` lines (and the `same =>` after them)."""
    out: dict[str, list[str]] = {}
    current = ""
    for key, value in lines(sections, context):
        if key == "exten":
            current, _, rest = value.partition(",")
            out.setdefault(current, []).append(rest)
        elif key == "same":
            out[current].append(value)
    return out


TENANT_ARG = re.compile(r"Gosub\(vipbx-call-user,s,1\(([^,]+),([^,]+),")


@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_a_tenants_context_rings_only_its_own_users(rendered: dict[str, list[confcheck.Section]],
                                                    tenant: str) -> None:
    context = extens(rendered, f"vipbx-t-{tenant}")
    for exten in ("101", "102"):
        calls = [TENANT_ARG.search(line) for line in context[exten]]
        found = {(m.group(1), m.group(2)) for m in calls if m}
        assert found == {(tenant, {"101": "anna", "102": "mikko"}[exten])}, (exten, context[exten])
        hint = next(line for line in context[exten] if line.startswith("hint,"))
        assert hint.endswith(f"CustomPresence:{tenant}+{'anna' if exten == '101' else 'mikko'}")
    # Every user named anywhere in the tenant's context is its own.
    named = {m.group(1) for lines_ in context.values() for line in lines_ if (m := TENANT_ARG.search(line))}
    assert named == {tenant}
    includes = [value for key, value in lines(rendered, f"vipbx-t-{tenant}") if key == "include"]
    assert includes == ["vipbx-public", "vipbx-outbound"]


def test_the_shared_contexts_hold_only_public_numbers(rendered: dict[str, list[confcheck.Section]],
                                                     config: Config) -> None:
    """What every tenant's devices (and outside callers) share: E.164 numbers, never an
    extension, so no device reaches another tenant's extension space through them."""
    service = config.platform
    public = {u.number for t in config.tenants for u in t.users} | {
        service.voicemail_number, service.activity_number, service.conference_number}
    assert set(extens(rendered, "vipbx-public")) == public
    for context in ("vipbx-connect", "vipbx-outbound"):
        for exten in extens(rendered, context):
            assert exten.startswith(("+", "_+", "i")), (context, exten)
    # Trunks also dial numbers without '+' or in national form, and the feature codes: those go to
    # the application, which acts only for a user's number on a trusted trunk (docs/security.md).
    codes = config.platform.feature_codes
    fwd = codes.immediate_forward
    feature = {fwd, f"_{fwd}X.", f"_{fwd}+X.", codes.call_waiting_on, codes.call_waiting_off,
               codes.call_waiting_status}
    for exten in extens(rendered, "vipbx-from-carrier"):
        assert exten.startswith(("+", "_+", "_[1-9]XXXXXX", "_00X.", "_0[1-9]X.", "i")) or exten in feature, exten


@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_a_tenants_devices_carry_only_their_own_tenant(rendered: dict[str, list[confcheck.Section]],
                                                       tenant: str) -> None:
    """Feature codes act for VIPBX_TENANT/VIPBX_USER and *1 runs in TRANSFER_CONTEXT: set per
    device by the PBX, from the device's own tenant, never from anything the device sends."""
    for user in ("anna", "mikko"):
        endpoint = next(s for s in rendered[f"pjsip.conf:{tenant}-{user}"] if s.get("type") == "endpoint")
        variables = [value for key, value, _ in endpoint.settings if key == "set_var"]
        assert variables == [f"VIPBX_TENANT={tenant}", f"VIPBX_USER={user}",
                             f"TRANSFER_CONTEXT=vipbx-xfer-{tenant}"]
        assert endpoint.get("context") == endpoint.get("subscribe_context") == f"vipbx-t-{tenant}"
        assert (endpoint.get("mailboxes") or "").endswith(f"@{tenant}")
        assert endpoint.get("identify_by") == "username"  # never by an address another tenant shares
    transfer = extens(rendered, f"vipbx-xfer-{tenant}")
    assert transfer["_X."][0] == f"1,Stasis(vipbx,transfer,{tenant},${{EXTEN}})"


def test_mwi_and_presence_of_the_same_extension_stay_apart(rendered: dict[str, list[confcheck.Section]]) -> None:
    hints = {line for tenant in ("acme", "beta")
             for line in extens(rendered, f"vipbx-t-{tenant}")["101"] if line.startswith("hint,")}
    assert len(hints) == 2  # one per tenant, each with its own presence provider


# --- the CLI names a user unambiguously ---------------------------------------------------------

def forward_show(files: list[str], home: Path, who: str) -> tuple[int, str]:
    result = CliRunner().invoke(forward_group, ["show", who, *files],
                                env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None})
    return result.exit_code, result.output


@pytest.mark.parametrize(("who", "expected"), [
    ("anna@acme", "+358401110001"), ("anna@beta", "+358501220001"),
    ("+358501220001", "+358501220001"), ("358401110001", "+358401110001"),
])
def test_cli_selects_the_user_of_the_named_tenant(files: list[str], tmp_path: Path, who: str, expected: str) -> None:
    code, output = forward_show(files, tmp_path, who)
    assert code == 0, output
    assert expected in output


@pytest.mark.parametrize("who", ["anna", "101", "anna@", "@acme", "anna@gamma", "mikko@acme@beta", "0401110001"])
def test_cli_never_guesses_a_tenant(files: list[str], tmp_path: Path, who: str) -> None:
    """An id without its tenant, an extension, a national number (whose country?): refused."""
    code, output = forward_show(files, tmp_path, who)
    assert code != 0 and "Error" in output, output


def test_examples_render_isolated(tmp_path: Path) -> None:
    """The shipped examples too: acme and borealis share extensions 101-103."""
    config = load_config([str(EXAMPLES / n) for n in ("platform.yaml", "acme.yaml", "borealis.yaml")])
    text = render_config(config, SecretStore(tmp_path / "secrets.json"))["extensions.conf"]
    for tenant in ("acme", "borealis"):
        block = text.split(f"[vipbx-t-{tenant}]", 1)[1].split("\n[", 1)[0]
        assert set(TENANT_ARG.findall(block)) <= {(tenant, u.id) for t in config.tenants if t.id == tenant
                                                  for u in t.users}
        assert textwrap.dedent(block).count("Gosub(vipbx-call-user") == len(
            next(t for t in config.tenants if t.id == tenant).users)
