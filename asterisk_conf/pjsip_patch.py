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
    """A rendered pjsip.conf with its marker's name filled in: a digest of the rest."""
    if _PENDING not in text:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return text.replace(_PENDING, MARKER_PREFIX + digest, 1)


def plan(old: str, new: str, limit: int = MAX_DEVICES) -> PjsipPatch | None:
    """The objects that turn Asterisk's SIP configuration from `old` into `new`, or None when
    only a reload can (anything but new auth, aor and endpoint objects; more than `limit`)."""
    with gcpause.paused():  # both files as sections and tuples, freed before it resumes
        return _plan(old, new, limit)


def _plan(old: str, new: str, limit: int) -> PjsipPatch | None:
    before, after = _sections(old), _sections(new)
    if before is None or after is None:
        return None
    expected, marker = _marker(before), _marker(after)
    if expected is None or marker is None:
        return None
    added: list[PjsipObject] = []
    for key, text in after.items():
        if key == (MARKER_TYPE, marker):
            continue
        was = before.get(key)
        if was is not None:
            if was != text and _fields(was) != _fields(text):  # comments and blanks do not count
                return None
            continue
        kind, name = key
        fields = _fields(text)
        if kind not in LIVE_TYPES or fields is None or any(_UNSURE.search(value) for _, value in fields):
            return None
        added.append(PjsipObject(kind, name, fields))
    gone = before.keys() - after.keys() - {(MARKER_TYPE, expected)}
    devices = sum(1 for o in added if o.type == "endpoint")
    if gone or not added or devices > limit:
        return None
    added.sort(key=lambda o: LIVE_TYPES.index(o.type))
    new_marker = _fields(after[(MARKER_TYPE, marker)])
    if new_marker is None:
        return None
    added.append(PjsipObject(MARKER_TYPE, marker, new_marker))
    return PjsipPatch(tuple(added), devices, expected)


def _marker(sections: dict[tuple[str, str], str]) -> str | None:
    names = [name for kind, name in sections if kind == MARKER_TYPE and name.startswith(MARKER_PREFIX)]
    return names[0] if len(names) == 1 and names[0] != _PENDING else None


def _sections(text: str) -> dict[tuple[str, str], str] | None:
    """Each section's text (its lines after the `[name]` line) by (type, name); None for a shape
    this reader does not know (a template, text before the first section, a section without a
    type or twice). Plain string operations: a node's file has 880,000 lines, and only the
    sections that differ are read line by line."""
    parts = ("\n" + text).split("\n[")
    if any(line.strip() and not line.lstrip().startswith(";") for line in parts[0].split("\n")):
        return None
    sections: dict[tuple[str, str], str] = {}
    for part in parts[1:]:
        end = part.find("]\n")
        name = part[:end] if end > 0 else ""
        if not _HEAD.match(f"[{name}]"):
            return None
        body = part[end + 1:]
        at = body.find("\ntype=")
        if at < 0:
            return None
        kind = body[at + 6:body.find("\n", at + 1) if body.find("\n", at + 1) > 0 else None].strip()
        if (kind, name) in sections:
            return None
        sections[(kind, name)] = body
    return sections


def _fields(body: str) -> Fields | None:
    """A section's fields in order, without `type`; None for a line that is no `key=value`."""
    fields: list[tuple[str, str]] = []
    for raw in body.split("\n"):
        line = raw.strip()
        if not line or line[0] == ";":
            continue
        field = _FIELD.match(line)
        if field is None:
            return None
        if field.group(1) != "type":
            fields.append((field.group(1), field.group(2).strip()))
    return tuple(fields)
