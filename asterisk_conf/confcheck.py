"""Check rendered Asterisk files before they go live.

A deploy must never hand Asterisk a file it would half-load. This reads the files back with
Asterisk's own line grammar (sections, `key=value`, `key => value`, comments) and checks the
references between them: every endpoint's auth and aor exist, every dialplan context that
pjsip.conf or a Goto/Gosub/include names is defined.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from . import gcpause

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


def check(files: dict[str, str]) -> list[str]:
    """Every problem found in a rendered set of files; empty means it may be deployed."""
    with gcpause.paused():  # a million small acyclic objects (see gcpause)
        return _check(files)


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
        for key, kind in (("auth", "auth"), ("aors", "aor"), ("transport", "transport")):
            for ref in filter(None, (endpoint.get(key) or "").split(",")):
                if ref not in by_type[kind]:
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
            targets = []
            if key == "include":
                targets.append(value.strip())
            elif key in ("exten", "same"):
                targets += _JUMP.findall(value) + _CONDITIONAL_JUMP.findall(value)
            for target in targets:
                if target not in contexts:
                    errors.append(f"extensions.conf:{line}: [{section.name}] jumps to missing context [{target}]")
    for section in pjsip:
        context = section.get("context")
        if section.get("type") == "endpoint" and context and context not in contexts:
            errors.append(f"pjsip.conf:{section.line}: endpoint [{section.name}] uses missing context [{context}]")
    return errors
