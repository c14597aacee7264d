"""YAML tenant files → a validated `Config`, with every problem reported at once.

Values end up inside Asterisk configuration files, where `;`, `,`, `[`, `=>`, `${...}` or a newline
change meaning. So every identifier, number and address must match an allow-list, and free text is
screened; nothing outside an allow-list passes. Patterns are used with `fullmatch` (a `$` would
let a trailing newline through) and spell digits `[0-9]` (`\\d` also matches non-ASCII digits).

Several files are merged: each may have `tenants:`, at most one may have `platform:`.
"""

from __future__ import annotations

import difflib
import gc
import ipaddress
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from base.model import (
    AVAILABLE,
    DEFAULT_ACTIVITIES,
    LANGUAGES,
    NO_VOICEMAIL_GROUP,
    PRESENCE_STATES,
    RING,
    STATE_BACKENDS,
    TO_VOICEMAIL,
    Activity,
    Carrier,
    Config,
    Device,
    FeatureCodes,
    Forwarding,
    Listener,
    Notifications,
    Platform,
    StateDatabase,
    Tenant,
    TenantNumber,
    User,
)

from .errors import ConfigError, Problem
from .yamlsource import INVALID, Document, KeyPath, load_all, show

T = TypeVar("T")

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
TENANT_ID = re.compile(r"[a-z][a-z0-9-]{0,30}")
USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
EXTENSION = re.compile(r"[1-9][0-9]{1,5}")
FEATURE_CODE = re.compile(r"[0-9*#]{1,8}")
ARI_APP = re.compile(r"[a-z][a-z0-9_-]{0,30}")
COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
NUMBER_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")
PIN = re.compile(r"[0-9]{4,10}")
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
# Only the characters of IP literals, so that e.g. an IPv6 scope ("fe80::1%x;y") cannot slip in.
IP_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
NETWORK_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")

CODECS = ("alaw", "ulaw", "g722", "opus", "gsm")
# pjsip.conf sections the renderer writes itself; "anonymous" would take unauthenticated calls.
RESERVED_DEVICE_IDS = ("carrier", "global", "system", "anonymous")
RESERVED_DEVICE_PREFIX = "vipbx"
# voicemail.conf sections: a tenant's voicemail context must not be one of them.
RESERVED_TENANT_IDS = ("general", "zonemessages", "default")
TEXT_MAX = 80
FORBIDDEN_TEXT = ';,"<>[]\\${}=|#'
_FORBIDDEN_CHARS = frozenset(FORBIDDEN_TEXT)
_CHAR_NAMES = {"\n": "newline", "\t": "tab", "\r": "carriage return", "\x00": "NUL"}

PLATFORM_KEYS = (
    "voicemail_number", "activity_number", "default_language", "feature_codes", "no_answer_seconds",
    "sip", "rtp", "http", "ami", "agi", "ari_app", "carrier", "notifications", "state_database",
)  # fmt: skip
LISTENERS = ("sip", "http", "ami", "agi")
TENANT_KEYS = (
    "id", "name", "domain", "country_code", "max_message_seconds", "groups", "numbers", "users",
    "forwarding", "activities",
)  # fmt: skip
FORWARDING_KEYS = ("allow", "deny")
ACTIVITY_KEYS = ("key", "digit", "presence", "route")
ACTIVITY_KEY = re.compile(r"[a-z][a-z0-9-]{0,30}")
ACTIVITY_DIGIT = re.compile(r"[1-9]")
USER_KEYS = (
    "id", "name", "number", "extension", "email", "pin", "language", "groups", "devices", "role",
)  # fmt: skip


# ---------------------------------------------------------------- where problems are


_new_object = object.__new__
_set_slot = object.__setattr__


@dataclass(frozen=True, slots=True)
class Loc:
    """A place in one YAML document: its file and the key path inside it."""

    doc: Document
    path: KeyPath

    def __truediv__(self, part: str | int) -> Loc:
        # Made for every value checked (millions on a large platform): filled in directly,
        # which costs a third less than the frozen dataclass __init__. Still immutable.
        new = _new_object(Loc)
        _set_slot(new, "doc", self.doc)
        _set_slot(new, "path", self.path + (part,))
        return new

    def describe(self) -> str:
        return f"{self.doc.file}:{self.doc.line_of(self.path)} ({self.doc.key_of(self.path)})"


class Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def report(self, loc: Loc, message: str) -> None:
        doc = loc.doc
        self.problems.append(
            Problem(doc.file, doc.line_of(loc.path), doc.key_of(loc.path), message)
        )


@dataclass(frozen=True, slots=True)  # slots: one per unique value, ~400,000 on a large platform
class Place:
    """Where a value that must be unique was used; `loc` is None for a built-in default."""

    loc: Loc | None
    label: str

    def describe(self) -> str:
        return self.loc.describe() if self.loc else self.label


class Uniques:
    """Collects values that must be unique, then reports every place of every duplicate."""

    def __init__(self) -> None:
        # The first place of each value; a list of places only for values used more than once
        # (a list per value cost ~90 bytes each for the hundreds of thousands that are unique).
        self.seen: dict[tuple[str, str, str], Place | tuple[Loc, str]] = {}
        self.repeated: dict[tuple[str, str, str], list[Place | tuple[Loc, str]]] = {}

    def add(self, what: str, scope: str, value: str, place: Place | tuple[Loc, str]) -> None:
        if value:  # "" stands for a value already reported as invalid
            key = (what, scope, value)
            first = self.seen.setdefault(key, place)
            if first is not place:
                self.repeated.setdefault(key, [first]).append(place)

    def add_at(self, what: str, scope: str, value: str, loc: Loc, part: str) -> None:
        """`add` with the place `loc / part`, kept as (loc, part) until reported: this runs
        several times per user, and a Place and a Loc each would be made and kept for all."""
        self.add(what, scope, value, (loc, part))

    def report(self, chk: Checker) -> None:
        for key in self.seen:  # in order of first use, as before
            stored = self.repeated.get(key)
            if stored is None:
                continue
            places = [p if isinstance(p, Place) else Place(p[0] / p[1], "") for p in stored]
            what, _scope, value = key
            for place in places:
                if place.loc is None:
                    continue
                others = "; ".join(p.describe() for p in places if p is not place)
                chk.report(place.loc, f"{what} {show(value)} is used more than once; also {others}")


# ---------------------------------------------------------------- mappings and lists


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false (YAML reads unquoted yes/no/on/off as true/false: quote it)"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Fields:
    """One YAML mapping being read: reports unknown keys, hands out values with defaults."""

    def __init__(
        self, chk: Checker, loc: Loc, value: Any, known: Sequence[str], what: str, example: str = ""
    ) -> None:
        self.chk, self.loc = chk, loc
        # Not a mapping: one problem here, none for each of its "missing" keys.
        self.is_mapping = isinstance(value, dict)
        self.data: dict[str, Any] = value if isinstance(value, dict) else {}
        if not self.is_mapping and value is not INVALID:
            shape = f"key: value, e.g. {example}" if example else "key: value"
            chk.report(loc, f"{what} must be a mapping ({shape}), not {_kind(value)}")
        for key in self.data:
            if key not in known:
                guess = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                chk.report(loc / key, f"unknown key {show(key)}{hint}; allowed: {', '.join(known)}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(
        self,
        key: str,
        parse: Callable[[Checker, Loc, Any], T],
        default: T,
        missing: str | None = None,
    ) -> T:
        """`parse` the value; an absent or empty (null) key gives `default`, or, when `missing`
        is set, is a problem with that message. `parse` returns a placeholder after a problem."""
        value = self.data.get(key)
        if value is None:
            if missing and self.is_mapping:
                self.chk.report(self.loc / key, missing)
            return default
        if value is INVALID:
            return default
        return parse(self.chk, self.loc / key, value)

    def items(self, key: str, what: str) -> list[tuple[Any, Loc]]:
        """The items of an optional list, each with its place; absent or empty gives none."""
        none: list[tuple[Any, Loc]] = []
        return self.get(key, lambda chk, loc, value: _items(chk, loc, value, what), none)


