"""A tenant's activity list: keys and DTMF digits, the presence each shows, where calls go."""

from __future__ import annotations

import re
from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc, list_items
from asterisk_conf.values import choice, e164, pattern
from asterisk_conf.yamlsource import show
from base.model import (
    AVAILABLE,
    DEFAULT_ACTIVITIES,
    PRESENCE_STATES,
    RING,
    TO_VOICEMAIL,
    Activity,
)

ACTIVITY_KEYS = ("key", "digit", "presence", "route")
ACTIVITY_KEY = re.compile(r"[a-z][a-z0-9-]{0,30}")
ACTIVITY_DIGIT = re.compile(r"[1-9]")


def activities(chk: Checker, loc: Loc, value: Any) -> tuple[Activity, ...]:
    """A tenant's own activity list: each with a unique key and DTMF digit; "available" (what an
    end time returns to) must be one of them."""
    found: list[Activity] = []
    keys: dict[str, Loc] = {}
    digits: dict[str, Loc] = {}
    items = list_items(chk, loc, value, "activities ({key, digit, presence, route})")
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
