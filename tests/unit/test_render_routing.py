"""The rendered dialplan and endpoints for call routing: device-state hints, the router's
arguments, the per-tenant transfer context and who may transfer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asterisk_conf import confcheck
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.model import Config
from base.secrets import SecretStore

EXAMPLES = sorted(str(p) for p in (Path(__file__).parents[2] / "examples").glob("*.yaml"))
GOSUB = re.compile(r"Gosub\(vipbx-call-user,s,1\((.*)\)\)$")
ONLY_DEVICES_T = '${IF($["${VIPBX_TENANT}" != ""]?T)}'


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLES)


@pytest.fixture(scope="module")
def files(config: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    rendered = render_config(config, SecretStore(tmp_path_factory.mktemp("secrets") / "secrets.json"))
    assert confcheck.check(rendered) == []
    return rendered


def sections(text: str, filename: str) -> dict[str, confcheck.Section]:
    parsed, errors = confcheck.parse(text, filename)
    assert errors == []
    out: dict[str, confcheck.Section] = {}
    for section in parsed:
        assert section.name not in out or filename == "pjsip.conf", section.name
        out.setdefault(section.name, section)
    return out


def extens(section: confcheck.Section) -> list[str]:
    return [v for k, v, _ in section.settings if k == "exten"]


def lines(section: confcheck.Section) -> list[str]:
    return [v for k, v, _ in section.settings if k in ("exten", "same")]


def test_examples_have_users_with_and_without_devices(config: Config) -> None:
    users = [u for t in config.tenants for u in t.users]
    assert any(u.devices for u in users) and any(not u.devices for u in users)


def test_hints_for_every_user_with_devices_and_presence(config: Config, files: dict[str, str]) -> None:
    # DEVICES,CustomPresence:TENANT+USER; DEVICES is empty for a user without devices, whose hint
    # still carries the presence that subscribed phones show.
    dialplan = sections(files["extensions.conf"], "extensions.conf")
    for tenant in config.tenants:
        hints = {e.split(",")[0]: e.split(",", 2)[2]
                 for e in extens(dialplan[f"vipbx-t-{tenant.id}"]) if e.split(",")[1] == "hint"}
        expected = {u.extension: "&".join(f"PJSIP/{d.id}" for d in u.devices) + f",CustomPresence:{tenant.id}+{u.id}"
                    for u in tenant.users}
        assert hints == expected
        for u in tenant.users:
            if not u.devices:  # e.g. borealis's erik.nyberg
                assert f"exten => {u.extension},hint,,CustomPresence:{tenant.id}+{u.id}" in files["extensions.conf"]
    # Hints live only in the tenant contexts, where EXTENSION_STATE(EXT@vipbx-t-TENANT) looks.
    for name, section in dialplan.items():
        if not name.startswith("vipbx-t-"):
            assert not [e for e in extens(section) if ",hint," in e], name


def test_every_call_to_a_user_passes_six_arguments(config: Config, files: dict[str, str]) -> None:
    dialplan = sections(files["extensions.conf"], "extensions.conf")
    calls: list[tuple[str, list[str]]] = []
    for name, section in dialplan.items():
        for exten in extens(section):
            match = GOSUB.search(exten)
            if match:
                calls.append((name, match.group(1).split(",")))
    expected = 0
    for tenant in config.tenants:
        for user in tenant.users:
            extra = sum(1 for n in tenant.numbers if n.user == user.id)
            mine = [args for _, args in calls if args[:2] == [tenant.id, user.id]]
            assert len(mine) == 2 + extra  # public number, extension, each tenant number
            for args in mine:
                dial = "&".join(f"PJSIP/{d.id}" for d in user.devices)
                assert args == [tenant.id, user.id, dial, "1" if user.has_voicemail else "0", user.mailbox,
                                user.extension]
            expected += len(mine)
    assert len(calls) == expected


def test_the_router_gets_state_chain_and_redirect_count(files: dict[str, str], config: Config) -> None:
    call_user = sections(files["extensions.conf"], "extensions.conf")["vipbx-call-user"]
    agi = [v for v in lines(call_user) if "AGI(" in v]
    agi_at = f"agi://{config.platform.agi.bind}:{config.platform.agi.port}"
    key = agi[0].split(",")[2]  # the FastAGI key comes first (tests/unit/test_exposure.py)
    assert agi == [f"n,AGI({agi_at}/route,{key},${{ARG1}},${{ARG2}},${{VIPBX_STATE}},${{VIPBX_CHAIN}},"
                   "${REDIRECTING(count)},${VIPBX_TENANT},${VIPBX_USER})"]
    unpack = [v for v in lines(call_user) if "ARRAY(" in v]
    assert unpack == ["n,Set(ARRAY(VIPBX_ACTION,VIPBX_TIMEOUT,VIPBX_TARGET,VIPBX_ON_BUSY,VIPBX_ON_NOANSWER,"
                      "VIPBX_ON_UNAVAIL,VIPBX_FROM,VIPBX_CHAIN,VIPBX_RECORD)=${VIPBX_ROUTE})"]
    state = [v for v in lines(call_user) if "EXTENSION_STATE" in v]
    assert state == ["n,Set(VIPBX_STATE=${EXTENSION_STATE(${ARG6}@vipbx-t-${ARG1})})"]
    # The fallback when the router does not answer: ring, voicemail (or nothing) otherwise.
    body = "\n".join(lines(call_user))
    assert f"Set(VIPBX_TIMEOUT={config.platform.no_answer_seconds})" in body
    assert 'Set(VIPBX_ON_BUSY=${IF($["${ARG4}" = "1"]?voicemail:none)})' in body


def test_transfer_context_per_tenant(config: Config, files: dict[str, str]) -> None:
    dialplan = sections(files["extensions.conf"], "extensions.conf")
    app = config.platform.ari_app
    for tenant in config.tenants:
        xfer = dialplan[f"vipbx-xfer-{tenant.id}"]
        assert lines(xfer) == [f"_X.,1,Stasis({app},transfer,{tenant.id},${{EXTEN}})",
                               "n,Goto(vipbx-feature-unavailable,s,1)"]
        assert not [v for k, v, _ in xfer.settings if k == "include"]  # nothing is dialled directly
    assert len([n for n in dialplan if n.startswith("vipbx-xfer-")]) == len(config.tenants)
    assert "vipbx-feature-unavailable" in dialplan


def test_every_endpoint_transfers_in_its_own_tenant(config: Config, files: dict[str, str]) -> None:
    parsed, errors = confcheck.parse(files["pjsip.conf"], "pjsip.conf")
    assert errors == []
    endpoints = {s.name: s for s in parsed if s.get("type") == "endpoint"}
    devices = {d.id: t.id for t in config.tenants for u in t.users for d in u.devices}
    for device, tenant_id in devices.items():
        set_vars = [v for k, v, _ in endpoints[device].settings if k == "set_var"]
        assert f"TRANSFER_CONTEXT=vipbx-xfer-{tenant_id}" in set_vars
        assert f"VIPBX_TENANT={tenant_id}" in set_vars
    carrier = [s for s in parsed if s.get("type") == "endpoint" and s.name not in devices]
    assert carrier
    for endpoint in carrier:  # the carrier's calls are never marked as a tenant's, nor may transfer
        assert not [v for k, v, _ in endpoint.settings if k == "set_var" and "TRANSFER_CONTEXT" in v]
        assert not [v for k, v, _ in endpoint.settings if k == "set_var" and "VIPBX_TENANT" in v]


def test_only_platform_devices_get_the_callers_transfer_option(files: dict[str, str]) -> None:
    dialplan = sections(files["extensions.conf"], "extensions.conf")
    outbound = lines(dialplan["vipbx-outbound"])
    # Anything but digits is refused whole, then the policy, then the trunk.
    assert outbound[0] == "_+X.,1,GotoIf($[${LEN(${FILTER(0-9+,${EXTEN})})} != ${LEN(${EXTEN})}]?not-a-number)"
    assert outbound[1] == "n,Gosub(vipbx-outbound-check,s,1(${EXTEN}))"
    assert "n,Gosub(vipbx-calllog,s,1(dial/${EXTEN}))" in outbound  # the call log's trail
    # The recording's announcement (Dial's A() in VIPBX_REC_OPT) is the only other option.
    assert [v for v in outbound if "Dial(" in v] == [
        f"n(dial),Dial(PJSIP/${{EXTEN}}@carrier,,{ONLY_DEVICES_T}${{VIPBX_REC_OPT}})"]
    call_user = [v for v in lines(dialplan["vipbx-call-user"]) if "Dial(" in v]
    assert call_user == [f"n(ring),Dial(${{ARG3}},${{VIPBX_TIMEOUT}},t{ONLY_DEVICES_T}${{VIPBX_REC_OPT}})"]
    # No other Dial() anywhere gives T unconditionally.
    for name, section in dialplan.items():
        for value in lines(section):
            for options in re.findall(r"Dial\([^,]*,[^,]*,(.*)\)$", value):
                assert options.replace(ONLY_DEVICES_T, "").replace("${VIPBX_REC_OPT}", "") in ("", "t"), (name, value)


def test_blind_transfer_code(config: Config, files: dict[str, str]) -> None:
    features = sections(files["features.conf"], "features.conf")
    assert features["featuremap"].get("blindxfer") == config.platform.feature_codes.blind_transfer
