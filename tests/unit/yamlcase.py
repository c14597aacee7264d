"""Writing one tenant's YAML in a test and reading back the model or the problems found, by file,
line and key. Tests using it run in a temporary folder (their own `in_tmp` fixture)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from asterisk_conf.errors import Problem
from asterisk_conf.validate import load_config, validate_files
from base.model import Tenant


def tenant_yaml(extra: str = "", country: str = "358") -> str:
    """One tenant; `extra` (YAML at tenant level) starts on line 6."""
    head = ("tenants:\n"
            "  - id: acme\n"
            "    name: Acme Oy\n"
            "    domain: acme.example\n"
            f'    country_code: "{country}"\n')
    users = ("    users:\n"
             "      - id: anna\n"
             "        name: Anna Virtanen\n"
             '        number: "+358401110001"\n'
             '        extension: "101"\n'
             '        pin: "480264"\n')
    return head + textwrap.indent(extra, "    ") + users


def write(text: str) -> str:
    Path("acme.yaml").write_text(text, encoding="utf-8")
    return "acme.yaml"


def tenant(text: str) -> Tenant:
    return load_config([write(text)]).tenants[0]


def problems(text: str) -> list[Problem]:
    return validate_files([write(text)])


def find(found: list[Problem], line: int, key: str, *words: str) -> Problem:
    hits = [p for p in found if (p.file, p.line, p.key) == ("acme.yaml", line, key)
            and all(w in p.message for w in words)]
    assert len(hits) == 1, "\n".join(map(str, found)) or "no problems"
    return hits[0]
