"""Tenants checked before, not checked again: most of a large platform's validation.

A one-user change of 100 tenants × 1,000 users checked every user again: 2.5 s of the change
(bench/README.md). A tenant's check reads only its own YAML, the platform and this code, so
its result is kept in the parse cache (yamlsource.ParseCache, the operator's own 0700 folder),
found by a digest of exactly those: the model of the tenant and the values it claims that must
be unique across tenants (numbers, device ids, its id and domain...).

What stays whole on every run: the checks across tenants. The unique values of the tenants found
here are held against each other and against those the checked tenants put in `Uniques`;
should any value be used twice, the whole configuration is checked again without this cache,
so that every problem names its file, line and key as before. Only tenants whose check found no
problem are kept.
"""

from __future__ import annotations

import hashlib
import marshal
from dataclasses import fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any

from base.model import Activity, Device, Tenant, TenantNumber, User
from base.outbound import OutboundPolicy

from .checks import Uniques
from .yamlsource import ParseCache

UniqueKey = tuple[str, str, str]  # (what, scope, value), as Uniques keys them
# The model classes a tenant is made of, by name: nothing else is ever built from the cache.
_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Tenant, User, Device, TenantNumber, Activity, OutboundPolicy)}


class NotPlain(Exception):
    pass


class CheckedTenants:
    """Tenants checked under one platform, in `cache`."""

    def __init__(self, cache: ParseCache, platform: object) -> None:
        self.cache = cache
        self._base = hashlib.sha256(b"tenant\0" + _code_digest() + repr(platform).encode())
        self.used = False  # whether a tenant came from here in this run
        self._claimed: set[UniqueKey] = set()  # the unique values of the tenants from here
        self._repeated = False

    def key(self, item: Any) -> str | None:
        try:
            raw = marshal.dumps(item)
        except ValueError:
            return None
        digest = self._base.copy()
        digest.update(raw)
        return "tenant-" + digest.hexdigest()  # beside the parsed files, told apart by name

    def get(self, key: str) -> tuple[Tenant, list[UniqueKey]] | None:
        found = self.cache.get(key)
        if not isinstance(found, tuple) or len(found) != 2:  # missing, or not what put() writes
            return None
        try:
            tenant = _decode(found[0])
        except (KeyError, TypeError, IndexError, ValueError):
            return None  # an entry of another model: checked again
        if not isinstance(tenant, Tenant):
            return None
        self.used = True
        claimed = self._claimed
        for unique in found[1]:
            if unique in claimed:
                self._repeated = True
            claimed.add(unique)
        return tenant, found[1]

    def clash(self, uniques: Uniques) -> bool:
        """Whether a unique value of a tenant from here is used twice: by two of them, or by
        one of them and a tenant checked in this run (in `uniques`)."""
        return self._repeated or not self._claimed.isdisjoint(uniques.seen)

    def put(self, key: str, tenant: Tenant, uniques: list[UniqueKey]) -> None:
        try:
            self.cache.put(key, (_encode(tenant), tuple(uniques)))
        except NotPlain:
            pass


class RecordingUniques:
    """`Uniques` as one tenant's check fills it, remembering the keys it added."""

    def __init__(self, inner: Uniques) -> None:
        self.inner = inner
        self.keys: list[UniqueKey] = []

    def add(self, what: str, scope: str, value: str, place: Any) -> None:
        self.keys.append((what, scope, value))
        self.inner.add(what, scope, value, place)

    def add_at(self, what: str, scope: str, value: str, loc: Any, part: str) -> None:
        self.keys.append((what, scope, value))
        self.inner.add_at(what, scope, value, loc, part)




def _encode(value: Any) -> Any:
    """A model object as plain values for marshal: a dataclass becomes a list (its class name,
    then its fields in order); tuples and scalars stay."""
    if is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise NotPlain(name)
        return [name, *[_encode(getattr(value, f.name)) for f in fields(value)]]
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise NotPlain(type(value).__name__)


def _decode(value: Any) -> Any:
    # Scalars are taken as they are, without a call: 100,000 users have a million of them.
    if isinstance(value, list):
        return _TYPES[value[0]](*[_decode(v) if type(v) in _NESTED else v for v in value[1:]])
    if isinstance(value, tuple):
        return tuple([_decode(v) if type(v) in _NESTED else v for v in value])
    return value


_NESTED = (list, tuple)


@cache
def _code_digest() -> bytes:
    """The checking code and the model: a change to either checks every tenant again."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(marshal.version.to_bytes(2, "big"))
    for folder in (here, here / "schema", here.parent / "base"):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()
