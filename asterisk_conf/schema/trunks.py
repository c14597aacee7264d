"""The platform's SIP trunks: `trunks:` (a list, each trusted or not) or the older single `carrier:`
(one trusted trunk named "carrier" that carries outbound calls).

A trunk recognises its calls by source address, so `match` is required and may never cover every
address (a /0 would make any sender on the network the trunk, and a trusted trunk's caller ID
opens mailboxes). Two trunks may not match the same address: which one Asterisk picks would be
chance, and an untrusted interconnect could be taken for the trusted mobile core.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc, list_items
from asterisk_conf.values import boolean, choice, host, ip_network, pattern, port
from asterisk_conf.yamlsource import show
from base.model import CARRIER, Trunk

CODECS = ("alaw", "ulaw", "g722", "opus", "gsm")
TRUNK_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
# pjsip.conf sections the renderer writes itself, and what Asterisk treats specially.
RESERVED_TRUNK_NAMES = ("global", "system", "anonymous")
RESERVED_PREFIX = "vipbx"
COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
HANDSET_PREFIX = re.compile(r"[0-9*#]{1,10}")
# "Name: value": a header name and a plain token, nothing a dialplan line would read as syntax.
HANDSET_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]{0,39}): ?([A-Za-z0-9._:+/-]{1,64})")
CARRIER_KEYS = ("host", "port", "match", "codecs", "country_code")
TRUNK_KEYS = (
    "name", "host", "port", "match", "codecs", "trusted", "country_code", "outbound",
    "mobile_core", "handset_prefix", "handset_header",
)  # fmt: skip
DEFAULT_COUNTRY = Trunk(name="", host="").country_code

trunk_name = pattern(
    TRUNK_NAME, "lowercase letters, digits and '-', starting with a letter, at most 31", "core"
)
country_code = pattern(COUNTRY_CODE, "1 to 3 digits, not starting with 0", '"358"')
handset_prefix = pattern(HANDSET_PREFIX, "1 to 10 of the keys 0-9, * and #", '"*88"')


def handset_header(chk: Checker, loc: Loc, value: Any) -> tuple[str, str] | None:
    got = pattern(HANDSET_HEADER, "a header name, ': ' and a plain value (letters, digits, "
                  "'.', '_', ':', '+', '/', '-')", '"X-Handset: 1"')(chk, loc, value)
    found = HANDSET_HEADER.fullmatch(got)
    return (found.group(1), found.group(2)) if found else None


def trunk_source(
    chk: Checker, f: Fields, carrier_value: bool, trunks_value: bool
) -> tuple[Trunk, ...]:
    """The platform's trunks from whichever of `carrier` and `trunks` is given (not both)."""
    if carrier_value and trunks_value:
        chk.report(f.loc / "trunks", "give either carrier (one trusted trunk) or trunks, not both")
        return ()
    if carrier_value:
        return (f.get("carrier", carrier, Trunk(CARRIER, "")),)
    if trunks_value:
        return f.get("trunks", trunks, ())
    return ()


def carrier(chk: Checker, loc: Loc, value: Any) -> Trunk:
    """The older single trunk: trusted, and the way out for calls to outside numbers."""
    f = Fields(chk, loc, value, CARRIER_KEYS, "carrier")
    return Trunk(
        name=CARRIER,
        host=f.get("host", host, "", missing="missing (required: an IP address or DNS name)"),
        port=f.get("port", port, 5060),
        match=_match(chk, f),
        codecs=f.get("codecs", codecs, Trunk(CARRIER, "").codecs),
        trusted=True,
        country_code=f.get("country_code", country_code, DEFAULT_COUNTRY) or DEFAULT_COUNTRY,
        outbound=True,
    )


def trunks(chk: Checker, loc: Loc, value: Any) -> tuple[Trunk, ...]:
    items = list_items(chk, loc, value, "trunks")
    if isinstance(value, list) and not value:
        chk.report(loc, "must list at least one trunk (or leave trunks out)")
    found: list[tuple[Trunk, Loc, bool | None]] = []
    for item, item_loc in items:
        found.append(_trunk(chk, item_loc, item))
    _check_names(chk, found)
    _check_overlap(chk, found)
    outbound = _outbound(chk, loc, found)
    cores = [(t, lo) for t, lo, _ in found if t.mobile_core]
    for _, core_loc in cores[1:]:
        chk.report(core_loc / "mobile_core", f"only one trunk may be the mobile core; "
                   f"{cores[0][0].name!r} already is")
    return tuple(_with_outbound(t, t.name == outbound) for t, _, _ in found)


