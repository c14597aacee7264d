"""Log in and log out: the page's form and the API's session call.

A failed login says the same whatever was wrong (unknown user, no password yet, wrong password)
and takes as long (`passwords.verify_password`). Before a session exists, the login form is
protected by a double-submit token: a random cookie that the form must repeat.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.model import TenantUser
from base.offload import run_blocking

from ..deps import WebDeps
from ..network import client_address
from ..render import page
from .logins import authenticate
from .sessions import SESSION_COOKIE, CurrentViewer, Services, checked_form, same_token
from .usernames import login_name

router = APIRouter()
LOGIN_COOKIE = "vipbx_login"


def safe_next(path: str | None) -> str:
    """Where to go after the login: a path of this site only (never `//host` or a scheme)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    parts = urlsplit(path)
    return path if not parts.scheme and not parts.netloc else "/"


def set_session_cookie(response: Response, deps: WebDeps, token: str) -> None:
    settings = deps.settings
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_max_hours * 3600, path="/",
                        secure=settings.secure_cookies, httponly=True, samesite="lax")


async def open_session(request: Request, deps: WebDeps, who: TenantUser) -> str:
    settings = deps.settings
    opened = await run_blocking(
        deps.state.web_accounts.open_session, who.tenant.id, who.user.id, address=client_address(request.scope),
        idle=timedelta(minutes=settings.session_minutes), max_age=timedelta(hours=settings.session_max_hours),
        actor=f"web:{who.user.id}@{who.tenant.id}")
    return opened.token


def public_page(request: Request, deps: WebDeps, template: str, *, lang: str | None = None, status_code: int = 200,
                **context: object) -> Response:
    """A page before the login (the login, the code pages): its forms carry a fresh double-submit
    token, set here as the `vipbx_login` cookie too."""
    token = secrets.token_urlsafe(24)
    lang = lang or request.query_params.get("lang") or deps.config.platform.default_language
    response = page(request, template, None, lang=lang, login_csrf=token, status_code=status_code, **context)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/", secure=deps.settings.secure_cookies,
                        httponly=True, samesite="strict")
    return response


def login_page(request: Request, deps: WebDeps, *, problem: str | None = None, username: str = "",
               next_path: str = "/", status_code: int = 200) -> Response:
    return public_page(request, deps, "login.html", problem=problem, username=username,
                       next_path=safe_next(next_path), status_code=status_code)


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, deps: Services) -> Response:
    problem = "session_over" if request.query_params.get("expired") else None
    if request.query_params.get("done") == "logged_out":
        problem = None
    return login_page(request, deps, problem=problem, next_path=request.query_params.get("next", "/"))


@router.post("/login", include_in_schema=False)
async def login_submit(request: Request, deps: Services) -> Response:
    form = await request.form()
    username = str(form.get("username") or "")[:254]
    next_path = safe_next(str(form.get("next") or "/"))
    if not same_token(str(form.get("login_csrf") or ""), request.cookies.get(LOGIN_COOKIE, "")):
        return login_page(request, deps, problem="error_csrf", username=username, next_path=next_path,
                          status_code=403)
    who = await authenticate(deps.state, username, str(form.get("password") or ""), client_address(request.scope))
    if who is None:
        return login_page(request, deps, problem="login_failed", username=username, next_path=next_path,
                          status_code=401)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, deps, await open_session(request, deps, who))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, who: CurrentViewer, deps: Services) -> Response:
    await checked_form(request, who)
    await run_blocking(deps.state.web_accounts.end_session, who.token, actor=who.actor)
    response = RedirectResponse("/login?done=logged_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ the JSON API's session

class Credentials(BaseModel):
    username: str = Field(max_length=254, examples=["fi0401234567@company.fi"])
    password: str = Field(max_length=200)


class SessionOut(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    csrf_token: str = Field(description="For cookie-authenticated changes: the `X-CSRF-Token` header.")
    user: str
    expires_at: str


class Me(BaseModel):
    user: str
    name: str
    number: str
    extension: str
    tenant: str
    language: str


api = APIRouter(prefix="/api/v1", tags=["session"])


@api.post("/session", response_model=SessionOut, responses={401: {"description": "wrong user name or password"}})
async def api_login(body: Credentials, request: Request, deps: Services) -> Response | SessionOut:
    """Log in with the home page's user name and password; the token is the session."""
    who = await authenticate(deps.state, body.username, body.password, client_address(request.scope))
    if who is None:
        return JSONResponse({"detail": "wrong user name or password"}, status_code=401)
    return await api_session(request, deps, who)


async def api_session(request: Request, deps: WebDeps, who: TenantUser) -> SessionOut:
    """A new session of `who` for an app: its token and CSRF token."""
    token = await open_session(request, deps, who)
    found = await run_blocking(deps.state.web_accounts.session, token,
                               idle=timedelta(minutes=deps.settings.session_minutes))
    assert found is not None
    return SessionOut(token=token, csrf_token=found.csrf_token, user=login_name(who),
                      expires_at=found.ends_at.isoformat())


@api.delete("/session", status_code=204)
async def api_logout(who: CurrentViewer, deps: Services) -> Response:
    """Log out: the token no longer works."""
    await run_blocking(deps.state.web_accounts.end_session, who.token, actor=who.actor)
    return Response(status_code=204)


@api.get("/me", response_model=Me)
async def api_me(who: CurrentViewer) -> Me:
    """The logged-in user."""
    tenant, user = who.who
    return Me(user=login_name(who.who), name=user.name, number=user.number, extension=user.extension,
              tenant=tenant.id, language=user.language)
