"""Contacts: the tenant's directory, the user's personal contacts, click to call (docs/web.md)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.numbers import is_e164
from base.offload import run_blocking
from callstate.contacts_state import (
    NAME_MAX,
    NOTE_MAX,
    Contact,
    ContactError,
    UnknownContact,
)

from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..contacts_service import QUERY_MAX, CallRefused, DirectoryPage, contacts_service
from ..deps import WebDeps
from ..render import page

router = APIRouter()
api = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])
NUMBER_MAX = 32
# Click-to-call refusals: HTTP status of the answer.
REFUSAL_STATUS = {"too-many": 429, "unavailable": 503}


def _field(form: Any, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit + 1] if isinstance(value, str) else ""


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and len(text) < 7 else 1


async def _render(request: Request, who: Viewer, deps: WebDeps, *, status_code: int = 200,
                  problem: str | None = None, form: dict[str, str] | None = None,
                  editing: Contact | None = None) -> Response:
    query = request.query_params.get("q", "")[:QUERY_MAX]
    service = contacts_service(deps)
    directory = await service.directory(who.who, query, _page_number(request.query_params.get("page")))
    personal = await run_blocking(deps.state.contacts.contacts, who.tenant_id, who.user_id)
    return page(request, "contacts.html", who, status_code=status_code, directory=directory,
                personal=personal, problem=problem, form=form or {}, editing=editing,
                called=called if is_e164(called := request.query_params.get("called", "")) else "",
                name_max=NAME_MAX, note_max=NOTE_MAX, number_max=NUMBER_MAX, query_max=QUERY_MAX)


def _problem_key(exc: ContactError) -> str:
    return f"contacts_bad_{exc.field}"


@router.get("/contacts", include_in_schema=False)
async def contacts_page(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _render(request, who, deps)


@router.post("/contacts/personal", include_in_schema=False)
async def add_contact(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    values = {"name": _field(form, "name", NAME_MAX), "number": _field(form, "number", NUMBER_MAX),
              "note": _field(form, "note", NOTE_MAX)}
    try:
        await run_blocking(deps.state.contacts.add_contact, who.tenant_id, who.user_id, values["name"],
                           values["number"], values["note"], actor=who.actor, source="web")
    except ContactError as exc:
        return await _render(request, who, deps, status_code=422, problem=_problem_key(exc), form=values)
    return RedirectResponse("/contacts?done=contacts_added", status_code=303)


async def _own_contact(deps: WebDeps, who: Viewer, contact_id: str) -> Contact:
    try:
        return await contacts_service(deps).contact(who.who, contact_id)
    except UnknownContact:
        raise HTTPException(404, "no such contact") from None


@router.get("/contacts/personal/{contact_id}", include_in_schema=False)
async def edit_form(contact_id: str, request: Request, who: CurrentViewer, deps: Services) -> Response:
    contact = await _own_contact(deps, who, contact_id)
    form = {"name": contact.name, "number": contact.number, "note": contact.note}
    return await _render(request, who, deps, form=form, editing=contact)


@router.post("/contacts/personal/{contact_id}", include_in_schema=False)
async def edit_contact(contact_id: str, request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    contact = await _own_contact(deps, who, contact_id)
    values = {"name": _field(form, "name", NAME_MAX), "number": _field(form, "number", NUMBER_MAX),
              "note": _field(form, "note", NOTE_MAX)}
    try:
        await run_blocking(deps.state.contacts.update_contact, who.tenant_id, who.user_id, contact.id,
                           values["name"], values["number"], values["note"], actor=who.actor, source="web")
    except UnknownContact:
        raise HTTPException(404, "no such contact") from None
    except ContactError as exc:
        return await _render(request, who, deps, status_code=422, problem=_problem_key(exc), form=values,
                             editing=contact)
    return RedirectResponse("/contacts?done=contacts_saved", status_code=303)


@router.post("/contacts/personal/{contact_id}/delete", include_in_schema=False)
async def delete_contact(contact_id: str, request: Request, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    try:
        await run_blocking(deps.state.contacts.delete_contact, who.tenant_id, who.user_id, contact_id,
                           actor=who.actor, source="web")
    except UnknownContact:
        raise HTTPException(404, "no such contact") from None
    return RedirectResponse("/contacts?done=contacts_deleted", status_code=303)


async def _call_target(deps: WebDeps, who: Viewer, colleague: str | None, contact: str | None) -> str:
    """The number of the colleague (own tenant) or the personal contact (own list); else 404."""
    if bool(colleague) == bool(contact):
        raise HTTPException(404, "name one colleague or one contact")
    if colleague:
        try:
            return contacts_service(deps).colleague(who.who, colleague).number
        except UnknownContact:
            raise HTTPException(404, "no such colleague") from None
    return (await _own_contact(deps, who, str(contact))).number


@router.post("/contacts/call", include_in_schema=False)
async def call(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    number = await _call_target(deps, who, _field(form, "colleague", 64), _field(form, "contact", 16))
    try:
        await contacts_service(deps).call(who.who, number)
    except CallRefused as exc:
        return await _render(request, who, deps, status_code=REFUSAL_STATUS.get(exc.reason, 422),
                             problem=f"contacts_call_{exc.reason.replace('-', '_')}")
    return RedirectResponse(f"/contacts?done=contacts_calling&called={quote(number)}", status_code=303)


# ------------------------------------------------------------------ the JSON API

class DirectoryEntryOut(BaseModel):
    id: str
    name: str
    role: str
    number: str
    extension: str
    activity: str = Field(description="The key of the tenant's activity list, e.g. `available`, `meeting`.")
    activity_until: str | None
    note: str
    phone: str = Field(description="`on-phone`, `free`, `offline` or `unknown` (Asterisk not asked).")


class DirectoryOut(BaseModel):
    entries: list[DirectoryEntryOut]
    page: int
    pages: int
    total: int


class ContactIn(BaseModel):
    name: str = Field(max_length=NAME_MAX)
    number: str = Field(max_length=NUMBER_MAX, description="E.164, national (040…), 00… or a colleague's extension.")
    note: str = Field("", max_length=NOTE_MAX)


class ContactOut(BaseModel):
    id: str
    name: str
    number: str
    note: str


class CallIn(BaseModel):
    colleague: str | None = Field(None, max_length=64, description="A user id of the directory.")
    contact: str | None = Field(None, max_length=16, description="The id of one of your contacts.")


class CallOut(BaseModel):
    number: str = Field(description="Your devices ring now; answered, this number is called.")


def _out(contact: Contact) -> ContactOut:
    return ContactOut(id=contact.id, name=contact.name, number=contact.number, note=contact.note)


def _directory_out(found: DirectoryPage) -> DirectoryOut:
    return DirectoryOut(page=found.page, pages=found.pages, total=found.total, entries=[
        DirectoryEntryOut(id=e.user.id, name=e.user.name, role=e.user.role, number=e.user.number,
                          extension=e.user.extension, activity=e.presence.activity,
                          activity_until=e.presence.until.isoformat() if e.presence.until else None,
                          note=e.presence.note, phone=e.phone)
        for e in found.entries])


@api.get("/directory", response_model=DirectoryOut)
async def api_directory(who: CurrentViewer, deps: Services,
                        q: Annotated[str, Query(max_length=QUERY_MAX)] = "",
                        page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> DirectoryOut:
    """Your tenant's users (50 a page), with activity and phone state; `q` filters by name or number."""
    return _directory_out(await contacts_service(deps).directory(who.who, q, page))