def _trunk(chk: Checker, loc: Loc, value: Any) -> tuple[Trunk, Loc, bool | None]:
    f = Fields(chk, loc, value, TRUNK_KEYS, "a trunk", "{name: core, host: 192.0.2.10, ...}")
    name = f.get("name", trunk_name, "", missing="missing (required)")
    if name in RESERVED_TRUNK_NAMES or name.startswith(RESERVED_PREFIX):
        chk.report(loc / "name", f"{name!r} is reserved (names used by the platform itself: "
                   f"{', '.join(RESERVED_TRUNK_NAMES)} and anything starting {RESERVED_PREFIX!r})")
        name = ""
    trusted = f.get("trusted", boolean, None)
    if trusted is None and f.is_mapping:
        chk.report(loc / "trusted", "missing (required: true when the trunk's caller ID may "
                   "identify users, as a mobile core's does; false for interconnects)")
    core = f.get("mobile_core", boolean, False)
    prefix = f.get("handset_prefix", handset_prefix, "")
    header = f.get("handset_header", handset_header, None)
    if core and not trusted and trusted is not None:
        chk.report(loc / "mobile_core", "a mobile core must be trusted: true (its users dial "
                   "feature codes and their caller ID names them)")
    if core and not (f.has("handset_prefix") or f.has("handset_header")):
        chk.report(loc / "mobile_core", "a mobile core needs handset_prefix or handset_header: "
                   "how the core knows to ring the handset instead of sending the call back")
    for key in ("handset_prefix", "handset_header"):
        if f.has(key) and not core:
            chk.report(loc / key, "only for a trunk with mobile_core: true")
    outbound = f.get("outbound", boolean, None)
    made = Trunk(
        name=name,
        host=f.get("host", host, "", missing="missing (required: an IP address or DNS name)"),
        port=f.get("port", port, 5060),
        match=_match(chk, f),
        codecs=f.get("codecs", codecs, Trunk(name, "").codecs),
        trusted=bool(trusted),
        country_code=f.get("country_code", country_code, DEFAULT_COUNTRY) or DEFAULT_COUNTRY,
        mobile_core=core,
        handset_prefix=prefix,
        handset_header=header,
    )
    return made, loc, outbound


def _match(chk: Checker, f: Fields) -> tuple[str, ...]:
    """The source addresses: required, and never every address."""
    if not f.has("match") and f.is_mapping:
        chk.report(f.loc / "match", "missing (required: the trunk's source addresses, e.g. "
                   "[192.0.2.10]; calls from them are taken as this trunk's)")
        return ()
    items = f.items("match", "IP addresses or networks")
    if f.has("match") and not items and isinstance(f.data.get("match"), list):
        chk.report(f.loc / "match", "must list at least one IP address or network")
    nets: list[str] = []
    for item, item_loc in items:
        net = ip_network(chk, item_loc, item)
        if net and ipaddress.ip_network(net).prefixlen == 0:
            chk.report(item_loc, f"{show(item)} is every address: any sender on the network "
                       "would be taken as this trunk (give its own addresses)")
            net = ""
        nets.append(net)
    return tuple(net for net in nets if net)


def _check_names(chk: Checker, found: list[tuple[Trunk, Loc, bool | None]]) -> None:
    seen: dict[str, Loc] = {}
    for trunk, loc, _ in found:
        if trunk.name in seen:
            chk.report(loc / "name", f"trunk name {trunk.name!r} is used more than once; also "
                       f"{seen[trunk.name].describe()}")
        elif trunk.name:
            seen[trunk.name] = loc / "name"


def _check_overlap(chk: Checker, found: list[tuple[Trunk, Loc, bool | None]]) -> None:
    nets = [(ipaddress.ip_network(net), trunk, loc / "match" / index)
            for trunk, loc, _ in found for index, net in enumerate(trunk.match)]
    for i, (net, trunk, loc) in enumerate(nets):
        clash = next(((other, other_trunk) for other, other_trunk, _ in nets[:i]
                      if other_trunk is not trunk and net.version == other.version
                      and net.overlaps(other)), None)  # type: ignore[arg-type]
        if clash is not None:
            chk.report(loc, f"{net} overlaps {clash[0]} of trunk {clash[1].name!r}: a call "
                       "from there could be taken for either trunk")


def _outbound(chk: Checker, loc: Loc, found: list[tuple[Trunk, Loc, bool | None]]) -> str:
    """The name of the trunk calls to outside numbers leave through ("" for none)."""
    marked = [(t, lo) for t, lo, out in found if out]
    for trunk, trunk_loc in marked[1:]:
        chk.report(trunk_loc / "outbound", f"only one trunk may be outbound; "
                   f"{marked[0][0].name!r} already is")
    if marked:
        return marked[0][0].name
    if len(found) == 1 and found[0][2] is None:
        return found[0][0].name  # a lone trunk carries outbound calls unless it says otherwise
    if len(found) > 1 and not all(out is False for _, _, out in found):
        chk.report(loc, "several trunks and none has outbound: true: say which one carries "
                   "calls to outside numbers (or outbound: false on each for none)")
    return ""


def _with_outbound(trunk: Trunk, outbound: bool) -> Trunk:
    return trunk if trunk.outbound == outbound else replace(trunk, outbound=outbound)


def codecs(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    found: list[str] = []
    items = list_items(chk, loc, value, "codecs")
    if isinstance(value, list) and not value:
        chk.report(loc, f"must list at least one codec of {', '.join(CODECS)}")
    for item, item_loc in items:
        name = choice(CODECS)(chk, item_loc, item)
        if name in found:
            chk.report(item_loc, f"codec {name!r} is listed twice")
        elif name:
            found.append(name)
    return tuple(found)
