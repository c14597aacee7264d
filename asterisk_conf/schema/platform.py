"""The platform section: numbers, language, feature codes, listeners and RTP ports, the trunks
(`trunks.py`)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc
from asterisk_conf.values import (
    INVALID_NUMBER,
    boolean,
    choice,
    e164,
    integer,
    ip_address,
    ip_network,
    pattern,
    port,
)
from base.model import (
    LANGUAGES,
    MAX_PIN_DIGITS,
    MIN_PIN_DIGITS,
    FeatureCodes,
    Listener,
    Platform,
)

from .cluster import edge_apart, nodes, sip_edge
from .metrics import metrics
from .notifications import notifications
from .state_database import state_database
from .trunks import CODECS, codecs, trunk_source
from .web import web

__all__ = ["CODECS", "codecs", "platform"]

PLATFORM_KEYS = (
    "voicemail_number", "activity_number", "conference_number", "default_language", "feature_codes", "no_answer_seconds",
    "sip", "rtp", "http", "ami", "agi", "ari_app", "carrier", "trunks", "notifications",
    "state_database", "pin_digits", "web", "metrics", "nodes", "sip_edge",
)  # fmt: skip
LISTENERS = ("sip", "http", "ami", "agi")
# Control interfaces: whoever reaches them controls calls (ARI, AMI) or routing (FastAGI).
CONTROL_LISTENERS = ("http", "ami", "agi")
FEATURE_CODE = re.compile(r"[0-9*#]{1,8}")
ARI_APP = re.compile(r"[a-z][a-z0-9_-]{0,30}")

# The shortest PIN allowed; a tenant may set its own (schema/tenant.py).
pin_digits = integer(MIN_PIN_DIGITS, MAX_PIN_DIGITS)
feature_code = pattern(FEATURE_CODE, "1 to 8 of the keys 0-9, * and #", '"*43#"')
ari_app = pattern(
    ARI_APP, "lowercase letters, digits, '_' and '-', starting with a letter", "vipbx"
)


def platform(chk: Checker, loc: Loc | None, value: Any) -> Platform:
    default = Platform()
    if loc is None:
        return default
    f = Fields(chk, loc, value, PLATFORM_KEYS, "platform")
    ports: dict[str, Listener] = {
        name: f.get(name, listener(getattr(default, name), name), getattr(default, name))
        for name in LISTENERS
    }
    rtp_start, rtp_end = f.get("rtp", rtp, (default.rtp_start, default.rtp_end))
    web_settings = f.get("web", web, default.web)
    metrics_settings = f.get("metrics", metrics, default.metrics)
    served = {"web": web_settings, "metrics": metrics_settings}
    own = {name: settings.listener for name, settings in served.items() if settings.enabled}
    _check_listeners(chk, f, {**ports, **own}, rtp_start, rtp_end)
    return Platform(
        voicemail_number=f.get("voicemail_number", e164, default.voicemail_number),
        activity_number=f.get("activity_number", e164, default.activity_number),
        conference_number=f.get("conference_number", e164, default.conference_number),
        default_language=f.get("default_language", choice(LANGUAGES), default.default_language),
        feature_codes=f.get("feature_codes", feature_codes, default.feature_codes),
        rtp_start=rtp_start,
        rtp_end=rtp_end,
        ari_app=f.get("ari_app", ari_app, default.ari_app),
        trunks=trunk_source(chk, f, f.has("carrier"), f.has("trunks")),
        no_answer_seconds=f.get("no_answer_seconds", integer(5, 120), default.no_answer_seconds),
        notifications=f.get("notifications", notifications, default.notifications),
        state_database=f.get("state_database", state_database, default.state_database),
        pin_digits=f.get("pin_digits", pin_digits, default.pin_digits),
        web=web_settings,
        metrics=metrics_settings,
        **_cluster(chk, f),
        **ports,
    )


def _cluster(chk: Checker, f: Fields) -> dict[str, Any]:
    """`nodes` and `sip_edge` come together: nodes without an edge (or the reverse) is an error."""
    found = f.get("nodes", nodes, ())
    edge = f.get("sip_edge", sip_edge, None)
    if f.has("nodes") and not f.has("sip_edge"):
        chk.report(f.loc / "nodes", "nodes need a sip_edge: (the Kamailio address trunks and devices talk to)")
    if f.has("sip_edge") and not f.has("nodes"):
        chk.report(f.loc / "sip_edge", "a sip_edge needs nodes: (the Asterisk nodes behind it)")
    if edge is not None:
        edge_apart(chk, f.loc / "sip_edge", edge, found)
    return {"nodes": found, "sip_edge": edge}


def _check_listeners(
    chk: Checker, f: Fields, ports: dict[str, Listener], rtp_start: int, rtp_end: int
) -> None:
    def overlap(a: Listener, b: Listener) -> bool:
        if a.port != b.port or a.port == INVALID_NUMBER or not a.bind or not b.bind:
            return False
        # A wildcard bind (0.0.0.0, ::) takes the port on every address.
        wildcard = any(ipaddress.ip_address(x.bind).is_unspecified for x in (a, b))
        return a.bind == b.bind or wildcard

    names = list(ports)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if overlap(ports[first], ports[second]):
                at, other = _written(f, first, second)
                where = f"{ports[at].bind}:{ports[at].port}"
                chk.report(f.loc / at, f"{where} is also used by {other} ({ports[other].bind})")
    if rtp_start <= ports["sip"].port <= rtp_end:
        at, _ = _written(f, "rtp", "sip")
        sip = f"SIP port {ports['sip'].port}"
        chk.report(f.loc / at, f"{sip} is inside the RTP port range {rtp_start}-{rtp_end}")


def listener(default: Listener, name: str = "sip") -> Callable[[Checker, Loc, Any], Listener]:
    control = name in CONTROL_LISTENERS
    keys = ("bind", "port", "allow_remote", "permit") if control else ("bind", "port")

    def check(chk: Checker, loc: Loc, value: Any) -> Listener:
        f = Fields(chk, loc, value, keys, "a listener")
        bind = f.get("bind", ip_address, default.bind)
        result = Listener(bind, f.get("port", port, default.port))
        if not control:
            return result
        allow_remote = f.get("allow_remote", boolean, False)
        permit = tuple(
            net for item, item_loc in f.items("permit", "IP networks")
            if (net := _permit_network(chk, item_loc, item))
        )
        _check_exposure(chk, f, name, bind, allow_remote, permit)
        return Listener(result.bind, result.port, allow_remote, permit)

    return check


def served_listener(chk: Checker, f: Fields, name: str, default: Listener) -> Listener:
    """The listener of a server of ours (`web`, `metrics`): `bind`, `port`, and `allow_remote` with
    `permit` under the control listeners' rule."""
    bind = f.get("bind", ip_address, default.bind)
    allow_remote = f.get("allow_remote", boolean, False)
    permit = tuple(net for item, item_loc in f.items("permit", "IP networks")
                   if (net := _permit_network(chk, item_loc, item)))
    _check_exposure(chk, f, name, bind, allow_remote, permit)
    return Listener(bind, f.get("port", port, default.port), allow_remote, permit)


