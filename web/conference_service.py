"""The Conferences page's logic: the viewer's room (dial-in details, PIN) and its participants,
live from Asterisk over AMI (ConfbridgeList, ConfbridgeMute / ConfbridgeUnmute, ConfbridgeKick).

A participant is named on the page by a short id derived from the room's bridge and the channel,
never by the channel itself; an id is acted on only if it is in the viewer's own room right now,
so an id from another room (or a made-up one) is "not found" and changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ari_app.conference.services import bridge_name, room_number
from base.ami import AmiError, AmiSettings, ami_session
from base.model import TenantUser
from base.offload import run_blocking
from callstate import CallStateService
from callstate.conference_state import ConferenceRoom, shortest_pin

# ConfbridgeList's answers for a room with nobody in it (app_confbridge's own words).
EMPTY_ROOM = ("no active conferences", "no conference by that name")


class Ami(Protocol):
    async def action(self, action: str, **fields: str) -> dict[str, str]: ...

    async def listing(self, action: str, **fields: str) -> list[dict[str, str]]: ...


AmiOpener = Callable[[], AbstractAsyncContextManager[Ami]]


class NotInRoom(LookupError):
    """The participant id is not in the viewer's room (any more)."""


class LiveUnavailable(RuntimeError):
    """Asterisk could not be asked (AMI down or not configured)."""


@dataclass(frozen=True)
class Participant:
    id: str
    number: str
    name: str
    muted: bool
    talking: bool
    channel: str  # for the AMI actions only; never shown or sent to the browser


@dataclass(frozen=True)
class RoomView:
    number: str  # the platform's conference number
    room: str
    room_open: bool
    pin: str | None  # shown to the owner only: the page is theirs
    locked: bool
    pin_digits: int


def participant_id(bridge: str, channel: str) -> str:
    return hashlib.sha256(f"{bridge}\n{channel}".encode()).hexdigest()[:16]


class ConferenceControl:
    """Over `opener`, a fresh AMI session per request (None: Asterisk is not told)."""

    def __init__(self, opener: AmiOpener | None) -> None:
        self._opener = opener

    @classmethod
    def over(cls, settings: AmiSettings | None) -> ConferenceControl:
        return cls((lambda: ami_session(settings)) if settings is not None else None)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Ami]:
        if self._opener is None:
            raise LiveUnavailable("no AMI settings")
        try:
            async with self._opener() as session:
                yield session
        except AmiError as exc:
            raise LiveUnavailable(str(exc)) from exc

    async def participants(self, who: TenantUser) -> list[Participant]:
        bridge = bridge_name(who)
        async with self._session() as ami:
            try:
                rows = await ami.listing("ConfbridgeList", Conference=bridge)
            except AmiError as exc:
                if any(words in str(exc).lower() for words in EMPTY_ROOM):
                    return []
                raise
        return [_participant(who, bridge, row) for row in rows
                if row.get("Event") == "ConfbridgeList" and row.get("Conference") == bridge and row.get("Channel")]

    async def _find(self, who: TenantUser, pid: str) -> Participant:
        found = next((p for p in await self.participants(who) if p.id == pid), None)
        if found is None:
            raise NotInRoom(pid)
        return found

    async def set_muted(self, who: TenantUser, pid: str, muted: bool) -> Participant:
        found = await self._find(who, pid)
        async with self._session() as ami:
            await ami.action("ConfbridgeMute" if muted else "ConfbridgeUnmute", Conference=bridge_name(who),
                             Channel=found.channel)
        return found

    async def remove(self, who: TenantUser, pid: str) -> Participant:
        found = await self._find(who, pid)
        async with self._session() as ami:
            await ami.action("ConfbridgeKick", Conference=bridge_name(who), Channel=found.channel)
        return found


def _participant(who: TenantUser, bridge: str, row: dict[str, Any]) -> Participant:
    number = str(row.get("CallerIDNum") or "")
    shown = str(row.get("CallerIDName") or "")
    # A caller known as a user of the viewer's own tenant is shown by that user's name.
    name = _tenant_user(who, number) or ("" if shown in ("<unknown>", number) else shown)
    return Participant(participant_id(bridge, str(row["Channel"])), "" if number == "<unknown>" else number,
                       name, _yes(row.get("Muted")), _yes(row.get("Talking")), str(row["Channel"]))


def _tenant_user(who: TenantUser, number: str) -> str:
    for user in who.tenant.users:
        if number in (user.number, user.number.removeprefix("+"), user.extension):
            return user.name
    return ""


def _yes(value: object) -> bool:
    return str(value or "").strip().lower() == "yes"


async def room_view(state: CallStateService, who: TenantUser) -> RoomView:
    room: ConferenceRoom = await run_blocking(state.conferences.room, who.tenant.id, who.user.id)
    config = state.config
    return RoomView(config.platform.conference_number, room_number(who), room.open, room.pin,
                    room.status.locked, shortest_pin(who.tenant, config.platform.pin_digits))


async def set_pin(state: CallStateService, who: TenantUser, pin: str, actor: str) -> None:
    await run_blocking(state.conferences.set_pin, who.tenant.id, who.user.id, pin, actor=actor, source="web")
