"""Trunks: the YAML rules (`platform.trunks`, the older `carrier`, the user's `mobile`), what is
rendered for them, and where a call came from (`ari_app.origin`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ari_app.origin import Origin
from asterisk_conf import confcheck
from asterisk_conf.errors import Problem
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config, validate_files
from base.model import Config
from base.secrets import SecretStore


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "p.yaml", not a temporary folder
    return tmp_path


CORE = """\
    - name: core
      host: 192.0.2.10
      match: [192.0.2.10, 192.0.2.11]
      trusted: true
      outbound: true
      mobile_core: true
      handset_prefix: "*88"
      handset_header: "X-Handset: terminate"
"""
IC = """\
    - name: ic
      host: 198.51.100.1
      port: 5080
      match: [198.51.100.0/28]
      trusted: false
      country_code: "46"
"""
TENANT = """\
tenants:
  - id: acme
    name: Acme
    domain: acme.example
    users:
      - id: anna
        name: Anna
        number: "+358401110001"
        extension: "101"
        pin: "480264"
        mobile: ring_with_devices
        devices: [{id: acme-anna-soft}, {id: acme-anna-desk}]
      - id: bo
        name: Bo
        number: "+358401110002"
        extension: "102"
        pin: "480264"
        devices: [{id: acme-bo-soft}]
