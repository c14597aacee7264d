"""A tenant and its parts: users, devices, groups and tenant numbers, with the values that must
be unique on the platform or in the tenant."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc, Uniques, list_items, string_value
from asterisk_conf.values import (
    choice,
    domain,
    e164,
    email,
    integer,
    optional_text,
    pattern,
    text,
)
from asterisk_conf.yamlsource import show
from base.model import (
    DEFAULT_ACTIVITIES,
    DEFAULT_PIN_DIGITS,
    LANGUAGES,
    MAX_PIN_DIGITS,
    MIN_PIN_DIGITS,
    MOBILE_CHOICES,
    MOBILE_OFF,
    NO_VOICEMAIL_GROUP,
    RECORDING_ALLOWED,
    RECORDING_CHOICES,
    Device,
    FeatureCodes,
    Platform,
    Tenant,
    TenantNumber,
    User,
)
from base.numbers import is_e164
from base.outbound import OutboundPolicy

from .activities import activities
from .outbound import check_country_has_deny_list, outbound
from .platform import codecs, pin_digits
from .trunks import country_code

TENANT_ID = re.compile(r"[a-z][a-z0-9-]{0,30}")
USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
EXTENSION = re.compile(r"[1-9][0-9]{1,5}")
PIN = re.compile(r"[0-9]+")
# pjsip.conf sections the renderer writes itself; "anonymous" would take unauthenticated calls.
RESERVED_DEVICE_IDS = ("carrier", "global", "system", "anonymous")
RESERVED_DEVICE_PREFIX = "vipbx"
# voicemail.conf sections: a tenant's voicemail context must not be one of them.
RESERVED_TENANT_IDS = ("general", "zonemessages", "default")
TENANT_KEYS = (
    "id", "name", "domain", "country_code", "max_message_seconds", "groups", "numbers", "users",
    "outbound", "forwarding", "activities", "pin_digits", "call_recording", "node",
)  # fmt: skip
USER_KEYS = (
    "id", "name", "number", "extension", "email", "pin", "language", "groups", "devices", "role",
    "mobile",
)  # fmt: skip

tenant_id = pattern(
    TENANT_ID, "lowercase letters, digits and '-', starting with a letter, at most 31", "acme"
)
user_id = pattern(
    USER_ID, "lowercase letters, digits, '.', '_' and '-', at most 63", "anna.virtanen"
)
device_id = pattern(
    DEVICE_ID, "lowercase letters, digits, '_' and '-', at most 63", "acme-anna-soft"
)
extension = pattern(EXTENSION, "2 to 6 digits, not starting with 0", '"101"')
_language = choice(LANGUAGES)  # made once: the user checker uses it for every user
_mobile_choice = choice(MOBILE_CHOICES)
_recording_choice = choice(RECORDING_CHOICES)


@dataclass
class Scope:
    """What a tenant's parts are checked against."""

    platform: Platform
    uniques: Uniques
    pin_digits: int = DEFAULT_PIN_DIGITS  # the tenant's shortest PIN, while its users are read

    @cached_property
    def trunk_names(self) -> frozenset[str]:
        """SIP endpoint names the trunks take: no device may have one."""
        return frozenset(trunk.name for trunk in self.platform.trunks)


def tenant(chk: Checker, loc: Loc, value: Any, scope: Scope) -> Tenant:
    f = Fields(chk, loc, value, TENANT_KEYS, "a tenant")
    ident = f.get("id", tenant_id, "", missing="missing (required)")
    if ident in RESERVED_TENANT_IDS:
        chk.report(loc / "id", f"{ident!r} is reserved (an Asterisk voicemail.conf section)")
        ident = ""
    scope.uniques.add_at("tenant id", "", ident, loc, "id")
    name = f.get("name", text, "", missing="missing (required)")
    dom = f.get("domain", domain, "", missing="missing (required: the tenant's DNS domain)")
    scope.uniques.add_at("domain", "", dom, loc, "domain")
    builtin: tuple[str, ...] = (NO_VOICEMAIL_GROUP,)
    groups = f.get("groups", tenant_groups, builtin)
    own_pin_digits = f.get("pin_digits", pin_digits, None)
    shortest = own_pin_digits or scope.platform.pin_digits
    # A bad setting was reported where it is; PINs are then held to the default, not to nothing.
    scope.pin_digits = shortest if MIN_PIN_DIGITS <= shortest <= MAX_PIN_DIGITS else DEFAULT_PIN_DIGITS
    users: list[User] = []
    for item, item_loc in f.items("users", "users"):
        users.append(user(chk, item_loc, item, scope, groups))
    user_ids = {u.id for u in users if u.id}
    numbers: list[TenantNumber] = []
    for item, item_loc in f.items("numbers", "numbers"):
        numbers.append(tenant_number(chk, item_loc, item, scope, user_ids))
    default = Tenant(id="", name="", domain="")
    cc = f.get("country_code", country_code, default.country_code) or default.country_code
    policy = outbound_section(chk, loc, f, cc, len(users))
    check_substitutes(chk, loc, f, policy or OutboundPolicy.default(cc, len(users)),
                      {u.number for u in users} | {n.number for n in numbers})
    return Tenant(
        id=ident,
        name=name,
        domain=dom,
        country_code=cc,
        outbound=policy,
        activities=f.get("activities", activities, DEFAULT_ACTIVITIES),
        max_message_seconds=f.get(
            "max_message_seconds", integer(10, 600), default.max_message_seconds
        ),
        groups=groups,
        numbers=tuple(numbers),
        users=tuple(users),
        pin_digits=own_pin_digits if own_pin_digits and own_pin_digits > 0 else None,
        call_recording=f.get("call_recording", _recording_choice, RECORDING_ALLOWED) or RECORDING_ALLOWED,
        node=f.get("node", lambda c, lo, v: _node(c, lo, v, scope), None),
    )


