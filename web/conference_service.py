"""The Conferences page's logic: the viewer's room (dial-in details, PIN) and its participants,
live from Asterisk over AMI.

The AMI user has the write classes `system,call,user` only (docs/security.md): `reporting`, which
ConfbridgeList needs, would also open ShowDialPlan. So the room is read with Getvar (`call`):
`CONFBRIDGE_CHANNELS(parties,ROOM)` names the channels, `CALLERID()` of each says who; ConfbridgeMute /
ConfbridgeUnmute / ConfbridgeKick are `call` too. Mute is the page's only way to mute (the rooms have
no key menu), and each mute also sets `VIPBX_CONF_MUTED` on the channel, which the list reads back.

A participant is named on the page by a short id derived from the room's bridge and the channel,
never by the channel itself; an id is acted on only if it is in the viewer's own room right now,
so an id from another room (or a made-up one) is "not found" and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ari_app.conference.services import bridge_name, room_number
from base.ami import AmiError, AmiSettings, AmiTimeout, ami_session
from base.model import TenantUser
from base.offload import run_blocking
from callstate import CallStateService
from callstate.conference_state import ConferenceRoom, shortest_pin

MUTED_VARIABLE = "VIPBX_CONF_MUTED"


class Ami(Protocol):
    async def action(self, action: str, **fields: str) -> dict[str, str]: ...


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
    channel: str  # for the AMI actions only; never shown or sent to the browser


@dataclass(frozen=True)
class RoomView:
    number: str  # the platform's conference number
    room: str
    pin: str | None  # shown to the owner only: the page is theirs
    locked: bool
    pin_digits: int


def participant_id(bridge: str, channel: str) -> str:
    return hashlib.sha256(f"{bridge}\n{channel}".encode()).hexdigest()[:16]


class ConferenceControl:
    """Over `opener`, an AMI session per question (None: Asterisk is not told), shared by every
    request: at most `MAX_SESSIONS` open at once, and a room's participants asked at most once per
    `FRESH_SECONDS` however many pages poll it (each poll would otherwise be an AMI login)."""

    MAX_SESSIONS = 4
    FRESH_SECONDS = 1.0

    def __init__(self, opener: AmiOpener | None) -> None:
        self._opener = opener
        self._sessions = asyncio.Semaphore(self.MAX_SESSIONS)
        self._answers: dict[str, tuple[float, asyncio.Future[list[Participant]]]] = {}

    @classmethod
    def over(cls, settings: AmiSettings | None) -> ConferenceControl:
        return cls((lambda: ami_session(settings)) if settings is not None else None)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Ami]:
        if self._opener is None:
            raise LiveUnavailable("no AMI settings")
        try:
            async with self._sessions, self._opener() as session:
                yield session
        except AmiError as exc:
            raise LiveUnavailable(str(exc)) from exc

    async def participants(self, who: TenantUser, *, fresh: bool = False) -> list[Participant]:
        """Who is in the viewer's room: the answer being fetched or fetched within
        `FRESH_SECONDS` is shared, unless `fresh` asks Asterisk now (and shares that answer)."""
        bridge = bridge_name(who)
        loop = asyncio.get_running_loop()
        now = loop.time()
        asked = self._answers.get(bridge)
        if fresh or asked is None or not self._usable(*asked, now):
            for stale in [b for b, answer in self._answers.items() if not self._usable(*answer, now)]:
                del self._answers[stale]
            asked = (now, asyncio.ensure_future(self._ask(who, bridge)))
            self._answers[bridge] = asked
        return list(await asyncio.shield(asked[1]))

    def _usable(self, asked_at: float, answer: asyncio.Future[list[Participant]], now: float) -> bool:
        """Still being fetched, or fetched well and fresh (a failure is asked again at once)."""
        if not answer.done():
            return True
        return now - asked_at <= self.FRESH_SECONDS and not answer.cancelled() and answer.exception() is None

    def _forget(self, bridge: str) -> None:
        """After a change to the room: the next question goes to Asterisk."""
        self._answers.pop(bridge, None)

    async def _ask(self, who: TenantUser, bridge: str) -> list[Participant]:
        found: list[Participant] = []
        async with self._session() as ami:
            listed = await ami.action("Getvar", Variable=f"CONFBRIDGE_CHANNELS(parties,{bridge})")
            for channel in filter(None, str(listed.get("Value") or "").split(",")):
                try:
                    number, name, muted = [await _channel_var(ami, channel, variable)
                                           for variable in ("CALLERID(num)", "CALLERID(name)", MUTED_VARIABLE)]
                except AmiError:
                    continue  # left the room meanwhile
                found.append(_participant(who, bridge, channel, number, name, muted == "1"))
        return found

    async def _find(self, who: TenantUser, pid: str) -> Participant:
        found = next((p for p in await self.participants(who) if p.id == pid), None)
        if found is None:
            raise NotInRoom(pid)
        return found

    async def set_muted(self, who: TenantUser, pid: str, muted: bool) -> Participant:
        found = await self._find(who, pid)
        try:
            async with self._session() as ami, _still_there(pid):
                await ami.action("ConfbridgeMute" if muted else "ConfbridgeUnmute", Conference=bridge_name(who),
                                 Channel=found.channel)
                await ami.action("Setvar", Channel=found.channel, Variable=MUTED_VARIABLE, Value="1" if muted else "")
        finally:
            self._forget(bridge_name(who))
        return found

    async def remove(self, who: TenantUser, pid: str) -> Participant:
        found = await self._find(who, pid)
        try:
            async with self._session() as ami, _still_there(pid):
                await ami.action("ConfbridgeKick", Conference=bridge_name(who), Channel=found.channel)
        finally:
            self._forget(bridge_name(who))
        return found


@contextlib.asynccontextmanager
async def _still_there(pid: str) -> AsyncIterator[None]:
    """Asterisk refusing an action on a participant found a moment ago: they have left."""
    try:
        yield
    except AmiTimeout:
        raise
    except AmiError as exc:
        raise NotInRoom(pid) from exc


async def _channel_var(ami: Ami, channel: str, variable: str) -> str:
    return str((await ami.action("Getvar", Channel=channel, Variable=variable)).get("Value") or "")


def _participant(who: TenantUser, bridge: str, channel: str, number: str, shown: str, muted: bool) -> Participant:
    number = "" if number == "<unknown>" else number
    # A caller known as a user of the viewer's own tenant is shown by that user's name.
    name = _tenant_user(who, number) or ("" if shown in ("<unknown>", number) else shown)
    return Participant(participant_id(bridge, channel), number, name, muted, channel)


def _tenant_user(who: TenantUser, number: str) -> str:
    for user in who.tenant.users:
        if number in (user.number, user.number.removeprefix("+"), user.extension):
            return user.name
    return ""


async def room_view(state: CallStateService, who: TenantUser) -> RoomView:
    room: ConferenceRoom = await run_blocking(state.conferences.room, who.tenant.id, who.user.id)
    config = state.config
    return RoomView(config.platform.conference_number, room_number(who), room.pin,
                    room.status.locked, shortest_pin(who.tenant, config.platform.pin_digits))


async def set_pin(state: CallStateService, who: TenantUser, pin: str, actor: str) -> None:
    await run_blocking(state.conferences.set_pin, who.tenant.id, who.user.id, pin, actor=actor, source="web")
