"""A change of extensions.conf made live through AMI instead of a pbx_config reload.

A pbx_config reload rebuilds the whole dialplan, and Asterisk removes and re-adds every hint on
the way, each removal searching every hint device: about a minute at 20,000 users, whatever
changed (bench/README.md). When a deploy changes extensions only (a user added, removed or
changed), adding and removing those extensions through AMI (`DialplanExtensionAdd` and
`DialplanExtensionRemove`) gives Asterisk the same dialplan in milliseconds. Their registrar is
pbx_config, as if read from the file, so the next reload replaces them with the file's.

Anything else (a context added or removed, an include, [globals], a label, a line this parser
does not read exactly as pbx_config does) is not patched: `plan()` answers None and the deploy
reloads pbx_config as before.

A patch is only right against the dialplan it was planned from, and Asterisk may run another
(a `deploy --no-reload`, a start that failed). So each rendered file carries its digest in the
global `VIPBX_DIALPLAN`: the patch first reads Asterisk's, goes ahead only if it is the old
file's, and ends by setting it to the new file's (a reload sets it from the file).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from . import gcpause
from .sections import cut_sections, has_indented_head

# More extensions than this are reloaded: the reload's cost does not grow with the change.
MAX_EXTENSIONS = 2000
HINT = "hint"
FINGERPRINT = "VIPBX_DIALPLAN"  # the global holding the digest of the dialplan Asterisk runs
_PENDING = f"{FINGERPRINT}=pending"

_HEAD = re.compile(r"\[([A-Za-z0-9_.+-]+)\]$")
_EXTEN = re.compile(r"exten => ([^,]+),([^,]+),(.*)$")
_SAME = re.compile(r"same => ([^,]+),(.*)$")
_NAME = re.compile(r"_?[A-Za-z0-9+*#.!\[\]-]+$")
_CALL = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\((.*)\))?$")
# pbx_config reads these differently from a plain split (comments, escapes, quotes, variables
# in the name): an extension holding one is left to the reload.
_UNSURE = re.compile(r"[;\\\"]")

Step = tuple[str, dict[str, str]]  # an AMI action and its fields


@dataclass(frozen=True)
class Priority:
    number: str  # "1", "2", ... or "hint"
    app: str
    data: str


@dataclass
class _Extension:
    priorities: dict[str, Priority] = field(default_factory=dict)
    last: int = 0
    exact: bool = True  # read exactly as pbx_config reads it


@dataclass
class _Context:
    lines: list[str] = field(default_factory=list)  # everything but extensions, in order
    # Each extension's own lines (its `exten =>` lines and their `same =>`), as written: only
    # the extensions whose lines differ are read further.
    extensions: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DialplanPatch:
    steps: tuple[Step, ...]  # the last one sets FINGERPRINT to the new file's
    extensions: int  # how many extensions it adds, changes or removes
    expected: str  # FINGERPRINT of the dialplan it changes: Asterisk must be running that one


class DialplanNotLive(Exception):
    """Asterisk does not run the dialplan a patch was planned from: reload the file instead."""


def stamp(text: str) -> str:
    """A rendered extensions.conf with its FINGERPRINT filled in: a digest of the rest."""
    if _PENDING not in text:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return text.replace(_PENDING, f"{FINGERPRINT}={digest}", 1)


def plan(old: str, new: str, limit: int = MAX_EXTENSIONS) -> DialplanPatch | None:
    """The AMI steps that turn the dialplan of `old` into that of `new`, or None when only a
    reload can (or more than `limit` extensions change)."""
    with gcpause.paused():  # both files as lists of lines, freed before it resumes (see gcpause)
        return _plan(old, new, limit)


def _plan(old: str, new: str, limit: int) -> DialplanPatch | None:
    read_old, read_new = _read_both(old, new)
    if read_old is None or read_new is None:
        return None
    (before, expected), (after, fingerprint) = read_old, read_new
    if not expected or not fingerprint or before.keys() != after.keys():
        return None
    steps: list[Step] = []
    count = 0
    for name, context in after.items():
        was = before[name]
        if was.lines != context.lines:
            return None
        for exten in was.extensions.keys() | context.extensions.keys():
            old_lines, new_lines = was.extensions.get(exten), context.extensions.get(exten)
            if old_lines == new_lines:
                continue
            old_ext = _extension(exten, old_lines) if old_lines is not None else None
            new_ext = _extension(exten, new_lines) if new_lines is not None else None
            if old_ext is not None and new_ext is not None and old_ext.priorities == new_ext.priorities:
                continue  # the same priorities, written otherwise
            if (old_ext is not None and not old_ext.exact) or (new_ext is not None and not new_ext.exact):
                return None
            count += 1
            if count > limit:
                return None
            steps.extend(_steps(name, exten, old_ext, new_ext))
    steps.append(("Setvar", {"Variable": FINGERPRINT, "Value": fingerprint}))
    return DialplanPatch(tuple(steps), count, expected)


def _steps(context: str, exten: str, old: _Extension | None, new: _Extension | None) -> list[Step]:
    where = {"Context": context, "Extension": exten}
    if new is None:
        return [("DialplanExtensionRemove", where)]
    steps: list[Step] = []
    keep = old is not None and old.priorities.keys() <= new.priorities.keys()
    if old is not None and not keep:
        # A priority goes away: AMI removes one by number only (not a hint), so the extension
        # is put back whole. Calls to it in that instant find no extension.
        steps.append(("DialplanExtensionRemove", where))
    for number, priority in new.priorities.items():
        if keep and old is not None and old.priorities.get(number) == priority:
            continue
        fields = {**where, "Priority": number, "Application": priority.app, "ApplicationData": priority.data}
        if keep and old is not None and number in old.priorities:
            fields["Replace"] = "yes"  # in place: no instant without the extension
        steps.append(("DialplanExtensionAdd", fields))
    return steps


def _read_both(old: str, new: str) -> tuple[tuple[dict[str, _Context], str] | None,
                                            tuple[dict[str, _Context], str] | None]:
    """`_read` of both files, where only the contexts whose text differs are read line by line:
    a node's dialplan has 200,000 lines, and a user's change touches a few contexts. The others
    are one empty `_Context` on both sides, which plan() finds equal."""
    if has_indented_head(old) or has_indented_head(new):
        return _read(old), _read(new)  # a head the cut at "\n[" would miss: read it all
    cut_old, cut_new = _cut(old), _cut(new)
    if cut_old is None or cut_new is None:
        return None, None
    unchanged = _Context()
    read: list[tuple[dict[str, _Context], str] | None] = []
    for mine, theirs in ((cut_old, cut_new), (cut_new, cut_old)):
        contexts: dict[str, _Context] = {}
        fingerprint = ""
        for name, part in mine.items():
            if theirs.get(name) == part:
                contexts[name] = unchanged
                continue
            found = _read("[" + part)
            if found is None or list(found[0]) != [name]:
                break
            contexts[name] = found[0][name]
            fingerprint = found[1] or fingerprint
        else:
            read.append((contexts, fingerprint))
            continue
        read.append(None)
    return read[0], read[1]


def _cut(text: str) -> dict[str, str] | None:
    """Each context's text after its "\n[", by name; None when something stands before the
    first context or a context comes twice."""
    parts = cut_sections(text)
    if parts is None or _read(parts[0]) != ({}, ""):
        return None
    cut: dict[str, str] = {}
    for part in parts[1:]:
        head = _HEAD.match("[" + part.partition("\n")[0].strip())
        if head is None or head.group(1) in cut:
            return None
        cut[head.group(1)] = part
    return cut



def _read(text: str) -> tuple[dict[str, _Context], str] | None:
    """Contexts by name, each extension's lines under its name, and the file's FINGERPRINT (""
    without one); None for a file whose shape this reader does not know (text before the first
    context, a repeated context). Plain string operations: a node's file has 200,000 lines."""
    fingerprint = ""
    contexts: dict[str, _Context] = {}
    context: _Context | None = None
    current: list[str] | None = None
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] == ";":
            continue
        if line[0] == "[":
            head = _HEAD.match(line)
            if head is None or head.group(1) in contexts:
                return None
            context = contexts[head.group(1)] = _Context()
            current = None
            continue
        if context is None:
            return None
        if line.startswith("exten =>"):
            comma = line.find(",")
            if comma > 0:
                current = context.extensions.setdefault(line[8:comma].strip(), [])
                current.append(line)
                continue
        elif line.startswith("same =>") and current is not None:
            current.append(line)
            continue
        elif line.startswith(FINGERPRINT + "="):
            fingerprint = line.partition("=")[2].strip()
            fingerprint = "" if f"{FINGERPRINT}={fingerprint}" == _PENDING else fingerprint
            continue
        context.lines.append(line)
    return contexts, fingerprint


