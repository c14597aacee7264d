"""Mailbox: the user's voicemail messages, new and old; play, download, mark heard, delete.

The same spool and service as the phone's voicemail menu: a message deleted or heard here is gone
or old there, and the phones' message-waiting light is refreshed. A message is named by its
spool msg_id and looked up only in the viewer's own mailbox; any other id is 404."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from base.model import TenantUser
from base.offload import run_blocking
from vmstore import Message

from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..deps import WebDeps
from ..mailbox_service import (
    BadRange,
    MailboxRow,
    byte_range,
    read_audio,
    rows,
    valid_id,
)
from ..render import page

log = logging.getLogger(__name__)
router = APIRouter()
api = APIRouter(prefix="/api/v1/mailbox", tags=["mailbox"])
NOT_FOUND = {404: {"description": "no such message in your mailbox (or you have no mailbox)"}}


# --- shared ---------------------------------------------------------------------------------------

def own_mailbox(who: Viewer) -> TenantUser:
    """The viewer's mailbox; 404 for a user of the "No voicemail" group."""
    if not who.who.user.has_voicemail:
        raise HTTPException(404, "you have no voicemail box")
    return who.who


async def own_message(deps: WebDeps, who: Viewer, msg_id: str) -> Message:
    mailbox = own_mailbox(who)
    message = await deps.voicemail.message(mailbox, msg_id) if valid_id(msg_id) else None
    if message is None:
        raise HTTPException(404, "no such message")
    return message


async def own_ids(deps: WebDeps, who: Viewer, msg_ids: list[str]) -> list[str]:
    """The ids, once every one is a message of the viewer's mailbox; else 404 (nothing changes)."""
    for msg_id in msg_ids:
        await own_message(deps, who, msg_id)
    return list(dict.fromkeys(msg_ids))


async def delete(deps: WebDeps, who: Viewer, msg_ids: list[str]) -> int:
    deleted: int = await deps.voicemail.delete_messages(who.who, msg_ids)
    log.info("%s deleted %d voicemail message(s) on the home page", who.actor, deleted)
    return deleted


async def delete_greeting(deps: WebDeps, who: Viewer) -> None:
    await own_greeting(deps, who)
    await deps.voicemail.delete_greeting(who.who)
    log.info("%s deleted their own greeting on the home page", who.actor)


async def listing(deps: WebDeps, who: Viewer) -> tuple[list[MailboxRow], list[MailboxRow]]:
    mailbox = who.who
    new, old = await deps.voicemail.messages(mailbox)
    return rows(deps.config, mailbox, new), rows(deps.config, mailbox, old)


async def audio_response(request: Request, wav: Path, *, download: str | None) -> Response:
    """The WAV, whole or the one range asked for; as an attachment named `download` if given."""
    try:
        data = await run_blocking(read_audio, wav)
    except FileNotFoundError:  # deleted by the phone since it was looked up
        raise HTTPException(404, "no such message") from None
    headers = {"accept-ranges": "bytes"}
    if download:
        headers["content-disposition"] = f'attachment; filename="{download}"'
    try:
        part = byte_range(request.headers.get("range"), len(data))
    except BadRange:
        return Response(status_code=416, headers={"content-range": f"bytes */{len(data)}"})
    if part is None:
        return Response(data, media_type="audio/wav", headers=headers)
    first, last = part
    headers["content-range"] = f"bytes {first}-{last}/{len(data)}"
    return Response(data[first:last + 1], status_code=206, media_type="audio/wav", headers=headers)


async def message_audio(request: Request, message: Message, *, download: bool) -> Response:
    name = f"voicemail-{message.envelope.msg_id}.wav" if download else None
    return await audio_response(request, message.wav, download=name)


async def own_greeting(deps: WebDeps, who: Viewer) -> Path:
    greeting = await deps.voicemail.greeting_file(own_mailbox(who))
    if greeting is None:
        raise HTTPException(404, "no greeting of your own")
    return greeting


# --- the page ---------------------------------------------------------------------------------------

async def show(request: Request, who: Viewer, deps: WebDeps, *, problem: str | None = None,
               status_code: int = 200) -> Response:
    has_mailbox = who.who.user.has_voicemail
    new, old = await listing(deps, who) if has_mailbox else ([], [])
    greeting = has_mailbox and await deps.voicemail.greeting_file(who.who) is not None
    return page(request, "mailbox.html", who, status_code=status_code, has_mailbox=has_mailbox,
                new=new, old=old, greeting=greeting, problem=who.t(problem) if problem else None)


