"""Services: voicemail settings (/services) and forwards with call waiting (/services/forwards).

Call recording and fax are their own pages under /services (see services_nav.html)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from callstate import Routing, SettingsError, VoicemailSettings
from callstate import routing as routing_rules
from callstate.targets import TargetRefused

from .. import services_service as svc
from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..deps import WebDeps
from ..render import page

router = APIRouter()
TAG = ["services"]
SOURCE = "web"


# --------------------------------------------------------------------------- voicemail settings

async def _voicemail_page(request: Request, who: Viewer, deps: WebDeps, *, status_code: int = 200,
                          problem: str | None = None, typed: dict[str, Any] | None = None) -> Response:
    me = who.who
    settings = await deps.aio.voicemail_settings(me.tenant.id, me.user.id)
    shown = {**settings.__dict__, **(typed or {})}
    return page(request, "services.html", who, status_code=status_code, user=me.user, settings=shown,
                has_voicemail=me.user.has_voicemail, problem=problem, switches=svc.SWITCHES)


@router.get("/services", include_in_schema=False)
async def voicemail_settings(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _voicemail_page(request, who, deps)


@router.post("/services", include_in_schema=False)
async def save_voicemail_settings(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    changes = svc.voicemail_changes(who.who, {k: str(v) for k, v in form.items()})
    try:
        await deps.aio.update_voicemail_settings(who.tenant_id, who.user_id, actor=who.actor, source=SOURCE,
                                                 **changes)
    except SettingsError:
        key = svc.voicemail_refusal(who.who, changes, deps.config)
        typed = {**changes, "press1_number": str(form.get("press1_number", ""))}
        return await _voicemail_page(request, who, deps, status_code=422, problem=who.t(key), typed=typed)
    return RedirectResponse("/services?done=services_saved", status_code=303)


# --------------------------------------------------------------------------- forwards

def _target_view(value: str) -> dict[str, str]:
    if value in (routing_rules.VOICEMAIL, routing_rules.NONE):
        return {"choice": value, "number": ""}
    return {"choice": svc.TARGET_NUMBER, "number": value}


async def _forwards_page(request: Request, who: Viewer, deps: WebDeps, *, status_code: int = 200,
                         problems: dict[str, str] | None = None,
                         typed: dict[str, dict[str, str]] | None = None) -> Response:
    me = who.who
    routing = await deps.aio.routing(me.tenant.id, me.user.id)
    forwards = {kind: _target_view(routing.forward(kind)) for kind in routing_rules.KINDS}
    forwards.update(typed or {})
    return page(request, "forwards.html", who, status_code=status_code, routing=routing, forwards=forwards,
                kinds=routing_rules.KINDS, choices=svc.TARGET_CHOICES, has_voicemail=me.user.has_voicemail,
                problems=problems or {}, delay_min=routing_rules.NO_ANSWER_MIN,
                delay_max=routing_rules.NO_ANSWER_MAX, codes=deps.config.platform.feature_codes)


@router.get("/services/forwards", include_in_schema=False)
async def forwards(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _forwards_page(request, who, deps)


@router.post("/services/forwards", include_in_schema=False)
async def save_forward(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    kind = str(form.get("kind", ""))
    if kind not in routing_rules.KINDS:
        raise HTTPException(404)
    choice, number = str(form.get("target", "")), str(form.get("number", ""))
    typed = {kind: {"choice": choice, "number": number}}
    try:
        delay = svc.parse_delay(str(form.get("delay", ""))) if kind == routing_rules.NO_ANSWER else None
    except SettingsError:
        return await _forwards_page(request, who, deps, status_code=422, typed=typed,
                                    problems={kind: who.t("services_refused_delay", low=routing_rules.NO_ANSWER_MIN,
                                                          high=routing_rules.NO_ANSWER_MAX)})
    target = choice
    try:
        target = svc.forward_target(choice, number)
        await deps.aio.set_forward(who.tenant_id, who.user_id, kind, target, actor=who.actor, source=SOURCE,
                                   no_answer_seconds=delay)
    except SettingsError as exc:
        problem = who.t(svc.forward_refusal(who.who, target, exc))
        return await _forwards_page(request, who, deps, status_code=422, typed=typed, problems={kind: problem})
    return RedirectResponse("/services/forwards?done=services_forward_saved", status_code=303)


@router.post("/services/callwaiting", include_in_schema=False)
async def save_call_waiting(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    enabled = str(form.get("call_waiting", "")) == "on"
    await deps.aio.set_call_waiting(who.tenant_id, who.user_id, enabled, actor=who.actor, source=SOURCE)
    return RedirectResponse("/services/forwards?done=services_call_waiting_saved", status_code=303)


# --------------------------------------------------------------------------- the API

class VoicemailSettingsModel(BaseModel):
    notify_sms: bool = Field(description="New messages are told by SMS")
    notify_email: bool = Field(description="New messages are e-mailed with the recording")
    play_activity: bool = Field(description="The greeting says the user's activity")
    press1_number: str | None = Field(description="E.164: callers may press 1 to be connected there")
    always_ask_pin: bool = Field(description="The PIN is asked even from the user's own number")


class VoicemailSettingsPatch(BaseModel):
    notify_sms: bool | None = None
    notify_email: bool | None = None
    play_activity: bool | None = None
    press1_number: str | None = Field(None, description="E.164 or national; \"\" turns it off")
    always_ask_pin: bool | None = None


class ForwardModel(BaseModel):
    target: str = Field(description="An E.164 number, 'voicemail' or 'none'")


class ForwardsModel(BaseModel):
    immediate: str
    busy: str
    no_answer: str
    unreachable: str
    no_answer_seconds: int
    call_waiting: bool


class ForwardIn(BaseModel):
    target: str = Field(description="A number (E.164, national or a colleague's extension), 'voicemail' or 'none'")
    no_answer_seconds: int | None = Field(None, description="The no_answer forward only: 5 to 120")


class CallWaitingModel(BaseModel):
    enabled: bool


class Problem(BaseModel):
    detail: str
    reason: str = Field(description="A stable name of the rule broken")
    message: str = Field(description="The refusal in the viewer's language")


def _problem(who: Viewer, key: str, exc: Exception) -> JSONResponse:
    reason = key.removeprefix("services_").removeprefix("refused_") if key != "services_refused" else "refused"
    return JSONResponse(Problem(detail=str(exc), reason=reason,
                                message=who.t(key, low=routing_rules.NO_ANSWER_MIN,
                                              high=routing_rules.NO_ANSWER_MAX)).model_dump(), status_code=422)


def _settings_out(settings: VoicemailSettings) -> VoicemailSettingsModel:
    return VoicemailSettingsModel(**settings.__dict__)


def _forwards_out(routing: Routing) -> ForwardsModel:
    return ForwardsModel(**routing.__dict__)


@router.get("/api/v1/voicemail/settings", tags=TAG, response_model=VoicemailSettingsModel)
async def api_voicemail_settings(who: CurrentViewer, deps: Services) -> VoicemailSettingsModel:
    return _settings_out(await deps.aio.voicemail_settings(who.tenant_id, who.user_id))


@router.patch("/api/v1/voicemail/settings", tags=TAG, response_model=VoicemailSettingsModel,
              responses={422: {"model": Problem}})
async def api_update_voicemail_settings(body: VoicemailSettingsPatch, who: CurrentViewer,
                                        deps: Services) -> Response | VoicemailSettingsModel:
    """Changes the settings given; all or nothing."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    changes = {k: v for k, v in changes.items() if v is not None or k == "press1_number"}
    if "press1_number" in changes:
        changes["press1_number"] = svc.press1_value(who.who, changes["press1_number"] or "")
    try:
        settings = await deps.aio.update_voicemail_settings(who.tenant_id, who.user_id, actor=who.actor,
                                                            source=SOURCE, **changes)
    except SettingsError as exc:
        return _problem(who, svc.voicemail_refusal(who.who, changes, deps.config), exc)
    return _settings_out(settings)


