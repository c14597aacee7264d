"""Home: who the user is, their presence (shown and changed), an SMS, and how to use the service."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.model import TenantUser
from base.offload import run_blocking
from callstate import Presence, SettingsError

from .. import home_service as svc
from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..deps import WebDeps
from ..render import page

router = APIRouter()
TAG = ["home"]


# --------------------------------------------------------------------------- the page

def _presence_view(deps: WebDeps, who: Viewer, presence: Presence) -> dict[str, object]:
    until = presence.until.astimezone(svc.zone(deps)) if presence.until is not None else None
    return {"activity": presence.activity, "name": svc.activity_name(who.t.lang, presence.activity),
            "until": until, "note": presence.note}


async def _home(request: Request, who: Viewer, deps: WebDeps, *, status_code: int = 200,
                problems: dict[str, str] | None = None, typed: dict[str, str] | None = None) -> Response:
    me: TenantUser = who.who
    presence = await deps.presence.presence(me.tenant, me.user)
    platform = deps.config.platform
    return page(request, "home.html", who, status_code=status_code,
                user=me.user, tenant=me.tenant, presence=_presence_view(deps, who, presence),
                activities=svc.activity_choices(me.tenant, who.t.lang), zone=svc.zone(deps).key,
                problems=problems or {}, typed=typed or {},
                sms_available=deps.messenger is not None and deps.messenger.can_sms,
                sms_limit=svc.SMS_LIMIT, platform=platform, codes=platform.feature_codes,
                softphones=await run_blocking(svc.softphones, deps, me, request.url.hostname or ""))


@router.get("/", include_in_schema=False)
async def home(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _home(request, who, deps)


@router.post("/presence", include_in_schema=False)
async def change_presence_form(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    fields = {name: str(form.get(name, "")) for name in ("activity", "until_date", "until_time", "note")}
    activity, note = fields["activity"], fields["note"]
    try:
        until = svc.parse_until(fields["until_date"], fields["until_time"], svc.zone(deps))
    except SettingsError:
        return await _refused_presence(request, who, deps, "home_refused_until_format", fields)
    try:
        await svc.change_presence(deps, who.who, who.actor, activity, until, note)
    except SettingsError:
        key = svc.presence_refusal(who.who.tenant, activity, until, note, deps.state.store.now())
        return await _refused_presence(request, who, deps, key, fields)
    return RedirectResponse("/?done=home_presence_saved", status_code=303)


async def _refused_presence(request: Request, who: Viewer, deps: WebDeps, key: str,
                            typed: dict[str, str]) -> Response:
    return await _home(request, who, deps, status_code=422, problems={"presence": who.t(key)}, typed=typed)


@router.post("/sms", include_in_schema=False)
async def send_sms_form(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    to, text = str(form.get("to", "")), str(form.get("text", ""))
    try:
        await svc.send_sms(deps, who.who, who.actor, to, text)
    except svc.SmsRefused as exc:
        problem = who.t(exc.key, limit=svc.SMS_LIMIT)
        return await _home(request, who, deps, status_code=exc.status, problems={"sms": problem},
                           typed={"to": to, "text": text})
    return RedirectResponse("/?done=home_sms_sent", status_code=303)


# --------------------------------------------------------------------------- the API

class ActivityOut(BaseModel):
    key: str
    name: str


class PresenceOut(BaseModel):
    role: str
    activity: str
    activity_name: str
    until: datetime | None = Field(description="UTC; after it the activity is 'available' again")
    note: str
    activities: list[ActivityOut] = Field(description="The tenant's activities, in the viewer's language")


class PresenceIn(BaseModel):
    activity: str = Field(description="A key of the tenant's activity list")
    until: datetime | None = Field(None, description="With its time zone; none: no end time")
    note: str | None = Field(None, description="The own note; none keeps it")


class SmsIn(BaseModel):
    to: str = Field(description="E.164, national (040...) or a colleague's extension")
    text: str


class SmsOut(BaseModel):
    to: str = Field(description="The E.164 number the SMS went to")


class Problem(BaseModel):
    detail: str
    reason: str = Field(description="A stable name of the rule broken")
    message: str = Field(description="The refusal in the viewer's language")


def problem(who: Viewer, key: str, detail: str, status: int) -> JSONResponse:
    reason = key.removeprefix("home_").removeprefix("sms_").removeprefix("refused_")
    return JSONResponse(Problem(detail=detail, reason=reason, message=who.t(key, limit=svc.SMS_LIMIT)).model_dump(),
                        status_code=status)


def _presence_out(who: Viewer, presence: Presence) -> PresenceOut:
    me = who.who
    return PresenceOut(role=me.user.role, activity=presence.activity,
                       activity_name=svc.activity_name(who.t.lang, presence.activity), until=presence.until,
                       note=presence.note,
                       activities=[ActivityOut(key=a.key, name=a.name)
                                   for a in svc.activity_choices(me.tenant, who.t.lang)])


@router.get("/api/v1/presence", tags=TAG, response_model=PresenceOut)
async def get_presence(who: CurrentViewer, deps: Services) -> PresenceOut:
    """The viewer's presence: role, activity, end time and note."""
    return _presence_out(who, await deps.presence.presence(who.who.tenant, who.who.user))


@router.put("/api/v1/presence", tags=TAG, response_model=PresenceOut,
            responses={422: {"model": Problem}})
async def put_presence(body: PresenceIn, who: CurrentViewer, deps: Services) -> Response | PresenceOut:
    """Changes the activity (as the activity number does: phones subscribed to the user see it)."""
    try:
        await svc.change_presence(deps, who.who, who.actor, body.activity, body.until, body.note)
    except SettingsError as exc:
        key = svc.presence_refusal(who.who.tenant, body.activity, body.until, body.note, deps.state.store.now())
        return problem(who, key, str(exc), 422)
    return _presence_out(who, await deps.presence.presence(who.who.tenant, who.who.user))


@router.post("/api/v1/sms", tags=TAG, response_model=SmsOut,
             responses={422: {"model": Problem}, 429: {"model": Problem}, 502: {"model": Problem},
                        503: {"model": Problem}})
async def post_sms(body: SmsIn, who: CurrentViewer, deps: Services) -> Response | SmsOut:
    """Sends one SMS (one message's length; the tenant's outbound policy; an hourly limit)."""
    try:
        number = await svc.send_sms(deps, who.who, who.actor, body.to, body.text)
    except svc.SmsRefused as exc:
        return problem(who, exc.key, str(exc), exc.status)
    return SmsOut(to=number)