def _items(chk: Checker, loc: Loc, value: Any, what: str) -> list[tuple[Any, Loc]]:
    if not isinstance(value, list):
        chk.report(loc, f"must be a list of {what}, not {_kind(value)}")
        return []
    return [(item, loc / index) for index, item in enumerate(value) if item is not INVALID]


def _string(chk: Checker, loc: Loc, value: Any, example: str) -> str | None:
    """Text values only: an unquoted 0123 or +358... would be read by YAML as an integer."""
    if isinstance(value, str):
        return value
    hint = f" (write it in quotes, e.g. {example})" if isinstance(value, (int, float)) else ""
    chk.report(loc, f"must be text, not {_kind(value)}{hint}")
    return None


# ---------------------------------------------------------------- scalar checks


def _bad_char(char: str) -> str | None:
    if char in FORBIDDEN_TEXT:
        return f"{char!r} ({unicodedata.name(char).lower()})"
    category = unicodedata.category(char)
    # C*: control, format (e.g. bidi overrides), surrogates, unassigned; Z* other than a space:
    # line/paragraph separators and odd spaces that render invisibly.
    if category[0] == "C" or (category[0] == "Z" and char != " "):
        name = _CHAR_NAMES.get(char) or unicodedata.name(char, "").lower() or "control character"
        return f"U+{ord(char):04X} ({name})"
    return None


def text(chk: Checker, loc: Loc, value: Any, allow_empty: bool = False) -> str:
    """Free text (names, roles, groups): any letters, but nothing that means something to a
    config file, a dialplan or a terminal."""
    got = _string(chk, loc, value, '"Anna Virtanen"')
    if got is None:
        return ""
    ok = True
    if not got and not allow_empty:
        chk.report(loc, "must not be empty")
        ok = False
    if len(got) > TEXT_MAX:
        chk.report(loc, f"is too long ({len(got)} characters, at most {TEXT_MAX})")
        ok = False
    # Fast path: isprintable() is False exactly for the C* and Z* (but ' ') characters that
    # _bad_char refuses; then the per-character look-up runs only for text that has a problem.
    clean = got.isprintable() and _FORBIDDEN_CHARS.isdisjoint(got)
    bad = [] if clean else list(dict.fromkeys(filter(None, map(_bad_char, got))))
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        chk.report(loc, f"must not contain {', '.join(bad[:5])}{more}")
        ok = False
    if got != got.strip(" "):
        chk.report(loc, "must not start or end with a space")
        ok = False
    return got if ok else ""


def optional_text(chk: Checker, loc: Loc, value: Any) -> str:
    return text(chk, loc, value, allow_empty=True)


def pattern(regex: re.Pattern[str], rule: str, example: str) -> Callable[[Checker, Loc, Any], str]:
    """A checker for identifiers and codes that must match `regex` exactly."""

    def check(chk: Checker, loc: Loc, value: Any) -> str:
        got = _string(chk, loc, value, example)
        if got is None:
            return ""
        if not regex.fullmatch(got):
            chk.report(loc, f"{show(got)} is not allowed: {rule} (e.g. {example})")
            return ""
        return got

    return check


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
feature_code = pattern(FEATURE_CODE, "1 to 8 of the keys 0-9, * and #", '"*43#"')
ari_app = pattern(
    ARI_APP, "lowercase letters, digits, '_' and '-', starting with a letter", "vipbx"
)
country_code = pattern(COUNTRY_CODE, "1 to 3 digits, not starting with 0", '"358"')


