"""The rooms of the code and what each may import (docs/architecture.md draws the same picture).

Imports inside functions count: a lazy import that runs back up is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each room and the rooms it may import. Nothing imports `cli`, the top.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "prompts": {"base"},
    "asterisk_host": set(),
    "notify": {"base"},
    "callstate": {"base"},
    "vmstore": {"base"},
    "asterisk_conf": {"base"},
    "agi": {"base", "callstate"},
    "ari_app": {"base", "callstate", "vmstore", "notify", "prompts", "agi"},
    "testphone": {"base", "asterisk_conf", "asterisk_host", "ari_app"},
    "web": {"base", "callstate", "vmstore", "notify", "prompts", "agi", "ari_app"},
    "cluster": {"base", "asterisk_conf", "callstate"},
    "backup": {"base", "callstate", "vmstore"},
    "doctor": {"base", "asterisk_conf", "callstate", "prompts"},
    "cli": {"base", "asterisk_conf", "asterisk_host", "callstate", "vmstore", "notify", "prompts", "agi",
            "ari_app", "testphone", "web", "cluster", "backup", "doctor"},
}


def rooms_imported_by(room: str) -> dict[str, list[str]]:
    """Room imported → the modules of `room` that import it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ALLOWED and top != room:
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_room_is_listed() -> None:
    rooms = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "build"}
    assert rooms == set(ALLOWED)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_rooms_below_it(room: str) -> None:
    wrong = {other: modules for other, modules in rooms_imported_by(room).items() if other not in ALLOWED[room]}
    assert not wrong, f"{room} imports rooms it may not: {wrong}"


def test_the_allowed_map_has_no_cycle() -> None:
    # Depth-first: a room reached again while still on the path is a cycle.
    state: dict[str, str] = {}

    def visit(room: str, path: list[str]) -> None:
        state[room] = "open"
        for below in ALLOWED[room]:
            assert state.get(below) != "open", f"cycle: {' -> '.join([*path, room, below])}"
            if below not in state:
                visit(below, [*path, room])
        state[room] = "done"

    for room in ALLOWED:
        if room not in state:
            visit(room, [])
