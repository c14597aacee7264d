"""A tenant's allow- and deny-list of number prefixes for forwards and transfers."""

from __future__ import annotations

import re
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc, list_items, string_value
from asterisk_conf.yamlsource import show
from base.model import Forwarding

NUMBER_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")
FORWARDING_KEYS = ("allow", "deny")


def forwarding(chk: Checker, loc: Loc, value: Any, cc: str) -> Forwarding | None:
    """A tenant's forward/transfer allow-list; absent keys keep the national default."""
    f = Fields(chk, loc, value, FORWARDING_KEYS, "forwarding", 'allow: ["+358", "+46"]')
    default = Forwarding.default(cc)
    return Forwarding(allow=f.get("allow", number_prefixes, default.allow),
                      deny=f.get("deny", number_prefixes, default.deny))


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
