"""Home: who the user is, their presence, an SMS, and how to use the service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..auth.sessions import CurrentViewer
from ..render import page

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request, who: CurrentViewer) -> Response:
    return page(request, "home.html", who, user=who.who.user, tenant=who.who.tenant)
