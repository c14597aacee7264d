"""Check rendered Asterisk files before they go live.

A deploy must never hand Asterisk a file it would half-load. This reads the files back with
Asterisk's own line grammar (sections, `key=value`, `key => value`, comments) and checks the
references between them: every endpoint's auth and aor exist, every dialplan context that
pjsip.conf or a Goto/Gosub/include names is defined.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

from . import gcpause
from .sections import cut_sections

_SECTION = re.compile(r"^\[([A-Za-z0-9_.+-]+)\](\([!A-Za-z0-9_,-]*\))?$")
_SETTING = re.compile(r"^([A-Za-z0-9_.+*#-]+)\s*(=>|=)\s*(.*)$")
# Dialplan applications that jump to a context named in their first argument.
_JUMP = re.compile(r"\b(?:Goto|Gosub)\(([A-Za-z0-9_-]+),[^,()]+,")
_CONDITIONAL_JUMP = re.compile(r"\?([A-Za-z0-9_-]+),[^,()]+,")


@dataclass
class Section:
    name: str
    line: int
    settings: list[tuple[str, str, int]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        for k, v, _ in self.settings:
            if k == key:
                return v
        return None


def parse(text: str, filename: str) -> tuple[list[Section], list[str]]:
    """Sections of an Asterisk config file, and every line that breaks its grammar."""
    sections: list[Section] = []
    errors: list[str] = []
    # Bound once: this runs for every line of a 20 MB pjsip.conf (880,000 lines at 20,000 users).
    section_match, setting_match = _SECTION.match, _SETTING.match
    settings: list[tuple[str, str, int]] | None = None  # the last section's
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] == ";":
            continue
        if line[0] == "#":
            errors.append(f"{filename}:{number}: directive {line.split()[0]!r} is never generated")
            continue
        if line[0] == "[" and (match := section_match(line)):
            section = Section(match.group(1), number)
            sections.append(section)
            settings = section.settings
            continue
        if match := setting_match(line):
            if settings is None:
                errors.append(f"{filename}:{number}: setting outside any section")
                continue
            key, _, value = match.groups()
            # A backslash before it escapes a ";" (a SIP URI parameter such as ";lr").
            if ";" in value and ";" in value.replace("\\;", ""):
                errors.append(f"{filename}:{number}: ';' inside a value would start a comment")
            settings.append((key, value, number))
            continue
        errors.append(f"{filename}:{number}: not an Asterisk config line: {line[:60]!r}")
    return sections, errors


def check(files: dict[str, str], live: dict[str, str] | None = None) -> list[str]:
    """Every problem found in a rendered set of files; empty means it may be deployed.

    `live`: the files in place now, which passed this check. When only some sections of
    pjsip.conf and extensions.conf differ from them (a user added or changed), only those are
    read line by line and their references checked against every section's name: a second,
    not a whole check of 900,000 lines. Whenever that cannot prove the files fine (a section
    removed, anything unusual), the whole check runs, and every problem comes from it."""
    with gcpause.paused():  # a million small acyclic objects (see gcpause)
        if live and _fine_as_changed(files, live):
            return []
        return _check(files)


# Line breaks other than "\n" that splitlines() also honours: a file with one is checked whole
# (the sections below are cut at "\n[", their lines at "\n").
_OTHER_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_LARGE = ("pjsip.conf", "extensions.conf")
MAX_GONE = 50  # sections gone, each searched for in every file; more: the whole check


@dataclass
class _Changed:
    """A large file cut into sections (their text after "\n["), compared with its live one."""

    keys: list[tuple[str, str]]  # (type, name) of every section, in order ("" type in the dialplan)
    added: list[Section]  # the sections not in the live file, as parse() reads them
    gone: set[str]  # the names of the sections the live file had and this one has not


def _fine_as_changed(files: dict[str, str], live: dict[str, str]) -> bool:
    for name, text in files.items():
        if name not in _LARGE and text != live.get(name) and parse(text, name)[1]:
            return False
    pjsip = _changed(live.get("pjsip.conf"), files.get("pjsip.conf"), "pjsip.conf", typed=True)
    dialplan = _changed(live.get("extensions.conf"), files.get("extensions.conf"), "extensions.conf", typed=False)
    if pjsip is None or dialplan is None:
        return False
    # A section gone is fine where its name is in no file: nothing can name it (an endpoint's
    # context is named in pjsip.conf).
    if any(name in text for name in pjsip.gone | dialplan.gone for text in files.values()):
        return False
    by_type: dict[str, set[str]] = defaultdict(set)
    for kind, name in pjsip.keys:
        by_type[kind].add(name)
    contexts = {name for _, name in dialplan.keys}
    if len(set(pjsip.keys)) != len(pjsip.keys):
        return False  # a section twice
    # Only the new sections' references: the others' were checked live, and nothing went away.
    for section in pjsip.added:
        kind = section.get("type") or ""
        if kind == "endpoint":
            context = section.get("context")
            if _missing_refs(section, by_type) or (context and context not in contexts):
                return False
        elif kind == "identify" and section.get("endpoint") not in by_type["endpoint"]:
            return False
    return all(target in contexts for section in dialplan.added
               for key, value, _ in section.settings for target in _jump_targets(key, value))


def _changed(old: str | None, new: str | None, filename: str, *, typed: bool) -> _Changed | None:
    """`new` against `old` (which passed), or None when the cut cannot prove it: no old file,
    an unusual line, a new section that breaks the grammar, too many sections gone (each is
    searched for in every file)."""
    if old is None or new is None or any(c in text for text in (old, new) for c in _OTHER_BREAKS):
        return None
    old_parts, new_parts = cut_sections(old), cut_sections(new)
    if old_parts is None or new_parts is None or old_parts[0] != new_parts[0]:
        return None  # a head the cut would miss; the text before the first section
    keys = [_key(part, typed) for part in new_parts[1:]]
    old_set = set(old_parts)
    # A dialplan context is checked line by line: of one that changed (a user's line added to a
    # context of 20,000), only the lines it did not have. A pjsip section is read whole.
    old_contexts = {} if typed else {part[:part.find("]")]: part for part in old_parts[1:]}
    added: list[Section] = []
    for part in new_parts[1:]:
        if part in old_set:
            continue
        head, _, body = part.partition("\n")
        was = old_contexts.get(head[:head.find("]")])
        if was is not None:
            had = set(was.split("\n"))
            body = "\n".join(line for line in body.split("\n") if line not in had)
        sections, problems = parse(f"[{head}\n{body}", filename)
        if problems or len(sections) != 1:
            return None
        added.extend(sections)
    new_set, new_keys = set(new_parts), set(keys)
    gone = {_key(part, typed) for part in old_parts[1:] if part not in new_set} - new_keys
    if len(gone) > MAX_GONE:
        return None
    return _Changed(keys, added, {name for _, name in gone})


def _key(part: str, typed: bool) -> tuple[str, str]:
    """(type, name) of a section from its text after "\n[": string operations only."""
    name = part[:part.find("]")]
    if not typed:
        return "", name
    at = part.find("\ntype=")
    if at < 0:
        return "", name
    end = part.find("\n", at + 1)
    return part[at + 6:end if end >= 0 else None].strip(), name


def _check(files: dict[str, str]) -> list[str]:
    errors: list[str] = []
    parsed: dict[str, list[Section]] = {}
    for name, text in files.items():
        sections, problems = parse(text, name)
        parsed[name] = sections
        errors.extend(problems)
    errors.extend(_check_pjsip(parsed.get("pjsip.conf", [])))
    errors.extend(_check_dialplan(parsed.get("extensions.conf", []), parsed.get("pjsip.conf", [])))
    return errors


def _check_pjsip(sections: list[Section]) -> list[str]:
    errors: list[str] = []
    by_type: dict[str, dict[str, Section]] = defaultdict(dict)
    for section in sections:
        kind = section.get("type") or ""
        if section.name in by_type[kind]:
            errors.append(f"pjsip.conf:{section.line}: duplicate {kind} [{section.name}]")
        by_type[kind][section.name] = section
    for endpoint in by_type["endpoint"].values():
        for kind, ref in _missing_refs(endpoint, by_type):
            errors.append(f"pjsip.conf:{endpoint.line}: endpoint [{endpoint.name}] names missing {kind} [{ref}]")
    for identify in by_type["identify"].values():
        if identify.get("endpoint") not in by_type["endpoint"]:
            errors.append(f"pjsip.conf:{identify.line}: identify [{identify.name}] names a missing endpoint")
    return errors


def _check_dialplan(extensions: list[Section], pjsip: list[Section]) -> list[str]:
    errors: list[str] = []
    contexts = {s.name for s in extensions}
    for section in extensions:
        for key, value, line in section.settings:
            for target in _jump_targets(key, value):
                if target not in contexts:
                    errors.append(f"extensions.conf:{line}: [{section.name}] jumps to missing context [{target}]")
    for section in pjsip:
        context = section.get("context")
        if section.get("type") == "endpoint" and context and context not in contexts:
            errors.append(f"pjsip.conf:{section.line}: endpoint [{section.name}] uses missing context [{context}]")
    return errors


_ENDPOINT_REFS = (("auth", "auth"), ("aors", "aor"), ("transport", "transport"))  # key, kind


def _missing_refs(endpoint: Section, names: Mapping[str, Container[str]]) -> list[tuple[str, str]]:
    """(kind, name) of each auth, aor and transport `endpoint` names that `names[kind]` lacks."""
    return [(kind, ref) for key, kind in _ENDPOINT_REFS
            for ref in filter(None, (endpoint.get(key) or "").split(",")) if ref not in names[kind]]


def _jump_targets(key: str, value: str) -> list[str]:
    """The contexts a dialplan line names: an include's, a Goto's or Gosub's."""
    if key == "include":
        return [value.strip()]
    if key in ("exten", "same"):
        return _JUMP.findall(value) + _CONDITIONAL_JUMP.findall(value)
    return []
