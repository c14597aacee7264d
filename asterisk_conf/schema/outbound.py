"""A tenant's outbound policy (`outbound:`, formerly `forwarding:`): the number prefixes its calls
may go out to, its own deny prefixes, and its fraud throttle. See base/outbound.py."""

from __future__ import annotations

import re
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc, list_items, string_value
from asterisk_conf.values import integer
from asterisk_conf.yamlsource import show
from base.outbound import OutboundPolicy, has_builtin_list

NUMBER_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")
OUTBOUND_KEYS = ("allow", "deny", "max_calls", "max_calls_per_minute")
# The older name: the same lists, no throttle keys (their defaults apply).
FORWARDING_KEYS = ("allow", "deny")
MAX_CALLS_LIMIT = 10000


def outbound(chk: Checker, loc: Loc, value: Any, cc: str, users: int, key: str) -> OutboundPolicy:
    """A tenant's `outbound` (or older `forwarding`) section; absent keys keep the defaults."""
    known = OUTBOUND_KEYS if key == "outbound" else FORWARDING_KEYS
    f = Fields(chk, loc, value, known, key, 'allow: ["+358", "+46"]')
    default = OutboundPolicy.default(cc, users)
    deny = f.get("deny", number_prefixes, default.deny)
    if not has_builtin_list(cc) and not deny and f.is_mapping:
        chk.report(loc / "deny", _no_builtin_list(cc))
    return OutboundPolicy(
        allow=f.get("allow", number_prefixes, default.allow),
        deny=deny,
        max_calls=f.get("max_calls", integer(1, MAX_CALLS_LIMIT), default.max_calls),
        max_calls_per_minute=f.get("max_calls_per_minute", integer(1, MAX_CALLS_LIMIT),
                                   default.max_calls_per_minute),
    )


def check_country_has_deny_list(chk: Checker, loc: Loc, cc: str) -> None:
    """A tenant without an `outbound` section relies on the built-in deny list of its country."""
    if not has_builtin_list(cc):
        chk.report(loc, "outbound: is required: " + _no_builtin_list(cc))


def _no_builtin_list(cc: str) -> str:
    return (f"there is no built-in list of premium-rate numbers for country code {cc}: give the "
            f'tenant\'s own (outbound: {{deny: ["+{cc}900", ...]}}) so premium and special ranges '
            "cannot be called")


def number_prefixes(chk: Checker, loc: Loc, value: Any) -> tuple[str, ...]:
    prefixes: list[str] = []
    for item, item_loc in list_items(chk, loc, value, 'E.164 prefixes such as "+358"'):
        got = string_value(chk, item_loc, item, '"+358"')
        if got is None:
            continue
        if not NUMBER_PREFIX.fullmatch(got):
            chk.report(item_loc, f"{show(got)} is not an E.164 prefix: '+' and 1 to 15 digits, "
                       'e.g. "+358" or "+3589"')
            continue
        prefixes.append(got)
    return tuple(prefixes)