"""


PLAIN = TENANT.replace("        mobile: ring_with_devices\n", "")


def problems(platform: str, tenants: str = "") -> list[Problem]:
    Path("p.yaml").write_text(platform, encoding="utf-8")
    names = ["p.yaml"]
    if tenants:
        Path("t.yaml").write_text(tenants, encoding="utf-8")
        names.append("t.yaml")
    return validate_files(names)


def load(platform: str, tenants: str = TENANT) -> Config:
    Path("p.yaml").write_text(platform, encoding="utf-8")
    Path("t.yaml").write_text(tenants, encoding="utf-8")
    return load_config(["p.yaml", "t.yaml"])


def find(found: list[Problem], line: int | None, key: str, *words: str, file: str = "p.yaml") -> Problem:
    hits = [p for p in found if (p.file, p.key) == (file, key) and (line is None or p.line == line)
            and all(w in p.message for w in words)]
    assert len(hits) == 1, "\n".join(map(str, found)) or "no problems"
    return hits[0]


TWO = "platform:\n  trunks:\n" + CORE + IC


# --- the YAML ----------------------------------------------------------------------------------------

def test_two_trunks_are_read_with_their_trust_country_and_marking() -> None:
    platform = load(TWO).platform
    core, ic = platform.trunks
    assert (core.name, core.trusted, core.country_code, core.outbound, core.mobile_core) == (
        "core", True, "358", True, True)
    assert (core.handset_prefix, core.handset_header) == ("*88", ("X-Handset", "terminate"))
    assert (ic.name, ic.trusted, ic.country_code, ic.outbound, ic.port) == ("ic", False, "46", False, 5080)
    assert ic.match == ("198.51.100.0/28",)
    assert platform.carrier == core and platform.mobile_core == core
    assert platform.trunk("ic") == ic and platform.trunk("nope") is None


def test_the_old_carrier_key_is_one_trusted_outbound_trunk_named_carrier() -> None:
    platform = load("platform:\n  carrier: {host: 192.0.2.7, match: [192.0.2.7]}\n", PLAIN).platform
    [carrier] = platform.trunks
    assert (carrier.name, carrier.trusted, carrier.outbound, carrier.country_code) == (
        "carrier", True, True, "358")
    assert platform.carrier == carrier and platform.mobile_core is None


@pytest.mark.parametrize("net", ["0.0.0.0/0", "::/0", "10.0.0.1/0"])
def test_a_match_of_every_address_is_refused(net: str) -> None:
    found = problems(f"platform:\n  carrier:\n    host: h\n    match: ['{net}']\n")
    find(found, 4, "platform.carrier.match[0]", "every address")
    found = problems(TWO.replace("[198.51.100.0/28]", f"['{net}']"))
    find(found, None, "platform.trunks[1].match[0]", "every address")


def test_match_is_required() -> None:
    found = problems("platform:\n  carrier:\n    host: h\n")
    find(found, None, "platform.carrier.match", "missing", "source addresses")
    found = problems("platform:\n  carrier:\n    host: h\n    match: []\n")
    find(found, 4, "platform.carrier.match", "at least one")
    found = problems(TWO.replace("      match: [198.51.100.0/28]\n", ""))
    find(found, None, "platform.trunks[1].match", "missing")


def test_carrier_and_trunks_at_once_is_an_error() -> None:
    found = problems("platform:\n  carrier: {host: h, match: [192.0.2.7]}\n  trunks:\n" + IC)
    find(found, 3, "platform.trunks", "either carrier", "not both")


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (("name: ic", "name: Ic"), "platform.trunks[1].name", "not allowed"),
        (("name: ic", "name: vipbx-ic"), "platform.trunks[1].name", "reserved"),
        (("name: ic", "name: global"), "platform.trunks[1].name", "reserved"),
        (("name: ic", "name: core"), "platform.trunks[1].name", "more than once"),
        (("trusted: false", "trusted: 'no'"), "platform.trunks[1].trusted", "true or false"),
        (("      trusted: false\n", ""), "platform.trunks[1].trusted", "missing"),
        (('country_code: "46"', 'country_code: "046"'), "platform.trunks[1].country_code", "1 to 3 digits"),
        (("[198.51.100.0/28]", "[192.0.2.0/24]"), "platform.trunks[1].match[0]", "overlaps"),
        (("port: 5080", "port: 5080\n      handset_prefix: '1'"), "platform.trunks[1].handset_prefix",
         "mobile_core: true"),
        (("handset_prefix: \"*88\"", "handset_prefix: '8;x'"), "platform.trunks[0].handset_prefix",
         "not allowed"),
        (("X-Handset: terminate", "X-Handset: a,b"), "platform.trunks[0].handset_header", "not allowed"),
        (("X-Handset: terminate", "X-Handset: ${SHELL}"), "platform.trunks[0].handset_header", "not allowed"),
        (("trusted: true", "trusted: false"), "platform.trunks[0].mobile_core", "must be trusted"),
        (("      outbound: true\n", ""), "platform.trunks", "outbound: true"),
        (("trusted: false", "trusted: false\n      outbound: true"), "platform.trunks[1].outbound",
         "only one trunk"),
        (("trusted: false", "trusted: false\n      mobile_core: true\n      handset_prefix: '9'"),
         "platform.trunks[1].mobile_core", "only one trunk"),
    ],
)  # fmt: skip
def test_trunk_rules(change: tuple[str, str], key: str, words: str) -> None:
    text = TWO.replace(*change)
    assert text != TWO
    find(problems(text), None, key, words)


def test_a_mobile_core_needs_a_marking() -> None:
    text = TWO.replace('      handset_prefix: "*88"\n', "").replace(
        '      handset_header: "X-Handset: terminate"\n', "")
    find(problems(text), None, "platform.trunks[0].mobile_core", "handset_prefix or handset_header")


def test_outbound_false_on_every_trunk_means_none() -> None:
    text = TWO.replace("outbound: true", "outbound: false").replace("trusted: false", "trusted: false\n      outbound: false")
    assert load(text).platform.carrier is None


def test_a_lone_trunk_is_outbound_unless_it_says_otherwise() -> None:
    assert load("platform:\n  trunks:\n" + IC, PLAIN).platform.carrier is not None
    ic = IC.replace("trusted: false", "trusted: false\n      outbound: false")
    assert load("platform:\n  trunks:\n" + ic, PLAIN).platform.carrier is None


def test_a_device_may_not_take_a_trunks_name() -> None:
    found = problems(TWO, TENANT.replace("acme-bo-soft", "ic"))
    find(found, None, "tenants[acme].users[bo].devices[ic].id", "name of a trunk", file="t.yaml")


def test_mobile_needs_a_mobile_core_and_a_known_choice() -> None:
    found = problems("platform:\n  trunks:\n" + IC, TENANT)
    find(found, None, "tenants[acme].users[anna].mobile", "mobile_core", file="t.yaml")
    found = problems(TWO, TENANT.replace("mobile: ring_with_devices", "mobile: always"))
    find(found, None, "tenants[acme].users[anna].mobile", "ring_with_devices", file="t.yaml")
    users = load(TWO).tenants[0].users
    assert [u.rings_mobile for u in users] == [True, False]


# --- what is rendered ---------------------------------------------------------------------------------

def rendered(config: Config, tmp: Path) -> dict[str, str]:
    files = render_config(config, SecretStore(tmp / "secrets.json"))
    assert confcheck.check(files) == []
    return files


def pjsip_sections(text: str) -> dict[str, list[confcheck.Section]]:
    parsed, errors = confcheck.parse(text, "pjsip.conf")
    assert errors == []
    out: dict[str, list[confcheck.Section]] = {}
    for section in parsed:
        out.setdefault(section.name, []).append(section)
    return out


def values(section: confcheck.Section, key: str) -> list[str]:
    return [v for k, v, _ in section.settings if k == key]


def test_each_trunk_has_its_endpoint_with_where_the_call_came_from(in_tmp: Path) -> None:
    pjsip = pjsip_sections(rendered(load(TWO), in_tmp)["pjsip.conf"])
    for name, trusted, country, matches in (("core", "1", "358", ["192.0.2.10", "192.0.2.11"]),
                                            ("ic", "0", "46", ["198.51.100.0/28"])):
        endpoint, aor, identify = pjsip[name]
        assert endpoint.get("type") == "endpoint" and endpoint.get("context") == "vipbx-from-carrier"
        assert values(endpoint, "set_var") == [f"VIPBX_TRUNK={name}", f"VIPBX_TRUSTED={trusted}",
                                               f"VIPBX_COUNTRY={country}"]
        assert endpoint.get("trust_id_inbound") == ("yes" if trusted == "1" else "no")
        assert aor.get("type") == "aor" and identify.get("type") == "identify"
        assert identify.get("endpoint") == name and values(identify, "match") == matches
    assert pjsip["ic"][1].get("contact") == "sip:198.51.100.1:5080"
    assert "carrier" not in pjsip


def test_outbound_calls_leave_through_the_outbound_trunk(in_tmp: Path) -> None:
    dialplan = rendered(load(TWO), in_tmp)["extensions.conf"]
    assert "Dial(PJSIP/${EXTEN}@core," in dialplan and "@carrier" not in dialplan


def test_the_handset_rings_with_the_devices_marked_and_only_for_users_who_want_it(in_tmp: Path) -> None:
    dialplan = rendered(load(TWO), in_tmp)["extensions.conf"]
    anna = [line for line in dialplan.splitlines() if line.startswith("exten => +358401110001,1,Gosub(vipbx-call-user")]
    dial = "PJSIP/acme-anna-soft&PJSIP/acme-anna-desk&PJSIP/*88+358401110001@core"
    call = f"Gosub(vipbx-call-user,s,1(acme,anna,{dial},1,358401110001,101))"
    assert anna == [f"exten => +358401110001,1,{call}"]
    bo = [line for line in dialplan.splitlines() if line.startswith("exten => +358401110002,1,Gosub(vipbx-call-user")]
    assert "@core" not in bo[0]
    # The hint (is the user in a call?) is the devices alone.
    assert "exten => 101,hint,PJSIP/acme-anna-soft&PJSIP/acme-anna-desk,CustomPresence:acme+anna" in dialplan
    # The pre-dial handler marks only the leg to the core and lets its user transfer.
    assert "b(vipbx-callee^s^1(${ARG1}))" in dialplan
    handler = dialplan.split("[vipbx-callee]\n", 1)[1].split("\n\n", 1)[0]
    assert 'GotoIf($["${CHANNEL(endpoint)}" != "core"]?done)' in handler
    assert "Set(PJSIP_HEADER(add,X-Handset)=terminate)" in handler
    assert "Set(TRANSFER_CONTEXT=vipbx-xfer-${ARG1})" in handler


def test_without_a_mobile_core_nothing_of_it_is_rendered(in_tmp: Path) -> None:
    dialplan = rendered(load("platform:\n  trunks:\n" + IC, PLAIN), in_tmp)["extensions.conf"]
    assert "vipbx-callee" not in dialplan and "@core" not in dialplan


def test_trunk_calls_may_dial_the_feature_codes_and_national_numbers(in_tmp: Path) -> None:
    dialplan = rendered(load(TWO), in_tmp)["extensions.conf"]
    trunk = dialplan.split("[vipbx-from-carrier]\n", 1)[1].split("\n\n", 1)[0]
    for line in ("exten => 987,1,Set(VIPBX_CODE_ARG=)", "exten => _987X.,1,",
                 "exten => *43#,1,Goto(vipbx-feature-code,callwaiting-on,1)",
                 "exten => _0[1-9]X.,1,Goto(vipbx-public,+${VIPBX_COUNTRY}${EXTEN:1},1)"):
        assert line in trunk, line


def test_the_trunk_is_a_channel_variable_the_application_sees(in_tmp: Path) -> None:
    ari = rendered(load(TWO), in_tmp)["ari.conf"]
    assert "channelvars=VIPBX_TENANT,VIPBX_USER,VIPBX_TRUNK" in ari


# --- where a call came from -----------------------------------------------------------------------------

SWEDE = """\
  - id: svea
    name: Svea
    domain: svea.example
    country_code: "46"
    users:
      - {id: sven, name: Sven, number: "+46401110001", extension: "101", pin: "480264"}
