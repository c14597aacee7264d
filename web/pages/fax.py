"""Services → Fax: receiving faxes on or off, where they are e-mailed, and the faxes received."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.offload import run_blocking

from .. import fax_service
from ..auth.sessions import CurrentViewer, Services, checked_form
from ..render import page

router = APIRouter()
api = APIRouter(prefix="/api/v1/fax", tags=["fax"])
PAGE = "/services/fax"


async def _page(request: Request, who: CurrentViewer, deps: Services, *, problem: str | None = None,
                status_code: int = 200, form: dict[str, object] | None = None) -> Response:
    found = await fax_service.view(deps, who)
    values = form or {"enabled": found.settings.enabled, "email": found.own_email}
    return page(request, "fax.html", who, status_code=status_code, view=found, values=values,
                yaml_email=who.who.user.email or "", problem=problem)


@router.get(PAGE, include_in_schema=False)
async def fax_page(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _page(request, who, deps)


@router.post(PAGE, include_in_schema=False)
async def fax_save(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    enabled = form.get("enabled") == "1"
    email = str(form.get("email") or "")[:300]
    try:
        await fax_service.change(deps, who, enabled=enabled, email=email)
    except fax_service.FaxRefused as refused:
        return await _page(request, who, deps, problem=refused.key, status_code=422,
                           form={"enabled": enabled, "email": email})
    return RedirectResponse(f"{PAGE}?done=fax_saved", status_code=303)


async def _own(deps: Services, who: CurrentViewer, fax_id: int) -> fax_service.ReceivedFax:
    found = await fax_service.own_fax(deps, who, fax_id)
    if found is None:
        raise HTTPException(404, "no such fax")
    return found


@router.get(PAGE + "/{fax_id}.pdf", include_in_schema=False)
async def fax_pdf(fax_id: int, who: CurrentViewer, deps: Services) -> Response:
    return await _pdf(deps, who, fax_id)


async def _pdf(deps: Services, who: CurrentViewer, fax_id: int) -> Response:
    found = await _own(deps, who, fax_id)
    path = fax_service.pdf_path(deps, found)
    if not await run_blocking(path.is_file):
        raise HTTPException(404, "the PDF is not ready")
    return FileResponse(path, media_type="application/pdf", filename=f"fax-{found.id}.pdf")


@router.post(PAGE + "/{fax_id}/delete", include_in_schema=False)
async def fax_delete(request: Request, fax_id: int, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    if not await fax_service.delete(deps, who, fax_id):
        raise HTTPException(404, "no such fax")
    return RedirectResponse(f"{PAGE}?done=fax_deleted", status_code=303)


# ---------------------------------------------------------------------------- JSON API

class FaxSettingsIn(BaseModel):
    enabled: bool = Field(description="Receive faxes on the user's number.")
    email: str | None = Field(default=None, max_length=254,
                              description="Where faxes are e-mailed; empty or null: the user's own e-mail.")


class FaxSettingsOut(BaseModel):
    enabled: bool
    email: str | None = Field(description="Where faxes are sent now (null: nowhere).")
    own_email: bool = Field(description="True when the address was chosen here, not the user's own.")


class FaxOut(BaseModel):
    id: int
    received_at: datetime
    caller: str
    remote_id: str
    pages: int
    status: str = Field(description="received, or failed (the transfer broke off)")
    delivery: str = Field(description="The e-mail: pending, sent, failed or none")
    pdf: str | None = Field(description="Where the PDF is downloaded, once made")


def _settings_out(s: fax_service.FaxSettings) -> FaxSettingsOut:
    return FaxSettingsOut(enabled=s.enabled, email=s.email, own_email=s.own_email)


@api.get("/settings", response_model=FaxSettingsOut)
async def api_settings(who: CurrentViewer, deps: Services) -> FaxSettingsOut:
    """Whether faxes are received and where they are e-mailed."""
    return _settings_out((await fax_service.view(deps, who)).settings)


@api.put("/settings", response_model=FaxSettingsOut, responses={422: {"description": "refused"}})
async def api_set_settings(body: FaxSettingsIn, who: CurrentViewer, deps: Services) -> Response | FaxSettingsOut:
    """Turn receiving faxes on or off and choose the address."""
    try:
        return _settings_out(await fax_service.change(deps, who, enabled=body.enabled, email=body.email or ""))
    except fax_service.FaxRefused as refused:
        raise HTTPException(422, who.t(refused.key)) from None


@api.get("/received", response_model=list[FaxOut])
async def api_received(who: CurrentViewer, deps: Services) -> list[FaxOut]:
    """The faxes received, newest first."""
    found = await fax_service.view(deps, who)
    out = []
    for f in found.faxes:
        ready = await run_blocking(fax_service.pdf_path(deps, f).is_file)
        out.append(FaxOut(id=f.id, received_at=f.received_at, caller=f.caller, remote_id=f.remote_id, pages=f.pages,
                          status=f.status, delivery=f.delivery, pdf=f"/api/v1/fax/received/{f.id}.pdf" if ready else None))
    return out


@api.get("/received/{fax_id}.pdf", responses={200: {"content": {"application/pdf": {}}}, 404: {}})
async def api_pdf(fax_id: int, who: CurrentViewer, deps: Services) -> Response:
    """One fax as PDF."""
    return await _pdf(deps, who, fax_id)


@api.delete("/received/{fax_id}", status_code=204, responses={404: {}})
async def api_delete(fax_id: int, who: CurrentViewer, deps: Services) -> Response:
    """Forget one fax and its PDF."""
    if not await fax_service.delete(deps, who, fax_id):
        raise HTTPException(404, "no such fax")
    return Response(status_code=204)
