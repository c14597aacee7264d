"""Contacts: the tenant's directory with live presence and phone state, the user's personal
contacts, and click to call. The routes in `pages/contacts.py` stay thin; this is the logic.

Phone state comes from Asterisk over the running service's ARI client (`GET /endpoints/PJSIP`:
each device's registration and its channels), fetched at most every `STATE_SECONDS` whoever
asks, so many users loading the page make one request. Without ARI (unit tests, Asterisk down)
the state is unknown.

Click to call originates a Local channel into `vipbx-ring-TENANT`, which rings the user's
devices only; when the user answers, the other half continues in the tenant's device context
`vipbx-t-TENANT` with the number and the device's own variables (VIPBX_TENANT / VIPBX_USER),
so the call is the user's own dialled call: the same outbound policy and fraud throttle apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from base.model import TenantUser, User
from base.offload import run_blocking
from callstate.contacts_state import Contact, UnknownContact
from callstate.presence import Presence
from callstate.targets import OWN_NUMBER, TargetRefused, check_outbound, own_numbers

from .deps import WebDeps

log = logging.getLogger(__name__)

PAGE_SIZE = 50
QUERY_MAX = 80
STATE_SECONDS = 3.0  # how old the phone states shown may be
CALLS_PER_MINUTE = 5  # click-to-call per user
RING_SECONDS = 45  # the originate's own limit; the ring context's Dial() ends sooner

# Phone states shown in the directory.
ON_PHONE = "on-phone"
FREE = "free"
OFFLINE = "offline"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Entry:
    user: User
    presence: Presence
    phone: str  # ON_PHONE, FREE, OFFLINE, UNKNOWN


@dataclass(frozen=True)
class DirectoryPage:
    entries: list[Entry]
    query: str
    page: int
    pages: int
    total: int


class CallRefused(Exception):
    """Click to call refused before anything rang; `reason` is a locale key's suffix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def matches(user: User, query: str) -> bool:
    """A name containing every word typed, or a number / extension containing the digits."""
    text = query.casefold()
    digits = "".join(ch for ch in query if ch.isdigit())
    if digits and digits == query.replace("+", "").replace(" ", "").replace("-", ""):
        return digits in user.number or digits in user.extension
    name = user.name.casefold()
    return all(word in name for word in text.split())


class PhoneStates:
    """Each PJSIP device's (state, busy) from ARI, cached for STATE_SECONDS; one fetch at a time."""

    def __init__(self) -> None:
        self._at = -1e9
        self._states: dict[str, tuple[str, bool]] | None = None
        self._lock = asyncio.Lock()

    async def get(self, ari: Any) -> dict[str, tuple[str, bool]] | None:
        if ari is None:
            return None
        if time.monotonic() - self._at < STATE_SECONDS:
            return self._states
        async with self._lock:
            if time.monotonic() - self._at >= STATE_SECONDS:
                self._states = await self._fetch(ari)
                self._at = time.monotonic()
        return self._states

    @staticmethod
    async def _fetch(ari: Any) -> dict[str, tuple[str, bool]] | None:
        try:
            endpoints = await ari.get("/endpoints/PJSIP")
        except Exception as exc:  # noqa: BLE001 — the page shows "unknown" rather than failing
            log.warning("contacts: phone states unavailable: %s", exc)
            return None
        return {str(e.get("resource")): (str(e.get("state", "unknown")), bool(e.get("channel_ids")))
                for e in endpoints or [] if isinstance(e, dict)}

    def forget(self) -> None:
        self._at = -1e9


def phone_state(user: User, states: dict[str, tuple[str, bool]] | None) -> str:
    if states is None or not user.devices:
        return UNKNOWN
    seen = [states[d.id] for d in user.devices if d.id in states]
    if any(busy for _, busy in seen):
        return ON_PHONE
    if any(state == "online" for state, _ in seen):
        return FREE
    return OFFLINE


class RateLimit:
    """At most `count` events per `seconds` per key (in this process)."""

    def __init__(self, count: int, seconds: float = 60.0) -> None:
        self.count, self.seconds = count, seconds
        self._seen: dict[tuple[str, str], deque[float]] = {}

    def allow(self, key: tuple[str, str]) -> bool:
        now = time.monotonic()
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] >= self.seconds:
            times.popleft()
        if len(times) >= self.count:
            return False
        times.append(now)
        return True


class ContactsService:
    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps
        self.states = PhoneStates()
        self.calls = RateLimit(CALLS_PER_MINUTE)

    async def directory(self, who: TenantUser, query: str = "", page: int = 1) -> DirectoryPage:
        """One page of the viewer's own tenant's users, by name, filtered by `query`."""
        query = " ".join(query.split())[:QUERY_MAX]
        users = sorted((u for u in who.tenant.users if not query or matches(u, query)),
                       key=lambda u: (u.name.casefold(), u.id))
        pages = max(1, -(-len(users) // PAGE_SIZE))
        page = min(max(1, page), pages)
        shown = users[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
        presences = await run_blocking(self.deps.state.contacts.presences, who.tenant.id, [u.id for u in shown])
        states = await self.states.get(self.deps.ari)
        entries = [Entry(u, presences.get(u.id, Presence()), phone_state(u, states)) for u in shown]
        return DirectoryPage(entries, query, page, pages, len(users))

    def colleague(self, who: TenantUser, user_id: str) -> User:
        """A user of the viewer's own tenant, else UnknownContact."""
        for user in who.tenant.users:
            if user.id == user_id:
                return user
        raise UnknownContact(f"no colleague {user_id!r}")

    async def call(self, who: TenantUser, number: str) -> str:
        """Rings the viewer's devices; answered, they call `number` (E.164). The number called,
        or CallRefused (nothing rang)."""
        tenant, user = who
        if number in own_numbers(tenant, user):
            raise CallRefused(OWN_NUMBER)
        try:
            check_outbound(self.deps.config, tenant, number)
        except TargetRefused as exc:
            raise CallRefused(exc.reason) from None
        if not user.devices and not (user.rings_mobile and self.deps.config.platform.mobile_core):
            raise CallRefused("no-devices")
        if self.deps.ari is None:
            raise CallRefused("unavailable")
        if not self.calls.allow((tenant.id, user.id)):
            raise CallRefused("too-many")
        try:
            await self.deps.ari.request("POST", "/channels", params={
                "endpoint": f"Local/{user.extension}@vipbx-ring-{tenant.id}",
                "context": f"vipbx-t-{tenant.id}", "extension": number, "priority": 1,
                "callerId": f"{user.name} <{user.number}>", "timeout": RING_SECONDS,
            }, json={"variables": {
                "VIPBX_TENANT": tenant.id, "VIPBX_USER": user.id,
                # The devices show whom the call is for (the Local channel's other half inherits these).
                "_VIPBX_C2C_NUMBER": number,
            }})
        except Exception as exc:  # noqa: BLE001 — the user is told it did not ring
            log.warning("contacts: click to call by %s@%s failed: %s", user.id, tenant.id, exc)
            raise CallRefused("unavailable") from None
        log.info("contacts: click to call by %s@%s to %s", user.id, tenant.id, number)
        self.states.forget()
        return number

    async def contact(self, who: TenantUser, contact_id: str) -> Contact:
        return await run_blocking(self.deps.state.contacts.contact, who.tenant.id, who.user.id, contact_id)


def contacts_service(deps: WebDeps) -> ContactsService:
    """The one per application (its phone-state cache and rate limit are shared by every request)."""
    found = deps.extras.get("contacts")
    if not isinstance(found, ContactsService):
        found = deps.extras["contacts"] = ContactsService(deps)
    return found