def _permit_network(chk: Checker, loc: Loc, value: Any) -> str:
    network = ip_network(chk, loc, value)
    if network and ipaddress.ip_network(network, strict=False).prefixlen == 0:
        chk.report(loc, f"{network} admits every address: list the networks that may connect")
        return ""
    return network


def _check_exposure(
    chk: Checker, f: Fields, name: str, bind: str, allow_remote: bool, permit: tuple[str, ...]
) -> None:
    """A control listener stays on loopback unless the file says who else may connect."""
    if name == "http" and allow_remote:
        chk.report(
            f.loc / "allow_remote",
            "Asterisk's HTTP server (ARI) has no address filter: keep it on loopback and put a "
            "TLS reverse proxy with its own access rules in front (see docs/security.md)",
        )
        return
    if allow_remote and not f.has("permit"):
        chk.report(f.loc / "allow_remote", "needs a permit: list of the networks that may connect")
    elif allow_remote and f.data.get("permit") == []:
        chk.report(f.loc / "permit", "must list at least one network that may connect")
    if f.has("permit") and not allow_remote:
        chk.report(f.loc / "permit", "has no effect without allow_remote: true")
    if bind and not ipaddress.ip_address(bind).is_loopback and not allow_remote:
        what = {"http": "ARI", "ami": "AMI", "agi": "FastAGI", "web": "the home page", "metrics": "the metrics"}[name]
        chk.report(
            f.loc / "bind",
            f"{bind} exposes {what} to other hosts: bind to 127.0.0.1"
            + (" behind a TLS reverse proxy" if name == "web" else "")
            + ("" if name == "http" else ", or set allow_remote: true with a permit: list"),
        )


def feature_codes(chk: Checker, loc: Loc, value: Any) -> FeatureCodes:
    names = [item.name for item in fields(FeatureCodes)]
    f = Fields(chk, loc, value, names, "feature_codes")
    defaults = FeatureCodes()
    codes = {name: f.get(name, feature_code, getattr(defaults, name)) for name in names}
    # Distinct and prefix-free: otherwise the dialplan could not tell which code was dialled.
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = codes[first], codes[second]
            if not a or not b:
                continue
            if a == b:
                at, other = _written(f, first, second)
                chk.report(loc / at, f"{b!r} is the same code as {other}")
            elif b.startswith(a) or a.startswith(b):
                short, long = (first, second) if len(a) < len(b) else (second, first)
                at, _ = _written(f, short, long)
                chk.report(
                    loc / at,
                    f"{codes[short]!r} ({short}) is a prefix of {codes[long]!r} ({long})",
                )
    return FeatureCodes(**{name: code or getattr(defaults, name) for name, code in codes.items()})


def _written(f: Fields, first: str, second: str) -> tuple[str, str]:
    """Of two clashing keys, the one to report (one the file has, the later if both) and the
    other: a default value has no line of its own."""
    if f.has(second) or not f.has(first):
        return second, first
    return first, second


def rtp(chk: Checker, loc: Loc, value: Any) -> tuple[int, int]:
    f = Fields(chk, loc, value, ("start", "end"), "rtp")
    default = Platform()
    start = f.get("start", port, default.rtp_start)
    end = f.get("end", port, default.rtp_end)
    if start == INVALID_NUMBER or end == INVALID_NUMBER:
        return start, end
    if start % 2:
        chk.report(
            loc / "start", f"must be even (RTP uses even ports, RTCP the odd ones), not {start}"
        )
    if start >= end:
        chk.report(loc / "end", f"must be greater than start ({start}), not {end}")
    return start, end
