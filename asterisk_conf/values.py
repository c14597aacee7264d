"""Checks of single values that end up inside Asterisk configuration files: free text, identifiers
by pattern, numbers in a range, choices, E.164 numbers, DNS names, e-mail and IP addresses.

In those files `;`, `,`, `[`, `=>`, `${...}` or a newline change meaning. So every identifier,
number and address must match an allow-list, and free text is screened; nothing outside an
allow-list passes. Patterns are used with `fullmatch` (a `$` would let a trailing newline through)
and spell digits `[0-9]` (`\\d` also matches non-ASCII digits).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from .checks import Checker, Loc, kind_of, string_value
from .yamlsource import show

E164 = re.compile(r"\+[1-9][0-9]{6,14}")

DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
# Only the characters of IP literals, so that e.g. an IPv6 scope ("fe80::1%x;y") cannot slip in.
IP_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
NETWORK_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")
TEXT_MAX = 80
FORBIDDEN_TEXT = ';,"<>[]\\${}=|#'
_FORBIDDEN_CHARS = frozenset(FORBIDDEN_TEXT)
_CHAR_NAMES = {"\n": "newline", "\t": "tab", "\r": "carriage return", "\x00": "NUL"}


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
    got = string_value(chk, loc, value, '"Anna Virtanen"')
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
        got = string_value(chk, loc, value, example)
        if got is None:
            return ""
        if not regex.fullmatch(got):
            chk.report(loc, f"{show(got)} is not allowed: {rule} (e.g. {example})")
            return ""
        return got

    return check


def e164(chk: Checker, loc: Loc, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        chk.report(
            loc,
            'must be a quoted string with a leading +, e.g. "+358401110001" (unquoted, YAML '
            "reads it as an integer and drops the + and any leading zero)",
        )
        return ""
    got = string_value(chk, loc, value, '"+358401110001"')
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
            chk.report(loc, f"must be a whole number from {lo} to {hi}, not {kind_of(value)}")
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
        shown = kind_of(value) if isinstance(value, bool) else show(value)
        chk.report(loc, f"must be one of {', '.join(options)}, not {shown}")
        return ""

    return check


def _dns_name(name: str, min_labels: int) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= min_labels
        and all(DNS_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()  # that would be a (bad) IPv4 address
    )


def domain(chk: Checker, loc: Loc, value: Any) -> str:
    got = string_value(chk, loc, value, "acme.example")
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
    got = string_value(chk, loc, value, "anna@acme.example")
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
    got = string_value(chk, loc, value, '"127.0.0.1"')
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
    got = string_value(chk, loc, value, '"192.0.2.10"')
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
    got = string_value(chk, loc, value, "sip.carrier.example")
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


def boolean(chk: Checker, loc: Loc, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    chk.report(loc, f"must be true or false, not {show(value)}")
    return False
