"""The logged-in user's account: change the password, see and end their other sessions.

Reached from the user's name in the navigation. A changed password ends every other session of
the user (whoever else was logged in is out); a wrong current password counts against the
login's limits like a failed login.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.offload import run_blocking

from ..auth import logins
from ..auth.passwords import MAX_LENGTH, MIN_LENGTH
from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..auth.usernames import login_name
from ..deps import WebDeps
from ..network import client_address
from ..render import page

router = APIRouter()


async def _account_page(request: Request, who: Viewer, deps: WebDeps, *, problem: str | None = None,
                        status_code: int = 200) -> Response:
    sessions = await run_blocking(deps.state.web_accounts.sessions_of, who.tenant_id, who.user_id,
                                  current_token=who.token)
    return page(request, "account.html", who, user=who.who.user, login=login_name(who.who), sessions=sessions,
                problem=problem, min_length=MIN_LENGTH, status_code=status_code)


@router.get("/account", include_in_schema=False)
async def account(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _account_page(request, who, deps)


@router.post("/account/password", include_in_schema=False)
async def change_password(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    problem = await logins.change_password(
        deps.state, who.who, who.token, str(form.get("current") or ""), str(form.get("password") or ""),
        str(form.get("repeat") or ""), client_address(request.scope))
    if problem is not None:
        return await _account_page(request, who, deps, problem=problem, status_code=422)
    return RedirectResponse("/account?done=account_password_changed", status_code=303)


@router.post("/account/sessions/end", include_in_schema=False)
async def end_other_sessions(request: Request, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    await run_blocking(deps.state.web_accounts.end_sessions, who.tenant_id, who.user_id, actor=who.actor,
                       source="web", keep_token=who.token)
    return RedirectResponse("/account?done=account_others_ended", status_code=303)


# ------------------------------------------------------------------ the JSON API's twins

api = APIRouter(prefix="/api/v1", tags=["session"])


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=MAX_LENGTH)
    password: str = Field(max_length=MAX_LENGTH, description=f"At least {MIN_LENGTH} characters, not the "
                                                             "user's name or number.")


class SessionItem(BaseModel):
    source: str = Field(description="The client address at login.")
    created_at: datetime
    seen_at: datetime
    ends_at: datetime
    current: bool = Field(description="The session of this request.")


@api.put("/password", status_code=204,
         responses={403: {"description": "the current password is wrong"},
                    422: {"description": "the new password does not meet the rules (detail: a locale key)"}})
async def api_change_password(body: PasswordChange, request: Request, who: CurrentViewer, deps: Services) -> Response:
    """Change the password; every other session of the user ends, this one stays."""
    problem = await logins.change_password(deps.state, who.who, who.token, body.current_password, body.password,
                                           body.password, client_address(request.scope))
    if problem is not None:
        return JSONResponse({"detail": problem}, status_code=403 if problem == "account_wrong_password" else 422)
    return Response(status_code=204)


@api.get("/sessions", response_model=list[SessionItem])
async def api_sessions(who: CurrentViewer, deps: Services) -> list[SessionItem]:
    """Where the user is logged in."""
    found = await run_blocking(deps.state.web_accounts.sessions_of, who.tenant_id, who.user_id,
                               current_token=who.token)
    return [SessionItem(source=s.source, created_at=s.created_at, seen_at=s.seen_at, ends_at=s.ends_at,
                        current=s.current) for s in found]


@api.delete("/sessions", status_code=204)
async def api_end_other_sessions(who: CurrentViewer, deps: Services) -> Response:
    """Log out every other session of the user; this one stays."""
    await run_blocking(deps.state.web_accounts.end_sessions, who.tenant_id, who.user_id, actor=who.actor,
                       source="web", keep_token=who.token)
    return Response(status_code=204)