def _node(chk: Checker, loc: Loc, value: Any, scope: Scope) -> str | None:
    """A tenant's explicit node: one of platform.nodes that takes tenants."""
    name = string_value(chk, loc, value, '"node1"')
    if name is None:
        return None
    found = next((n for n in scope.platform.nodes if n.name == name), None)
    if found is None:
        known = ", ".join(n.name for n in scope.platform.nodes if not n.standby) or "none: platform.nodes is not set"
        chk.report(loc, f"no node {show(name)} in platform.nodes (nodes: {known})")
        return None
    if found.standby:
        chk.report(loc, f"node {name!r} is a standby: it takes no tenants of its own")
        return None
    return name


def outbound_section(chk: Checker, loc: Loc, f: Fields, cc: str, users: int) -> OutboundPolicy | None:
    """`outbound:`, or its older name `forwarding:` (not both); None: the defaults."""
    if f.has("outbound") and f.has("forwarding"):
        chk.report(loc / "forwarding", "give either outbound: or its older name forwarding:, not both")
    for key in ("outbound", "forwarding"):
        if f.has(key):
            return f.get(key, lambda c, lo, v, k=key: outbound(c, lo, v, cc, users, k), None)
    check_country_has_deny_list(chk, loc / "country_code" if f.has("country_code") else loc, cc)
    return None


def check_substitutes(chk: Checker, loc: Loc, f: Fields, policy: OutboundPolicy, colleagues: set[str]) -> None:
    """An activity's substitute number goes through the outbound policy like any forward (a
    colleague is always allowed); it is checked again when a call is routed there."""
    listed = f.data.get("activities")
    if not isinstance(listed, list):
        return
    for index, item in enumerate(listed):
        route = item.get("route") if isinstance(item, dict) else None
        if isinstance(route, str) and is_e164(route) and route not in colleagues \
                and not policy.permits(route):
            chk.report(loc / "activities" / index / "route",
                       f"{show(route)} is outside the numbers this tenant may call out to "
                       "(outbound.allow / outbound.deny and the built-in premium-rate lists)")


