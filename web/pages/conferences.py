"""Conferences: the viewer's own room (dial-in details, PIN), who is in it now, mute and remove.

Every route works on the viewer's room only: a participant id is looked up among the people in
that room at the time of the request (`web.conference_service`), anything else is 404.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from callstate import SettingsError

from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..conference_service import (
    ConferenceControl,
    LiveUnavailable,
    NotInRoom,
    Participant,
    RoomView,
    room_view,
    set_pin,
)
from ..deps import WebDeps
from ..render import page

router = APIRouter()
PAGE = "/conferences"
CONTROL = "conferences"  # deps.extras: the ConferenceControl (made on first use; tests put a fake AMI's)


def control(deps: WebDeps) -> ConferenceControl:
    """The one ConferenceControl of the process: its session cap and shared answers hold only so."""
    found = deps.extras.get(CONTROL)
    if not isinstance(found, ConferenceControl):
        found = deps.extras[CONTROL] = ConferenceControl.over(deps.ami)
    return found


async def _live(deps: WebDeps, who: Viewer, *, fresh: bool = False) -> list[Participant] | None:
    """The room's participants; None when Asterisk cannot be asked now. `fresh`: asked now (a page
    someone opens), not the shared answer of the last second (the polls)."""
    try:
        return await control(deps).participants(who.who, fresh=fresh)
    except LiveUnavailable:
        return None


async def _page(request: Request, who: Viewer, deps: WebDeps, *, problem: str | None = None,
                status_code: int = 200) -> Response:
    room = await room_view(deps.state, who.who)
    return page(request, "conferences.html", who, room=room, participants=await _live(deps, who, fresh=True),
                problem=problem, status_code=status_code)


@router.get(PAGE, include_in_schema=False)
async def conferences(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _page(request, who, deps)


@router.get(PAGE + "/live", include_in_schema=False)
async def live(request: Request, who: CurrentViewer, deps: Services) -> Response:
    """The participant list alone, for the page's refresh script."""
    return page(request, "conferences_live.html", who, participants=await _live(deps, who))


@router.post(PAGE + "/pin", include_in_schema=False)
async def change_pin(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    pin = str(form.get("pin", "")).strip()
    try:
        await set_pin(deps.state, who.who, pin, who.actor)
    except SettingsError:
        return await _page(request, who, deps, problem="conferences_pin_refused", status_code=422)
    return RedirectResponse(f"{PAGE}?done=conferences_pin_changed", status_code=303)


@router.post(PAGE + "/participants/{pid}/mute", include_in_schema=False)
async def mute(request: Request, pid: str, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    muted = form.get("muted", "1") != "0"
    await _act(deps, who, pid, muted)
    return RedirectResponse(f"{PAGE}?done=" + ("conferences_muted" if muted else "conferences_unmuted"),
                            status_code=303)


@router.post(PAGE + "/participants/{pid}/remove", include_in_schema=False)
async def remove(request: Request, pid: str, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    await _act(deps, who, pid, None)
    return RedirectResponse(f"{PAGE}?done=conferences_removed", status_code=303)


async def _act(deps: WebDeps, who: Viewer, pid: str, muted: bool | None) -> Participant:
    """Mute / unmute (`muted`) or remove (None) a participant of the viewer's own room."""
    live = control(deps)
    try:
        if muted is None:
            return await live.remove(who.who, pid)
        return await live.set_muted(who.who, pid, muted)
    except NotInRoom:
        raise HTTPException(404, "no such participant in your room") from None
    except LiveUnavailable:
        raise HTTPException(503, "the conference service is not available now, try again") from None


# ------------------------------------------------------------------ the JSON API

class RoomOut(BaseModel):
    conference_number: str = Field(description="The platform's number to call.")
    room: str = Field(description="The room number to type after calling.")
    pin: str | None = Field(description="The room's PIN; null: none set yet, the room is closed.")
    locked: bool = Field(description="Too many wrong PINs: locked until the lock ends or a new PIN is set.")
    pin_digits: int = Field(description="The shortest PIN allowed.")


class PinIn(BaseModel):
    pin: str = Field(max_length=10, examples=["735194"])


class ParticipantOut(BaseModel):
    id: str
    number: str
    name: str
    muted: bool


class MuteIn(BaseModel):
    muted: bool


def _room_out(room: RoomView) -> RoomOut:
    return RoomOut(conference_number=room.number, room=room.room, pin=room.pin, locked=room.locked,
                   pin_digits=room.pin_digits)


def _out(p: Participant) -> ParticipantOut:
    return ParticipantOut(id=p.id, number=p.number, name=p.name, muted=p.muted)


api = "/api/v1/conference"


@router.get(api, response_model=RoomOut, tags=["conferences"])
async def api_room(who: CurrentViewer, deps: Services) -> RoomOut:
    """The viewer's conference room: the number to call, the room number and the PIN."""
    return _room_out(await room_view(deps.state, who.who))


@router.put(api + "/pin", response_model=RoomOut, tags=["conferences"],
            responses={422: {"description": "a PIN the rules refuse"}})
async def api_set_pin(body: PinIn, who: CurrentViewer, deps: Services) -> RoomOut:
    """Set the room's PIN (this also ends a lockout)."""
    await set_pin(deps.state, who.who, body.pin, who.actor)
    return _room_out(await room_view(deps.state, who.who))


@router.get(api + "/participants", response_model=list[ParticipantOut], tags=["conferences"],
            responses={503: {"description": "Asterisk cannot be asked now"}})
async def api_participants(who: CurrentViewer, deps: Services) -> list[ParticipantOut]:
    """Who is in the viewer's room now."""
    found = await _live(deps, who)
    if found is None:
        raise HTTPException(503, "the conference service is not available now, try again")
    return [_out(p) for p in found]


@router.post(api + "/participants/{pid}/mute", response_model=ParticipantOut, tags=["conferences"],
             responses={404: {"description": "not in your room"}})
async def api_mute(pid: str, body: MuteIn, who: CurrentViewer, deps: Services) -> ParticipantOut:
    """Mute (`muted: true`) or unmute a participant of the viewer's room."""
    found = await _act(deps, who, pid, body.muted)
    return _out(replace(found, muted=body.muted))


@router.delete(api + "/participants/{pid}", status_code=204, tags=["conferences"],
               responses={404: {"description": "not in your room"}})
async def api_remove(pid: str, who: CurrentViewer, deps: Services) -> Response:
    """Remove a participant from the viewer's room (their call ends)."""
    await _act(deps, who, pid, None)
    return Response(status_code=204)