"""


def test_origin_trusts_only_a_trusted_trunk_and_reads_national_numbers_in_its_country() -> None:
    # The Swedish tenant first: "any tenant" would read 0401110001 as Sven's.
    config = load(TWO, TENANT.replace("tenants:\n", "tenants:\n" + SWEDE))
    anna, sven = config.find_user("acme", "anna"), config.find_user("svea", "sven")
    core = Origin.of(config, {"VIPBX_TRUNK": "core"})
    ic = Origin.of(config, {"VIPBX_TRUNK": "ic"})
    nowhere = Origin.of(config, {})
    assert (core.trusted, ic.trusted, nowhere.trusted) == (True, False, False)
    assert core.caller(config, "0401110001") == anna
    assert core.caller(config, "+46401110001") == sven
    assert ic.caller(config, "+358401110001") is None  # caller ID from an interconnect: nobody
    assert nowhere.caller(config, "+358401110001") is None
    assert ic.find(config, "0401110001") == sven  # a typed or diverted number, in Sweden
    assert core.find(config, "0401110001") == anna
    assert nowhere.find(config, "0401110001") is None and nowhere.country_code is None
    # An unknown trunk name (a stale variable) is no trunk at all.
    assert Origin.of(config, {"VIPBX_TRUNK": "gone"}) == nowhere
    # A device is its own user whatever the caller ID, in its tenant's country.
    device = Origin.of(config, {"VIPBX_TENANT": "svea", "VIPBX_USER": "sven", "VIPBX_TRUNK": "core"})
    assert device.caller(config, "+358401110001") == sven and device.country_code == "46"


def test_the_voicemail_fallback_reads_a_national_diverted_number_in_the_trunks_country(in_tmp: Path) -> None:
    dialplan = rendered(load(TWO, TENANT.replace("tenants:\n", "tenants:\n" + SWEDE)), in_tmp)["extensions.conf"]
    number = dialplan.split("[vipbx-voicemail-number]\n", 1)[1].split("\n\n", 1)[0]
    assert ('ExecIf($["${VIPBX_DIVERTED:0:1}" = "0" & "${VIPBX_COUNTRY}" != ""]?'
            "Set(VIPBX_DIVERTED=+${VIPBX_COUNTRY}${VIPBX_DIVERTED:1}))") in number
    # No national entries of "whichever tenant": 0401110001 was Anna's and Sven's at once.
    fallback = dialplan.split("[vipbx-vm-deposit-fallback]\n", 1)[1].split("\n\n", 1)[0]
    assert "exten => 0401110001," not in fallback
    assert "exten => +46401110001,1,VoiceMail(46401110001@svea,u)" in fallback