def tenant_groups(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    """The tenant's own groups, added to the built-in "No voicemail"."""
    groups = [NO_VOICEMAIL_GROUP]
    given: set[str] = set()
    for item, item_loc in list_items(chk, loc, value, "group names"):
        name = text(chk, item_loc, item)
        if name and name in given:
            chk.report(item_loc, f"group {name!r} is listed twice")
        given.add(name)
        if name and name not in groups:
            groups.append(name)
    return tuple(groups)


def user(chk: Checker, loc: Loc, value: Any, scope: Scope, groups: Sequence[str]) -> User:
    f = Fields(chk, loc, value, USER_KEYS, "a user")
    # Interned: the same text for every user of the tenant, kept once per unique value.
    tenant_key = sys.intern(f"{loc.doc.file}{loc.path[:2]}")
    ident = f.get("id", user_id, "", missing="missing (required)")
    scope.uniques.add_at("user id", tenant_key, ident, loc, "id")
    number = f.get("number", e164, "", missing="missing (required: the user's E.164 number)")
    scope.uniques.add_at("number", "", number, loc, "number")
    ext = f.get("extension", extension, "", missing="missing (required)")
    ext = _check_extension(chk, loc / "extension", ext, scope.platform.feature_codes)
    scope.uniques.add_at("extension", tenant_key, ext, loc, "extension")
    devices = [
        device(chk, item_loc, item, scope) for item, item_loc in f.items("devices", "devices")
    ]
    return User(
        id=ident,
        name=f.get("name", text, "", missing="missing (required)"),
        number=number,
        extension=ext,
        email=f.get("email", email, None),
        pin=f.get("pin", pin(number, ext, scope.pin_digits), "",
                  missing=f"PIN is missing ({scope.pin_digits} to {MAX_PIN_DIGITS} digits, quoted)"),
        language=f.get("language", _language, scope.platform.default_language),
        groups=f.get("groups", member_of(groups), ()),
        devices=tuple(devices),
        role=f.get("role", optional_text, ""),
        mobile=_mobile(chk, f, scope.platform),
    )


def _mobile(chk: Checker, f: Fields, platform: Platform) -> str:
    """Whether the user's handset rings with their devices: needs the platform's mobile core."""
    mobile = f.get("mobile", _mobile_choice, MOBILE_OFF) or MOBILE_OFF
    if mobile != MOBILE_OFF and platform.mobile_core is None:
        chk.report(f.loc / "mobile", f"{mobile} needs a trunk with mobile_core: true "
                   "(platform.trunks): the handset is reached through it")
        return MOBILE_OFF
    return mobile


# Dialled codes only: blind transfer is DTMF inside a call, not something one dials.
_DIALLED_CODES = ("immediate_forward", "call_waiting_on", "call_waiting_off", "call_waiting_status")


def _check_extension(chk: Checker, loc: Loc, ext: str, codes: FeatureCodes) -> str:
    if not ext:
        return ext
    for name in _DIALLED_CODES:  # no dict per user: this runs for every user
        code = getattr(codes, name)
        if code.isdigit() and ext.startswith(code):
            chk.report(loc, f"{ext!r} starts with the feature code {code!r} ({name})")
            return ""
    return ext


def member_of(groups: Sequence[str]) -> Callable[[Checker, Loc, Any], tuple[str, ...]]:
    def check(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
        found: list[str] = []
        for item, item_loc in list_items(chk, loc, value, "group names"):
            if not isinstance(item, str) or item not in groups:
                guess = (
                    difflib.get_close_matches(item, groups, n=1) if isinstance(item, str) else []
                )
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                chk.report(
                    item_loc,
                    f"unknown group {show(item)}{hint}; the tenant's groups are: "
                    + ", ".join(groups),
                )
            elif item in found:
                chk.report(item_loc, f"group {item!r} is listed twice")
            else:
                found.append(item)
        return tuple(found)

    return check


def device(chk: Checker, loc: Loc, value: Any, scope: Scope) -> Device:
    f = Fields(chk, loc, value, ("id", "codecs"), "a device", "{id: acme-anna-soft}")
    ident = f.get("id", device_id, "", missing="missing (required)")
    if ident in RESERVED_DEVICE_IDS or ident.startswith(RESERVED_DEVICE_PREFIX):
        chk.report(
            loc / "id",
            f"{ident!r} is reserved (names used by the platform itself: "
            f"{', '.join(RESERVED_DEVICE_IDS)} and anything starting {RESERVED_DEVICE_PREFIX!r})",
        )
        ident = ""
    elif ident in scope.trunk_names:
        chk.report(loc / "id", f"{ident!r} is the name of a trunk (platform.trunks): "
                   "a device and a trunk cannot share a SIP endpoint name")
        ident = ""
    # The device id is the SIP user name: unique on the whole platform, not just the tenant.
    scope.uniques.add_at("device id", "", ident, loc, "id")
    return Device(id=ident, codecs=f.get("codecs", codecs, Device(id="").codecs))


def tenant_number(
    chk: Checker, loc: Loc, value: Any, scope: Scope, user_ids: set[str]
) -> TenantNumber:
    f = Fields(
        chk,
        loc,
        value,
        ("number", "user"),
        "a tenant number",
        '{number: "+358923130000", user: anna}',
    )
    number = f.get("number", e164, "", missing="missing (required)")
    scope.uniques.add_at("number", "", number, loc, "number")
    owner = f.get("user", user_id, "", missing="missing (required: the id of the user it rings)")
    if owner and owner not in user_ids:
        chk.report(loc / "user", f"no user {owner!r} in this tenant")
    return TenantNumber(number=number, user=owner)


def pin(number: str, ext: str, shortest: int = DEFAULT_PIN_DIGITS) -> Callable[[Checker, Loc, Any], str]:
    """Voicemail PIN: text, so that leading zeros survive; `shortest` to 10 digits; weak ones are
    refused."""
    digits = f"{shortest} to {MAX_PIN_DIGITS} digits"

    def check(chk: Checker, loc: Loc, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            chk.report(
                loc,
                f'PIN must be a quoted string of {digits}, e.g. pin: "480264" '
                "(unquoted, YAML reads it as a number and may drop or misread leading zeros)",
            )
            return ""
        got = string_value(chk, loc, value, '"480264"')
        if got is None:
            return ""
        if not PIN.fullmatch(got) or not shortest <= len(got) <= MAX_PIN_DIGITS:
            chk.report(loc, f"PIN must be {digits} (pin_digits: {shortest}), not {show(got)}")
            return ""
        weakness = _pin_weakness(got, number, ext)
        if weakness:
            chk.report(loc, f"PIN is too weak ({weakness})")
            return ""
        return got

    return check


def _pin_weakness(code: str, number: str, ext: str) -> str | None:
    if len(set(code)) == 1:
        return "all digits the same"
    # Steps modulo 10, so that 7890 and 0987 count as runs like 1234 and 4321.
    steps = {(int(b) - int(a)) % 10 for a, b in zip(code, code[1:], strict=False)}
    if steps == {1}:
        return "ascending run"
    if steps == {9}:
        return "descending run"
    if number and number.endswith(code):
        return "the last digits of the user's own number"
    if ext and code == ext:
        return "the same as the user's extension"
    return None
