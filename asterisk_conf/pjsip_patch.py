"""New SIP devices made live through ARI instead of a res_pjsip reload.

A res_pjsip reload re-reads every endpoint, auth and aor of pjsip.conf: 9 s at 20,000 users
(bench/README.md), whatever changed. When a deploy only adds devices (a user added, a device
added to a user), ARI's dynamic configuration (`PUT /asterisk/config/dynamic/res_pjsip/...`)
creates their auth, aor and endpoint in the running Asterisk in milliseconds. sorcery.conf gives
res_pjsip a memory store after its pjsip.conf for these three types: the file's objects are found
first, and the pushed ones are found because the file Asterisk read does not hold them.

The memory store outlives a reload, so what was pushed is remembered by the deploy and deleted
after res_pjsip's next reload (the file holds it by then; a device removed since would otherwise
stay). Anything else (a section changed or removed, [global], a transport, a trunk, a value this
reader does not take as Asterisk does) is not pushed: `plan()` answers None and the deploy reloads
res_pjsip as before.

A push is only right against the pjsip.conf Asterisk runs, which may be older than the live file
(a `deploy --no-reload`). So each rendered file ends with an aor whose name holds the digest of the
rest of the file: a push first asks Asterisk for the old file's marker, goes ahead only if it has
it, and ends by pushing the new file's marker.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from . import gcpause
from .sections import cut_sections

# Creation order: an endpoint names its auth and aor.
LIVE_TYPES = ("auth", "aor", "endpoint")
# More devices than this are reloaded: one reload is then cheaper than the requests.
MAX_DEVICES = 500
MARKER_TYPE = "aor"
MARKER_PREFIX = "vipbx-pjsip-"
_PENDING = MARKER_PREFIX + "pending"

_HEAD = re.compile(r"\[([A-Za-z0-9_.+@-]+)\]$")
_FIELD = re.compile(r"([a-z_]+)=(.*)$")
# Asterisk's config reader takes these otherwise than a plain split (comments, escapes): a new
# object holding one is left to the reload.
_UNSURE = re.compile(r"[;\\]")

Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PjsipObject:
    type: str  # endpoint, auth or aor
    id: str
    fields: Fields  # as written, without `type`


@dataclass(frozen=True)
class PjsipPatch:
    objects: tuple[PjsipObject, ...]  # to create, in creation order; the last is the new marker
    devices: int  # endpoints among them
    expected: str  # the marker (aor id) of the pjsip.conf Asterisk must be running


class PjsipNotLive(Exception):
    """Asterisk does not run the pjsip.conf a push was planned from: reload the file instead."""


def stamp(text: str) -> str:
    """A rendered pjsip.conf with its marker's name filled in: a digest of the rest. Only the
    marker's own section head, the last: a value from the YAML (a name) may hold the text too."""
    head = f"\n[{_PENDING}]\n"
    before, found, after = text.rpartition(head)
    if not found:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return f"{before}\n[{MARKER_PREFIX}{digest}]\n{after}"


def plan(old: str, new: str, limit: int = MAX_DEVICES) -> PjsipPatch | None:
    """The objects that turn Asterisk's SIP configuration from `old` into `new`, or None when
    only a reload can (anything but new auth, aor and endpoint objects; more than `limit`)."""
    with gcpause.paused():  # both files as sections and tuples, freed before it resumes
        return _plan(old, new, limit)


def _plan(old: str, new: str, limit: int) -> PjsipPatch | None:
    # Only the sections whose text differs are read: a node's file has 88,000 of them.
    old_parts, new_parts = _parts(old), _parts(new)
    if old_parts is None or new_parts is None:
        return None
    gone, added = _read_apart(old_parts, set(new_parts)), _read_apart(new_parts, set(old_parts))
    if gone is None or added is None:
        return None
    expected, marker = _marker(gone), _marker(added)
    if expected is None or marker is None:
        return None
    old_names = {part[:part.find("]")] for part in old_parts}
    objects: list[PjsipObject] = []
    for key, fields in added.items():
        kind, name = key
        if key == (MARKER_TYPE, marker):
            continue
        if key in gone:
            if gone[key] != fields:  # a section changed (comments and blanks do not count)
                return None
            continue
        if name in old_names or kind not in LIVE_TYPES or any(_UNSURE.search(value) for _, value in fields):
            return None  # a new type for a name there was, or not a device's object
        objects.append(PjsipObject(kind, name, fields))
    if any(key not in added for key in gone if key != (MARKER_TYPE, expected)):
        return None  # a section removed
    devices = sum(1 for o in objects if o.type == "endpoint")
    if not objects or devices > limit:
        return None
    objects.sort(key=lambda o: LIVE_TYPES.index(o.type))
    objects.append(PjsipObject(MARKER_TYPE, marker, added[(MARKER_TYPE, marker)]))
    return PjsipPatch(tuple(objects), devices, expected)


def _marker(sections: dict[tuple[str, str], Fields]) -> str | None:
    names = [name for kind, name in sections if kind == MARKER_TYPE and name.startswith(MARKER_PREFIX)]
    return names[0] if len(names) == 1 and names[0] != _PENDING else None


def _parts(text: str) -> list[str] | None:
    """Each section's text after its "\\n["; None for a shape this reader does not know (text
    before the first section, a section head the cut would miss)."""
    parts = cut_sections(text)
    if parts is None or any(line.strip() and not line.lstrip().startswith(";") for line in parts[0].split("\n")):
        return None
    return parts[1:]


def _read_apart(parts: list[str], other: set[str]) -> dict[tuple[str, str], Fields] | None:
    """The sections of `parts` not in `other`, by (type, name), with their fields in order
    (without `type`); None for one this reader does not take (a template, a line that is no
    `key=value`, no type or two, a section twice)."""
    read: dict[tuple[str, str], Fields] = {}
    for part in parts:
        if part in other:
            continue
        head, _, body = part.partition("\n")
        found = _HEAD.match("[" + head.strip())
        fields = _fields(body)
        if found is None or fields is None:
            return None
        kinds = [value for key, value in fields if key == "type"]
        key = (kinds[0], found.group(1)) if len(kinds) == 1 else None
        if key is None or key in read:
            return None
        read[key] = tuple((k, v) for k, v in fields if k != "type")
    return read


def _fields(body: str) -> Fields | None:
    """A section's `key=value` lines in order; None for a line that is none."""
    fields: list[tuple[str, str]] = []
    for raw in body.split("\n"):
        line = raw.strip()
        if not line or line[0] == ";":
            continue
        field = _FIELD.match(line)
        if field is None:
            return None
        fields.append((field.group(1), field.group(2).strip()))
    return tuple(fields)

