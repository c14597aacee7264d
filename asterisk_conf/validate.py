"""YAML tenant files → a validated `Config`, with every problem reported at once.

Several files are merged: each may have `tenants:`, at most one may have `platform:`. The
checking machinery is `checks.py` (with the value checks of `values.py`); what a platform and a
tenant may hold is `schema/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from base.model import Config, Tenant

from . import gcpause
from .checked_tenants import CheckedTenants, RecordingUniques
from .checks import Checker, Fields, Loc, Place, Uniques, list_items
from .errors import ConfigError, Problem
from .schema.cluster import named_nodes_fit
from .schema.platform import platform
from .schema.tenant import Scope, tenant
from .values import FORBIDDEN_TEXT
from .yamlsource import INVALID, Document, ParseCache, load_all

__all__ = ["FORBIDDEN_TEXT", "ParseCache", "load_config", "validate_files"]


def _documents(chk: Checker, paths: Sequence[str | Path], cache: ParseCache | None) -> list[Document]:
    docs: list[Document] = []
    seen: dict[Path, str] = {}
    for path, doc in zip(paths, load_all(paths, cache)):
        try:
            resolved = Path(path).resolve()
        except (OSError, ValueError, RuntimeError):  # unreadable: load_yaml has said so
            resolved = Path(doc.file)
        if resolved in seen:
            chk.problems.append(
                Problem(doc.file, None, "", f"the same file as {seen[resolved]} is given twice")
            )
            continue
        seen[resolved] = doc.file
        chk.problems.extend(doc.problems)
        if doc.data is None and not doc.problems:
            chk.report(Loc(doc, ()), "the file is empty (expected platform: and/or tenants:)")
        docs.append(doc)
    return docs


def _check(paths: Sequence[str | Path], cache: ParseCache | None = None) -> tuple[Config | None, list[Problem]]:
    # The parsed trees are acyclic, so reference counting frees them; the cyclic collector would
    # only rescan hundreds of thousands of young objects again and again (superlinear time).
    with gcpause.paused():
        return _check_all(paths, cache)


def _check_all(paths: Sequence[str | Path], cache: ParseCache | None, *,
               reuse_tenants: bool = True) -> tuple[Config | None, list[Problem]]:
    chk = Checker()
    if isinstance(paths, (str, Path)):
        paths = [paths]  # a lone path would otherwise be read as a list of characters
    if not paths:
        return None, [Problem("", None, "", "no configuration file given")]
    docs = _documents(chk, paths, cache)
    platform_loc: Loc | None = None
    tenant_lists: list[tuple[Any, Loc]] = []
    for doc in docs:
        if doc.data is None:
            continue
        top = Fields(chk, Loc(doc, ()), doc.data, ("platform", "tenants"), "a configuration file")
        if top.has("platform"):
            if platform_loc is None:
                platform_loc = Loc(doc, ("platform",))
            else:
                chk.report(
                    Loc(doc, ("platform",)),
                    f"platform: is already given at {platform_loc.describe()}; "
                    "only one file may have it",
                )
        if top.has("tenants"):
            tenant_lists.append((top.data["tenants"], Loc(doc, ("tenants",))))
    plat_value = platform_loc.doc.data["platform"] if platform_loc is not None else None
    plat = platform(chk, platform_loc, plat_value)
    scope = Scope(plat, Uniques())
    for label in ("voicemail_number", "activity_number", "conference_number"):
        given = isinstance(plat_value, dict) and plat_value.get(label) is not None
        loc = platform_loc / label if platform_loc is not None and given else None
        place = Place(loc, f"the platform's default {label}")
        scope.uniques.add("number", "", getattr(plat, label), place)
    # Tenants checked before come from the cache, unless something is wrong already: a failing
    # run checks everything, so that every problem is found and named.
    checked = CheckedTenants(cache, plat) if cache is not None and reuse_tenants and not chk.problems else None
    located = [
        (_tenant(chk, item_loc, item, scope, checked), item_loc)
        for value, loc in tenant_lists
        if value is not INVALID
        for item, item_loc in list_items(chk, loc, value, "tenants")
    ]
    if checked is not None and checked.used and (checked.clash(scope.uniques) or chk.problems):
        # A value used twice (or another problem) where cached tenants take part: check it all
        # again, so that each problem names its file, line and key.
        return _check_all(paths, cache, reuse_tenants=False)
    tenants = [t for t, _ in located]
    scope.uniques.report(chk)
    named_nodes_fit(chk, plat.nodes, located)
    order = {doc.file: index for index, doc in enumerate(docs)}
    problems = sorted(chk.problems, key=lambda p: (order.get(p.file, -1), p.line or 0))
    if problems:
        return None, problems
    return Config(plat, tuple(tenants), tuple(str(path) for path in paths)), []


def _tenant(chk: Checker, loc: Loc, item: Any, scope: Scope, checked: CheckedTenants | None) -> Tenant:
    """`tenant()`, or the same tenant checked before under this platform and code."""
    key = checked.key(item) if checked is not None else None
    if checked is None or key is None:
        return tenant(chk, loc, item, scope)
    found = checked.get(key)
    if found is not None:
        return found[0]
    before = len(chk.problems)
    recorder = RecordingUniques(scope.uniques)
    scope.uniques = recorder  # type: ignore[assignment]
    try:
        result = tenant(chk, loc, item, scope)
    finally:
        scope.uniques = recorder.inner
    if len(chk.problems) == before:
        checked.put(key, result, recorder.keys)
    return result


def validate_files(paths: Sequence[str | Path], cache: ParseCache | None = None) -> list[Problem]:
    """Every problem of the configuration in `paths` (merged), in file and line order. With
    `cache`, files parsed before are not parsed again."""
    return _check(paths, cache)[1]


def load_config(paths: Sequence[str | Path], cache: ParseCache | None = None) -> Config:
    """The validated configuration of `paths` (merged); raises `ConfigError` listing every
    problem. With `cache`, files parsed before are not parsed again."""
    config, problems = _check(paths, cache)
    if config is None:
        raise ConfigError(problems)
    return config
