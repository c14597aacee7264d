"""A framework for checking YAML documents: every problem is reported at once, with its file,
line and key, and checking goes on after it (a placeholder stands in for a bad value).

A check is a function `(chk, loc, value) -> result`: it reports through `chk` at `loc` and
returns a usable placeholder ("" for text, INVALID_NUMBER for numbers) after a problem, so that
later cross-checks skip the value instead of failing on it. `Fields` reads one mapping (unknown
keys, defaults, required keys), `Uniques` collects values that must be unique. Nothing here knows
what a tenant or a platform is: that is `asterisk_conf/schema/`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import Problem
from .yamlsource import INVALID, Document, KeyPath, show

T = TypeVar("T")

_new_object = object.__new__
_set_slot = object.__setattr__


@dataclass(frozen=True, slots=True)
class Loc:
    """A place in one YAML document: its file and the key path inside it."""

    doc: Document
    path: KeyPath

    def __truediv__(self, part: str | int) -> Loc:
        # Made for every value checked (millions on a large platform): filled in directly,
        # which costs a third less than the frozen dataclass __init__. Still immutable.
        new = _new_object(Loc)
        _set_slot(new, "doc", self.doc)
        _set_slot(new, "path", self.path + (part,))
        return new

    def describe(self) -> str:
        return f"{self.doc.file}:{self.doc.line_of(self.path)} ({self.doc.key_of(self.path)})"


class Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def report(self, loc: Loc, message: str) -> None:
        doc = loc.doc
        self.problems.append(
            Problem(doc.file, doc.line_of(loc.path), doc.key_of(loc.path), message)
        )


@dataclass(frozen=True, slots=True)  # slots: one per unique value, ~400,000 on a large platform
class Place:
    """Where a value that must be unique was used; `loc` is None for a built-in default."""

    loc: Loc | None
    label: str

    def describe(self) -> str:
        return self.loc.describe() if self.loc else self.label


class Uniques:
    """Collects values that must be unique, then reports every place of every duplicate."""

    def __init__(self) -> None:
        # The first place of each value; a list of places only for values used more than once
        # (a list per value cost ~90 bytes each for the hundreds of thousands that are unique).
        self.seen: dict[tuple[str, str, str], Place | tuple[Loc, str]] = {}
        self.repeated: dict[tuple[str, str, str], list[Place | tuple[Loc, str]]] = {}

    def add(self, what: str, scope: str, value: str, place: Place | tuple[Loc, str]) -> None:
        if value:  # "" stands for a value already reported as invalid
            key = (what, scope, value)
            first = self.seen.setdefault(key, place)
            if first is not place:
                self.repeated.setdefault(key, [first]).append(place)

    def add_at(self, what: str, scope: str, value: str, loc: Loc, part: str) -> None:
        """`add` with the place `loc / part`, kept as (loc, part) until reported: this runs
        several times per user, and a Place and a Loc each would be made and kept for all."""
        self.add(what, scope, value, (loc, part))

    def report(self, chk: Checker) -> None:
        for key in self.seen:  # in order of first use, as before
            stored = self.repeated.get(key)
            if stored is None:
                continue
            places = [p if isinstance(p, Place) else Place(p[0] / p[1], "") for p in stored]
            what, _scope, value = key
            for place in places:
                if place.loc is None:
                    continue
                others = "; ".join(p.describe() for p in places if p is not place)
                chk.report(place.loc, f"{what} {show(value)} is used more than once; also {others}")


# ---------------------------------------------------------------- mappings and lists


def kind_of(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false (YAML reads unquoted yes/no/on/off as true/false: quote it)"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Fields:
    """One YAML mapping being read: reports unknown keys, hands out values with defaults."""

    def __init__(
        self, chk: Checker, loc: Loc, value: Any, known: Sequence[str], what: str, example: str = ""
    ) -> None:
        self.chk, self.loc = chk, loc
        # Not a mapping: one problem here, none for each of its "missing" keys.
        self.is_mapping = isinstance(value, dict)
        self.data: dict[str, Any] = value if isinstance(value, dict) else {}
        if not self.is_mapping and value is not INVALID:
            shape = f"key: value, e.g. {example}" if example else "key: value"
            chk.report(loc, f"{what} must be a mapping ({shape}), not {kind_of(value)}")
        for key in self.data:
            if key not in known:
                guess = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                chk.report(loc / key, f"unknown key {show(key)}{hint}; allowed: {', '.join(known)}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(
        self,
        key: str,
        parse: Callable[[Checker, Loc, Any], T],
        default: T,
        missing: str | None = None,
    ) -> T:
        """`parse` the value; an absent or empty (null) key gives `default`, or, when `missing`
        is set, is a problem with that message. `parse` returns a placeholder after a problem."""
        value = self.data.get(key)
        if value is None:
            if missing and self.is_mapping:
                self.chk.report(self.loc / key, missing)
            return default
        if value is INVALID:
            return default
        return parse(self.chk, self.loc / key, value)

    def items(self, key: str, what: str) -> list[tuple[Any, Loc]]:
        """The items of an optional list, each with its place; absent or empty gives none."""
        none: list[tuple[Any, Loc]] = []
        return self.get(key, lambda chk, loc, value: list_items(chk, loc, value, what), none)


def list_items(chk: Checker, loc: Loc, value: Any, what: str) -> list[tuple[Any, Loc]]:
    if not isinstance(value, list):
        chk.report(loc, f"must be a list of {what}, not {kind_of(value)}")
        return []
    return [(item, loc / index) for index, item in enumerate(value) if item is not INVALID]


def string_value(chk: Checker, loc: Loc, value: Any, example: str) -> str | None:
    """Text values only: an unquoted 0123 or +358... would be read by YAML as an integer."""
    if isinstance(value, str):
        return value
    hint = f" (write it in quotes, e.g. {example})" if isinstance(value, (int, float)) else ""
    chk.report(loc, f"must be text, not {kind_of(value)}{hint}")
    return None