@router.get("/api/v1/forwards", tags=TAG, response_model=ForwardsModel)
async def api_forwards(who: CurrentViewer, deps: Services) -> ForwardsModel:
    """Forwards and call waiting."""
    return _forwards_out(await deps.aio.routing(who.tenant_id, who.user_id))


@router.put("/api/v1/forwards/{kind}", tags=TAG, response_model=ForwardsModel,
            responses={422: {"model": Problem}})
async def api_set_forward(kind: Literal["immediate", "busy", "no_answer", "unreachable"], body: ForwardIn,
                          who: CurrentViewer, deps: Services) -> Response | ForwardsModel:
    """Sets one forward, with the rules (and refusal reasons) of the 987 code."""
    try:
        routing = await deps.aio.set_forward(who.tenant_id, who.user_id, kind, body.target, actor=who.actor,
                                             source=SOURCE, no_answer_seconds=body.no_answer_seconds)
    except SettingsError as exc:
        key = svc.forward_refusal(who.who, body.target.strip().lower(), exc)
        if body.no_answer_seconds is not None and not isinstance(exc, TargetRefused):
            key = "services_refused_delay"
        return _problem(who, key, exc)
    return _forwards_out(routing)


@router.get("/api/v1/callwaiting", tags=TAG, response_model=CallWaitingModel)
async def api_call_waiting(who: CurrentViewer, deps: Services) -> CallWaitingModel:
    routing = await deps.aio.routing(who.tenant_id, who.user_id)
    return CallWaitingModel(enabled=routing.call_waiting)


@router.put("/api/v1/callwaiting", tags=TAG, response_model=CallWaitingModel)
async def api_set_call_waiting(body: CallWaitingModel, who: CurrentViewer, deps: Services) -> CallWaitingModel:
    """On or off, as *43# and #43# do."""
    routing = await deps.aio.set_call_waiting(who.tenant_id, who.user_id, body.enabled, actor=who.actor,
                                              source=SOURCE)
    return CallWaitingModel(enabled=routing.call_waiting)