def e164(chk: Checker, loc: Loc, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        chk.report(
            loc,
            'must be a quoted string with a leading +, e.g. "+358401110001" (unquoted, YAML '
            "reads it as an integer and drops the + and any leading zero)",
        )
        return ""
    got = _string(chk, loc, value, '"+358401110001"')
    if got is None:
        return ""
    if not E164.fullmatch(got):
        chk.report(
            loc,
            f"{show(got)} is not an E.164 number: '+' and 7 to 15 digits, no spaces "
            '(e.g. "+358401110001")',
        )
        return ""
    return got


def integer(lo: int, hi: int) -> Callable[[Checker, Loc, Any], int]:
    def check(chk: Checker, loc: Loc, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            chk.report(loc, f"must be a whole number from {lo} to {hi}, not {_kind(value)}")
            return INVALID_NUMBER
        if not lo <= value <= hi:
            chk.report(loc, f"must be from {lo} to {hi}, not {show(value)}")
            return INVALID_NUMBER
        return value

    return check


port = integer(1, 65535)
# Placeholder after a reported problem, skipped by the cross-checks (like "" for text).
INVALID_NUMBER = -1


def choice(options: Sequence[str]) -> Callable[[Checker, Loc, Any], str]:
    def check(chk: Checker, loc: Loc, value: Any) -> str:
        if isinstance(value, str) and value in options:
            return value
        shown = _kind(value) if isinstance(value, bool) else show(value)
        chk.report(loc, f"must be one of {', '.join(options)}, not {shown}")
        return ""

    return check


_language = choice(LANGUAGES)  # made once: the user checker uses it for every user


def _dns_name(name: str, min_labels: int) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= min_labels
        and all(DNS_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # that would be a (bad) IPv4 address
    )


def domain(chk: Checker, loc: Loc, value: Any) -> str:
    got = _string(chk, loc, value, "acme.example")
    if got is None:
        return ""
    if not _dns_name(got, 2):
        chk.report(
            loc,
            f"{show(got)} is not a DNS domain name: lowercase labels of letters, digits and '-', "
            "separated by dots (e.g. acme.example)",
        )
        return ""
    return got


def email(chk: Checker, loc: Loc, value: Any) -> str | None:
    got = _string(chk, loc, value, "anna@acme.example")
    if got is None:
        return None
    local, _, host = got.partition("@")
    if not (
        len(got) <= 254
        and EMAIL_LOCAL.fullmatch(local)
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and _dns_name(host.lower(), 2)
    ):
        chk.report(
            loc,
            f"{show(got)} is not an accepted e-mail address: local@domain, the local part "
            "of letters, digits and . _ % + - (e.g. anna.virtanen@acme.example)",
        )
        return None
    return got


def ip_address(chk: Checker, loc: Loc, value: Any) -> str:
    got = _string(chk, loc, value, '"127.0.0.1"')
    if got is None:
        return ""
    try:
        if not IP_CHARS.fullmatch(got):
            raise ValueError
        return str(ipaddress.ip_address(got))
    except ValueError:
        chk.report(loc, f"{show(got)} is not an IPv4 or IPv6 address (e.g. 127.0.0.1 or ::1)")
        return ""


def ip_network(chk: Checker, loc: Loc, value: Any) -> str:
    got = _string(chk, loc, value, '"192.0.2.10"')
    if got is None:
        return ""
    try:
        if not NETWORK_CHARS.fullmatch(got):
            raise ValueError
        network = ipaddress.ip_network(got, strict=False)
    except ValueError:
        chk.report(loc, f"{show(got)} is not an IP address or network (e.g. 192.0.2.0/24)")
        return ""
    return network.with_prefixlen if "/" in got else str(network.network_address)


def host(chk: Checker, loc: Loc, value: Any) -> str:
    got = _string(chk, loc, value, "sip.carrier.example")
    if got is None:
        return ""
    if IP_CHARS.fullmatch(got):
        try:
            return str(ipaddress.ip_address(got))
        except ValueError:
            pass
    if _dns_name(got, 1):
        return got
    chk.report(loc, f"{show(got)} is not an IP address or a lowercase DNS name")
    return ""


def codecs(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    found: list[str] = []
    items = _items(chk, loc, value, "codecs")
    if isinstance(value, list) and not value:
        chk.report(loc, f"must list at least one codec of {', '.join(CODECS)}")
    for item, item_loc in items:
        name = choice(CODECS)(chk, item_loc, item)
        if name in found:
            chk.report(item_loc, f"codec {name!r} is listed twice")
        elif name:
            found.append(name)
    return tuple(found)


def pin(number: str, ext: str) -> Callable[[Checker, Loc, Any], str]:
    """Voicemail PIN: text, so that leading zeros survive; weak ones are refused."""

    def check(chk: Checker, loc: Loc, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            chk.report(
                loc,
                'PIN must be a quoted string of 4 to 10 digits, e.g. pin: "480264" '
                "(unquoted, YAML reads it as a number and may drop or misread leading zeros)",
            )
            return ""
        got = _string(chk, loc, value, '"480264"')
        if got is None:
            return ""
        if not PIN.fullmatch(got):
            chk.report(loc, f"PIN must be 4 to 10 digits, not {show(got)}")
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


# ---------------------------------------------------------------- platform


def listener(default: Listener) -> Callable[[Checker, Loc, Any], Listener]:
    def check(chk: Checker, loc: Loc, value: Any) -> Listener:
        f = Fields(chk, loc, value, ("bind", "port"), "a listener")
        return Listener(f.get("bind", ip_address, default.bind), f.get("port", port, default.port))

    return check


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


def carrier(chk: Checker, loc: Loc, value: Any) -> Carrier:
    f = Fields(chk, loc, value, ("host", "port", "match", "codecs"), "carrier")
    default = Carrier(host="")
    matches = f.items("match", "IP addresses or networks")
    return Carrier(
        host=f.get("host", host, "", missing="missing (required: an IP address or DNS name)"),
        port=f.get("port", port, default.port),
        match=tuple(ip_network(chk, item_loc, item) for item, item_loc in matches),
        codecs=f.get("codecs", codecs, default.codecs),
    )



# ---------------------------------------------------------------- notifications

NOTIFICATION_KEYS = (
    "timezone", "retry_backoff", "retry_max_attempts",
    "sms_url", "sms_username", "sms_sender", "sms_timeout",
    "smtp_host", "smtp_port", "smtp_sender", "smtp_starttls", "smtp_username", "smtp_timeout",
    "smtp_max_attachment_bytes",
)
HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
SMS_SENDER = re.compile(r"\+?[A-Za-z0-9]{1,15}")
LOGIN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
TIME_ZONE = re.compile(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}")

sms_url = pattern(HTTP_URL, "an http(s) URL of Kannel's sendsms", "http://127.0.0.1:13013/cgi-bin/sendsms")
sms_sender = pattern(SMS_SENDER, "a number or up to 15 letters and digits", '"+358201243100"')
login_name = pattern(LOGIN_NAME, "letters, digits, '.', '_', '@' and '-', at most 64", "vipbx")


def boolean(chk: Checker, loc: Loc, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    chk.report(loc, f"must be true or false, not {show(value)}")
    return False


def time_zone(chk: Checker, loc: Loc, value: Any) -> str:
    got = _string(chk, loc, value, "Europe/Helsinki")
    if got is None:
        return Notifications().timezone
    try:
        if TIME_ZONE.fullmatch(got):
            ZoneInfo(got)
            return got
    except (ZoneInfoNotFoundError, ValueError):
        pass
    chk.report(loc, f"{show(got)} is not a time zone name (e.g. Europe/Helsinki)")
    return Notifications().timezone


def backoff(chk: Checker, loc: Loc, value: Any) -> tuple[int, ...]:
    items = _items(chk, loc, value, "seconds")
    if not 1 <= len(items) <= 10:
        chk.report(loc, "must list 1 to 10 waits in seconds, e.g. [10, 60, 300]")
        return Notifications().retry_backoff
    return tuple(integer(1, 86400)(chk, item_loc, item) for item, item_loc in items)


def notifications(chk: Checker, loc: Loc, value: Any) -> Notifications:
    f = Fields(chk, loc, value, NOTIFICATION_KEYS, "notifications")
    d = Notifications()
    result = Notifications(
        timezone=f.get("timezone", time_zone, d.timezone),
        retry_backoff=f.get("retry_backoff", backoff, d.retry_backoff),
        retry_max_attempts=f.get("retry_max_attempts", integer(1, 50), d.retry_max_attempts),
        sms_url=f.get("sms_url", sms_url, None) or None,
        sms_username=f.get("sms_username", login_name, None) or None,
        sms_sender=f.get("sms_sender", sms_sender, None) or None,
        sms_timeout=f.get("sms_timeout", integer(1, 120), d.sms_timeout),
        smtp_host=f.get("smtp_host", host, None) or None,
        smtp_port=f.get("smtp_port", port, d.smtp_port),
        smtp_sender=f.get("smtp_sender", email, None) or None,
        smtp_starttls=f.get("smtp_starttls", boolean, d.smtp_starttls),
        smtp_username=f.get("smtp_username", login_name, None) or None,
        smtp_timeout=f.get("smtp_timeout", integer(1, 300), d.smtp_timeout),
        smtp_max_attachment_bytes=f.get("smtp_max_attachment_bytes", integer(0, 50 * 1024 * 1024), d.smtp_max_attachment_bytes),
    )
    if f.has("sms_url") and not f.has("sms_username"):
        chk.report(loc / "sms_username", "missing: Kannel's sendsms needs a user name with sms_url")
    if f.has("smtp_host") and not f.has("smtp_sender"):
        chk.report(loc / "smtp_sender", "missing: e-mail needs a sender address with smtp_host")
    return result


# ---------------------------------------------------------------- state database

STATE_DATABASE_KEYS = ("backend", "host", "port", "name", "user", "connect_timeout")
# PostgreSQL names: at most 63 bytes; no quotes, spaces or '=' (they would change a libpq conninfo).
PG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
pg_name = pattern(PG_NAME, "letters, digits, '_' and '-', not starting with a digit, at most 63", "vipbx")


def state_database(chk: Checker, loc: Loc, value: Any) -> StateDatabase:
    """Where the call-state service keeps its state; the password is the secret `postgresql`."""
    f = Fields(chk, loc, value, STATE_DATABASE_KEYS, "state_database", "backend: postgresql")
    d = StateDatabase()
    return StateDatabase(
        backend=f.get("backend", choice(STATE_BACKENDS), d.backend) or d.backend,
        host=f.get("host", host, d.host) or d.host,
        port=f.get("port", port, d.port),
        name=f.get("name", pg_name, d.name) or d.name,
        user=f.get("user", pg_name, d.user) or d.user,
        connect_timeout=f.get("connect_timeout", integer(1, 300), d.connect_timeout),
    )


def platform(chk: Checker, loc: Loc | None, value: Any) -> Platform:
    default = Platform()
    if loc is None:
        return default
    f = Fields(chk, loc, value, PLATFORM_KEYS, "platform")
    ports: dict[str, Listener] = {
        name: f.get(name, listener(getattr(default, name)), getattr(default, name))
        for name in LISTENERS
    }
    rtp_start, rtp_end = f.get("rtp", rtp, (default.rtp_start, default.rtp_end))
    _check_listeners(chk, f, ports, rtp_start, rtp_end)
    return Platform(
        voicemail_number=f.get("voicemail_number", e164, default.voicemail_number),
        activity_number=f.get("activity_number", e164, default.activity_number),
        default_language=f.get("default_language", choice(LANGUAGES), default.default_language),
        feature_codes=f.get("feature_codes", feature_codes, default.feature_codes),
        rtp_start=rtp_start,
        rtp_end=rtp_end,
        ari_app=f.get("ari_app", ari_app, default.ari_app),
        carrier=f.get("carrier", carrier, None),
        no_answer_seconds=f.get("no_answer_seconds", integer(5, 120), default.no_answer_seconds),
        notifications=f.get("notifications", notifications, default.notifications),
        state_database=f.get("state_database", state_database, default.state_database),
        **ports,
    )


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


# ---------------------------------------------------------------- tenants


@dataclass
class Scope:
    """What a tenant's parts are checked against."""

    platform: Platform
    uniques: Uniques


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
    users: list[User] = []
    for item, item_loc in f.items("users", "users"):
        users.append(user(chk, item_loc, item, scope, groups))
    user_ids = {u.id for u in users if u.id}
    numbers: list[TenantNumber] = []
    for item, item_loc in f.items("numbers", "numbers"):
        numbers.append(tenant_number(chk, item_loc, item, scope, user_ids))
    default = Tenant(id="", name="", domain="")
    cc = f.get("country_code", country_code, default.country_code) or default.country_code
    return Tenant(
        id=ident,
        name=name,
        domain=dom,
        country_code=cc,
        forwarding=f.get("forwarding", lambda c, lo, v: forwarding(c, lo, v, cc), None),
        activities=f.get("activities", activities, DEFAULT_ACTIVITIES),
        max_message_seconds=f.get(
            "max_message_seconds", integer(10, 600), default.max_message_seconds
        ),
        groups=groups,
        numbers=tuple(numbers),
        users=tuple(users),
    )


def forwarding(chk: Checker, loc: Loc, value: Any, cc: str) -> Forwarding | None:
    """A tenant's forward/transfer allow-list; absent keys keep the national default."""
    f = Fields(chk, loc, value, FORWARDING_KEYS, "forwarding", 'allow: ["+358", "+46"]')
    default = Forwarding.default(cc)
    return Forwarding(allow=f.get("allow", number_prefixes, default.allow),
                      deny=f.get("deny", number_prefixes, default.deny))


def activities(chk: Checker, loc: Loc, value: Any) -> tuple[Activity, ...]:
    """A tenant's own activity list: each with a unique key and DTMF digit; "available" (what an
    end time returns to) must be one of them."""
    found: list[Activity] = []
    keys: dict[str, Loc] = {}
    digits: dict[str, Loc] = {}
    items = _items(chk, loc, value, "activities ({key, digit, presence, route})")
    for item, item_loc in items:
        f = Fields(chk, item_loc, item, ACTIVITY_KEYS, "an activity", 'key: vacation, digit: "6"')
        key = f.get("key", pattern(ACTIVITY_KEY, "lowercase letters, digits and '-'", "vacation"), "",
                    missing="missing (required)")
        digit = f.get("digit", pattern(ACTIVITY_DIGIT, "one of the keys 1-9 (0, * and # are the menu's)",
                                       '"6"'), "", missing="missing (required)")
        for what, seen, val in (("key", keys, key), ("digit", digits, digit)):
            if val and val in seen:
                chk.report(item_loc / what, f"{show(val)} is already the {what} of another activity "
                           f"({seen[val].describe()})")
            elif val:
                seen[val] = item_loc / what
        found.append(Activity(key=key, digit=digit,
                              presence=f.get("presence", choice(PRESENCE_STATES), AVAILABLE) or AVAILABLE,
                              route=f.get("route", activity_route, RING) or RING))
    if AVAILABLE not in keys and not chk_has_key_problem(items):
        chk.report(loc, f"must include the activity {AVAILABLE!r}: an end time returns users to it")
    for activity, (_, item_loc) in zip(found, items):
        if activity.key == AVAILABLE and activity.route not in (RING, ""):
            chk.report(item_loc / "route", f"{AVAILABLE!r} always rings as usual (it is what the other "
                       "activities return to)")
    return tuple(found) if found else DEFAULT_ACTIVITIES


def chk_has_key_problem(items: list[tuple[Any, Loc]]) -> bool:
    """An item without a readable key was reported already; do not also say "available" is missing."""
    return any(not isinstance(item, dict) or not isinstance(item.get("key"), str) for item, _ in items)


def activity_route(chk: Checker, loc: Loc, value: Any) -> str:
    if value in (RING, TO_VOICEMAIL):
        return str(value)
    if isinstance(value, str) and value.startswith("+"):
        return e164(chk, loc, value)
    chk.report(loc, f"must be {RING}, {TO_VOICEMAIL} or a substitute E.164 number, not {show(value)}")
    return ""


def number_prefixes(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    prefixes: list[str] = []
    for item, item_loc in _items(chk, loc, value, 'E.164 prefixes such as "+358"'):
        got = _string(chk, item_loc, item, '"+358"')
        if got is None:
            continue
        if not NUMBER_PREFIX.fullmatch(got):
            chk.report(item_loc, f"{show(got)} is not an E.164 prefix: '+' and 1 to 15 digits, "
                       'e.g. "+358" or "+3589"')
            continue
        prefixes.append(got)
    return tuple(prefixes)


def tenant_groups(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    """The tenant's own groups, added to the built-in "No voicemail"."""
    groups = [NO_VOICEMAIL_GROUP]
    given: set[str] = set()
    for item, item_loc in _items(chk, loc, value, "group names"):
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
        pin=f.get("pin", pin(number, ext), "", missing="PIN is missing (4 to 10 digits, quoted)"),
        language=f.get("language", _language, scope.platform.default_language),
        groups=f.get("groups", member_of(groups), ()),
        devices=tuple(devices),
        role=f.get("role", optional_text, ""),
    )


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
        for item, item_loc in _items(chk, loc, value, "group names"):
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


# ---------------------------------------------------------------- files


def _documents(chk: Checker, paths: Sequence[str | Path]) -> list[Document]:
    docs: list[Document] = []
    seen: dict[Path, str] = {}
    for path, doc in zip(paths, load_all(paths)):
        try:
            resolved = Path(path).resolve()
        except (OSError, ValueError, RuntimeError):  # unreadable: load_yaml has said so
            resolved = Path(doc.file)
        if resolved in seen:
            chk.problems.append(
                Problem(doc.file, None, "", f"the same file as {seen[resolved]} is given twice")
            )
            continue
        seen[resolved] = doc.file
        chk.problems.extend(doc.problems)
        if doc.data is None and not doc.problems:
            chk.report(Loc(doc, ()), "the file is empty (expected platform: and/or tenants:)")
        docs.append(doc)
    return docs


def _check(paths: Sequence[str | Path]) -> tuple[Config | None, list[Problem]]:
    # The parsed trees are acyclic, so reference counting frees them; the cyclic collector would
    # only rescan hundreds of thousands of young objects again and again (superlinear time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_all(paths)
    finally:
        if gc_was_enabled:
            gc.enable()


def _check_all(paths: Sequence[str | Path]) -> tuple[Config | None, list[Problem]]:
    chk = Checker()
    if isinstance(paths, (str, Path)):
        paths = [paths]  # a lone path would otherwise be read as a list of characters
    if not paths:
        return None, [Problem("", None, "", "no configuration file given")]
    docs = _documents(chk, paths)
    platform_loc: Loc | None = None
    tenant_lists: list[tuple[Any, Loc]] = []
    for doc in docs:
        if doc.data is None:
            continue
        top = Fields(chk, Loc(doc, ()), doc.data, ("platform", "tenants"), "a configuration file")
        if top.has("platform"):
            if platform_loc is None:
                platform_loc = Loc(doc, ("platform",))
            else:
                chk.report(
                    Loc(doc, ("platform",)),
                    f"platform: is already given at {platform_loc.describe()}; "
                    "only one file may have it",
                )
        if top.has("tenants"):
            tenant_lists.append((top.data["tenants"], Loc(doc, ("tenants",))))
    plat_value = platform_loc.doc.data["platform"] if platform_loc is not None else None
    plat = platform(chk, platform_loc, plat_value)
    scope = Scope(plat, Uniques())
    for label in ("voicemail_number", "activity_number"):
        given = isinstance(plat_value, dict) and plat_value.get(label) is not None
        loc = platform_loc / label if platform_loc is not None and given else None
        place = Place(loc, f"the platform's default {label}")
        scope.uniques.add("number", "", getattr(plat, label), place)
    tenants = [
        tenant(chk, item_loc, item, scope)
        for value, loc in tenant_lists
        if value is not INVALID
        for item, item_loc in _items(chk, loc, value, "tenants")
    ]
    scope.uniques.report(chk)
    order = {doc.file: index for index, doc in enumerate(docs)}
    problems = sorted(chk.problems, key=lambda p: (order.get(p.file, -1), p.line or 0))
    if problems:
        return None, problems
    return Config(plat, tuple(tenants), tuple(str(path) for path in paths)), []


def validate_files(paths: Sequence[str | Path]) -> list[Problem]:
    """Every problem of the configuration in `paths` (merged), in file and line order."""
    return _check(paths)[1]


def load_config(paths: Sequence[str | Path]) -> Config:
    """The validated configuration of `paths` (merged); raises `ConfigError` listing every
    problem."""
    config, problems = _check(paths)
    if config is None:
        raise ConfigError(problems)
    return config