@api.get("/personal", response_model=list[ContactOut])
async def api_contacts(who: CurrentViewer, deps: Services) -> list[ContactOut]:
    """Your personal contacts, by name."""
    return [_out(c) for c in await run_blocking(deps.state.contacts.contacts, who.tenant_id, who.user_id)]


@api.post("/personal", response_model=ContactOut, status_code=201)
async def api_add(body: ContactIn, who: CurrentViewer, deps: Services) -> ContactOut:
    """Adds a personal contact (the number is stored in E.164)."""
    return _out(await run_blocking(deps.state.contacts.add_contact, who.tenant_id, who.user_id, body.name,
                                   body.number, body.note, actor=who.actor, source="web"))


@api.put("/personal/{contact_id}", response_model=ContactOut, responses={404: {"description": "not your contact"}})
async def api_update(contact_id: str, body: ContactIn, who: CurrentViewer, deps: Services) -> ContactOut:
    """Changes one of your personal contacts."""
    try:
        return _out(await run_blocking(deps.state.contacts.update_contact, who.tenant_id, who.user_id, contact_id,
                                       body.name, body.number, body.note, actor=who.actor, source="web"))
    except UnknownContact:
        raise HTTPException(404, "no such contact") from None


@api.delete("/personal/{contact_id}", status_code=204, responses={404: {"description": "not your contact"}})
async def api_delete(contact_id: str, who: CurrentViewer, deps: Services) -> Response:
    """Deletes one of your personal contacts."""
    try:
        await run_blocking(deps.state.contacts.delete_contact, who.tenant_id, who.user_id, contact_id,
                           actor=who.actor, source="web")
    except UnknownContact:
        raise HTTPException(404, "no such contact") from None
    return Response(status_code=204)


@api.post("/call", response_model=CallOut, responses={
    404: {"description": "not a colleague or not your contact"},
    422: {"description": "refused: your own number, outside the numbers you may call, or no devices"},
    429: {"description": "too many calls this minute"}, 503: {"description": "the PBX is not reachable"}})
async def api_call(body: CallIn, who: CurrentViewer, deps: Services) -> Response | CallOut:
    """Click to call: your devices ring first; when you answer, the number is called as if you
    had dialled it."""
    number = await _call_target(deps, who, body.colleague, body.contact)
    try:
        return CallOut(number=await contacts_service(deps).call(who.who, number))
    except CallRefused as exc:
        return JSONResponse({"detail": exc.reason}, status_code=REFUSAL_STATUS.get(exc.reason, 422))