def _extension(name: str, lines: list[str]) -> _Extension:
    """An extension's priorities, as pbx_config reads its lines."""
    extension = _Extension(exact=bool(_NAME.match(name)))
    for line in lines:
        exten = _EXTEN.match(line)
        if exten:
            _add(extension, exten.group(2).strip(), exten.group(3))
            continue
        same = _SAME.match(line)
        if same:
            _add(extension, same.group(1).strip(), same.group(2))
        else:
            extension.exact = False
    return extension


def _add(extension: _Extension, number: str, rest: str) -> None:
    if _UNSURE.search(rest):
        extension.exact = False
    if number == HINT:
        # pbx_config keeps a hint's whole text (devices, then presence) as its "application".
        priority = Priority(HINT, rest.strip(), "")
        extension.last = -1
    else:
        if number == "n" and extension.last > 0:
            value = extension.last + 1
        elif number.isdigit() and int(number) > 0:
            value = int(number)
        else:  # labels, "n" after a hint or first, "s", "n+2": left to the reload
            extension.exact = False
            return
        call = _CALL.match(rest.strip())
        if call is None:
            extension.exact = False
            return
        priority = Priority(str(value), call.group(1), call.group(2) or "")
        extension.last = value
    if priority.number in extension.priorities:
        extension.exact = False  # pbx_config keeps the first and warns: not ours to guess
        return
    extension.priorities[priority.number] = priority