@router.get("/mailbox", include_in_schema=False)
async def mailbox_page(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await show(request, who, deps)


@router.post("/mailbox/delete", include_in_schema=False)
async def delete_selected(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    selected = [value for value in form.getlist("msg") if isinstance(value, str)]
    own_mailbox(who)
    if not selected:
        return await show(request, who, deps, problem="mailbox_none_selected", status_code=400)
    await delete(deps, who, await own_ids(deps, who, selected))
    return RedirectResponse("/mailbox?done=mailbox_deleted", status_code=303)


@router.post("/mailbox/heard", include_in_schema=False)
async def heard_form(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    msg_id = form.get("heard")
    message = await own_message(deps, who, msg_id if isinstance(msg_id, str) else "")
    await deps.voicemail.mark_old(who.who, message.envelope.msg_id)
    return RedirectResponse("/mailbox?done=mailbox_marked_heard", status_code=303)


# The greeting's routes come before the messages': "greeting" would read as a message id.
@router.get("/mailbox/greeting/audio", include_in_schema=False)
async def page_greeting(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await audio_response(request, await own_greeting(deps, who), download=None)


@router.post("/mailbox/greeting/delete", include_in_schema=False)
async def delete_greeting_form(request: Request, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    await delete_greeting(deps, who)
    return RedirectResponse("/mailbox?done=mailbox_greeting_deleted", status_code=303)


@router.get("/mailbox/{msg_id}/audio", include_in_schema=False)
async def page_audio(request: Request, msg_id: str, who: CurrentViewer, deps: Services) -> Response:
    return await message_audio(request, await own_message(deps, who, msg_id), download=False)


@router.get("/mailbox/{msg_id}/download", include_in_schema=False)
async def page_download(request: Request, msg_id: str, who: CurrentViewer, deps: Services) -> Response:
    return await message_audio(request, await own_message(deps, who, msg_id), download=True)


# --- the JSON API -----------------------------------------------------------------------------------

class MessageOut(BaseModel):
    id: str = Field(description="the message's stable id in the voicemail spool")
    folder: Literal["new", "old"]
    caller_number: str = Field(description='"" when the caller was anonymous')
    caller_name: str | None = Field(description="set when the caller is a user of your organisation")
    received: str = Field(description="ISO 8601, in the organisation's time zone")
    duration: int = Field(description="seconds")
    audio_url: str | None = Field(description="null for a message without a usable id (listen to it by phone)")


class MailboxOut(BaseModel):
    has_mailbox: bool = Field(description='false for users without voicemail ("No voicemail" group)')
    greeting: bool = Field(description="you recorded a greeting of your own (else callers hear the default one)")
    new: list[MessageOut]
    old: list[MessageOut]


class DeleteIn(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)


class DeletedOut(BaseModel):
    deleted: int = Field(description="messages removed now (one already removed by the phone is not counted)")


def message_out(row: MailboxRow) -> MessageOut:
    return MessageOut(id=row.id, folder="new" if row.new else "old", caller_number=row.caller_number,
                      caller_name=row.caller_name, received=row.received.isoformat(),
                      duration=row.duration,
                      audio_url=f"/api/v1/mailbox/messages/{row.id}/audio" if row.addressable else None)


async def one_row(deps: WebDeps, who: Viewer, message: Message) -> MessageOut:
    return message_out(rows(deps.config, who.who, [message])[0])


@api.get("", response_model=MailboxOut)
async def api_list(who: CurrentViewer, deps: Services) -> MailboxOut:
    """Your messages: new and old, oldest first in each."""
    if not who.who.user.has_voicemail:
        return MailboxOut(has_mailbox=False, greeting=False, new=[], old=[])
    new, old = await listing(deps, who)
    greeting = await deps.voicemail.greeting_file(who.who) is not None
    return MailboxOut(has_mailbox=True, greeting=greeting, new=[message_out(r) for r in new], old=[message_out(r) for r in old])


@api.get("/greeting/audio", responses={404: {"description": "no greeting of your own (or no mailbox)"},
                                        200: {"content": {"audio/wav": {}}}}, response_class=Response)
async def api_greeting(request: Request, who: CurrentViewer, deps: Services) -> Response:
    """Your own greeting (WAV), as callers hear it."""
    return await audio_response(request, await own_greeting(deps, who), download=None)


@api.delete("/greeting", status_code=204, responses={404: {"description": "no greeting of your own"}})
async def api_delete_greeting(who: CurrentViewer, deps: Services) -> Response:
    """Back to the default greeting."""
    await delete_greeting(deps, who)
    return Response(status_code=204)


@api.get("/messages/{msg_id}", response_model=MessageOut, responses=NOT_FOUND)
async def api_message(msg_id: str, who: CurrentViewer, deps: Services) -> MessageOut:
    return await one_row(deps, who, await own_message(deps, who, msg_id))


@api.get("/messages/{msg_id}/audio", responses={**NOT_FOUND, 200: {"content": {"audio/wav": {}}}},
         response_class=Response)
async def api_audio(request: Request, msg_id: str, who: CurrentViewer, deps: Services,
                    download: Annotated[bool, Query(description="as an attachment")] = False) -> Response:
    """The message's audio (WAV); a single `Range` is honoured. Listening does not mark it heard."""
    return await message_audio(request, await own_message(deps, who, msg_id), download=download)


@api.post("/messages/{msg_id}/heard", response_model=MessageOut, responses=NOT_FOUND)
async def api_heard(msg_id: str, who: CurrentViewer, deps: Services) -> MessageOut:
    """A new message becomes old, as after listening to it on the phone."""
    message = await own_message(deps, who, msg_id)
    moved = await deps.voicemail.mark_old(who.who, message.envelope.msg_id)
    if moved is None:
        raise HTTPException(404, "no such message")
    return await one_row(deps, who, moved)


@api.delete("/messages/{msg_id}", status_code=204, responses=NOT_FOUND)
async def api_delete(msg_id: str, who: CurrentViewer, deps: Services) -> Response:
    message = await own_message(deps, who, msg_id)
    await delete(deps, who, [message.envelope.msg_id])
    return Response(status_code=204)


@api.post("/delete", response_model=DeletedOut, responses=NOT_FOUND)
async def api_delete_many(body: DeleteIn, who: CurrentViewer, deps: Services) -> DeletedOut:
    """Delete several messages; if any id is not a message of yours, nothing is deleted (404)."""
    ids = await own_ids(deps, who, body.ids)
    return DeletedOut(deleted=await delete(deps, who, ids))
