"""Call log: the viewer's calls (incoming, outgoing, missed, forwarded, to voicemail) newest first,
filtered by kind and date, in pages; the JSON twin under /api/v1/calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from ..auth.sessions import CurrentViewer, Services
from ..calllog_service import (
    FILTER_KINDS,
    PAGE_SIZE,
    CallFilter,
    CallRow,
    FilterRefused,
    load_calls,
    parse_filter,
)
from ..render import page

router = APIRouter()
api = APIRouter(prefix="/api/v1", tags=["call log"])

KindParam = Annotated[str | None, Query(description="all, incoming, outgoing, missed, forwarded or voicemail")]
DateParam = Annotated[str | None, Query(description="YYYY-MM-DD, in the platform's time zone")]
CursorParam = Annotated[str | None, Query(description="`next` of the previous page")]


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@router.get("/calls", include_in_schema=False)
async def calls(request: Request, who: CurrentViewer, deps: Services, kind: KindParam = None,
                date_from: DateParam = None, date_to: DateParam = None, before: CursorParam = None) -> Response:
    form = {"kind": kind or "all", "date_from": date_from or "", "date_to": date_to or ""}
    try:
        chosen = parse_filter(kind, date_from, date_to, before)
        rows, next_cursor = await load_calls(deps.state, who.who, chosen)
    except FilterRefused as refused:
        return page(request, "calllog.html", who, rows=[], next_url=None, form=form, kinds=FILTER_KINDS,
                    problem=who.t(refused.key), duration=_duration, status_code=422)
    next_url = None
    if next_cursor:  # relative: behind a reverse proxy the request's own host is not the user's
        next_url = "/calls?" + urlencode({k: v for k, v in form.items() if v} | {"before": next_cursor})
    return page(request, "calllog.html", who, rows=rows, next_url=next_url,
                form=form, kinds=FILTER_KINDS, problem=None, duration=_duration, first=not before)


class CallOut(BaseModel):
    id: str
    kind: str
    started: datetime
    duration_seconds: int
    number: str
    name: str | None  # a colleague's name
    forwarded_to: str | None
    forwarded_to_name: str | None


class CallsOut(BaseModel):
    calls: list[CallOut]
    next: str | None  # pass as `before` for the next (older) page


def _out(row: CallRow) -> CallOut:
    return CallOut(id=row.call_id, kind=row.kind, started=row.started, duration_seconds=row.duration,
                   number=row.number, name=row.name, forwarded_to=row.target or None,
                   forwarded_to_name=row.target_name)


@api.get("/calls", response_model=CallsOut, responses={422: {"description": "a filter value is not one"}})
async def calls_api(who: CurrentViewer, deps: Services, kind: KindParam = None, date_from: DateParam = None,
                    date_to: DateParam = None, before: CursorParam = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE) -> CallsOut:
    """The viewer's calls, newest first."""
    try:
        chosen: CallFilter = parse_filter(kind, date_from, date_to, before)
        rows, next_cursor = await load_calls(deps.state, who.who, chosen, limit)
    except FilterRefused as refused:
        raise HTTPException(422, refused.key) from None
    return CallsOut(calls=[_out(row) for row in rows], next=next_cursor)
