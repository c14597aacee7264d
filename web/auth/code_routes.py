"""First login and forgotten password: ask for a one-time code, type it, choose a password.

Three pages before the login, each form with the double-submit token of the login form:
`/login/code` (the user name; the answer is the same whether or not it names someone),
`/login/code/enter` (the code; a right one gives a short-lived ticket in an HttpOnly cookie) and
`/login/password` (the password, twice; then the user is logged in and every other session of
theirs has ended). The API does the same in two calls.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.offload import run_blocking

from ..deps import WebDeps
from ..network import client_address
from . import logins
from .passwords import MAX_LENGTH, MIN_LENGTH, password_problem
from .routes import (
    LOGIN_COOKIE,
    SessionOut,
    api_session,
    open_session,
    public_page,
    set_session_cookie,
)
from .sessions import Services, same_token
from .usernames import login_name

router = APIRouter()
TICKET_COOKIE = "vipbx_ticket"
CODE_SENT = "login_code_sent"


def _lang(request: Request, form_lang: object = None) -> str | None:
    lang = form_lang if isinstance(form_lang, str) and form_lang else request.query_params.get("lang")
    return lang or None


async def _posted(request: Request) -> tuple[dict[str, str], bool]:
    """The form's fields and whether it carries the double-submit token of its cookie."""
    form = await request.form()
    fields = {key: str(value)[:MAX_LENGTH + 54] for key, value in form.items() if isinstance(value, str)}
    return fields, same_token(fields.get("login_csrf", ""), request.cookies.get(LOGIN_COOKIE, ""))


def _code_page(request: Request, deps: WebDeps, *, problem: str | None = None, username: str = "",
               lang: str | None = None, status_code: int = 200) -> Response:
    return public_page(request, deps, "login_code.html", lang=lang, problem=problem, username=username,
                       status_code=status_code)


def _enter_page(request: Request, deps: WebDeps, *, problem: str | None = None, username: str = "",
                lang: str | None = None, status_code: int = 200) -> Response:
    return public_page(request, deps, "login_code_enter.html", lang=lang, problem=problem, username=username,
                       code_minutes=deps.state.web_logins.policy.code_minutes, status_code=status_code)


def _choose_page(request: Request, deps: WebDeps, name: str, *, problem: str | None = None,
                 lang: str | None = None, status_code: int = 200) -> Response:
    return public_page(request, deps, "login_password.html", lang=lang, problem=problem, login_user=name,
                       min_length=MIN_LENGTH, status_code=status_code)


@router.get("/login/code", include_in_schema=False)
async def code_form(request: Request, deps: Services) -> Response:
    over = request.query_params.get("over")
    return _code_page(request, deps, problem="login_ticket_over" if over else None,
                      username=request.query_params.get("username", "")[:254])


@router.post("/login/code", include_in_schema=False)
async def code_request(request: Request, deps: Services) -> Response:
    fields, ok = await _posted(request)
    username, lang = fields.get("username", "")[:254].strip(), _lang(request, fields.get("lang"))
    if not ok:
        return _code_page(request, deps, problem="error_csrf", username=username, lang=lang, status_code=403)
    logins.request_code(deps, username, client_address(request.scope))
    query = {"done": CODE_SENT, "username": username, **({"lang": lang} if lang else {})}
    return RedirectResponse("/login/code/enter?" + urlencode(query), status_code=303)


@router.get("/login/code/enter", include_in_schema=False)
async def enter_form(request: Request, deps: Services) -> Response:
    return _enter_page(request, deps, username=request.query_params.get("username", "")[:254])


@router.post("/login/code/enter", include_in_schema=False)
async def enter_code(request: Request, deps: Services) -> Response:
    fields, ok = await _posted(request)
    username, lang = fields.get("username", "")[:254].strip(), _lang(request, fields.get("lang"))
    if not ok:
        return _enter_page(request, deps, problem="error_csrf", username=username, lang=lang, status_code=403)
    ticket = await logins.check_code(deps.state, username, fields.get("code", ""), client_address(request.scope))
    if ticket is None:
        return _enter_page(request, deps, problem="login_code_wrong", username=username, lang=lang,
                           status_code=401)
    response = RedirectResponse("/login/password" + (f"?lang={lang}" if lang else ""), status_code=303)
    response.set_cookie(TICKET_COOKIE, ticket, max_age=deps.state.web_logins.policy.ticket_minutes * 60,
                        path="/login", secure=deps.settings.secure_cookies, httponly=True, samesite="strict")
    return response


def _over(lang: str | None) -> Response:
    return RedirectResponse("/login/code?over=1" + (f"&lang={lang}" if lang else ""), status_code=303)


@router.get("/login/password", include_in_schema=False)
async def choose_form(request: Request, deps: Services) -> Response:
    who = await run_blocking(logins.ticket_owner, deps.state, request.cookies.get(TICKET_COOKIE, ""))
    if who is None:
        return _over(_lang(request))
    return _choose_page(request, deps, login_name(who), lang=_lang(request) or who.user.language)


@router.post("/login/password", include_in_schema=False)
async def choose_password(request: Request, deps: Services) -> Response:
    fields, ok = await _posted(request)
    lang = _lang(request, fields.get("lang"))
    ticket = request.cookies.get(TICKET_COOKIE, "")
    if not ok:
        who = await run_blocking(logins.ticket_owner, deps.state, ticket)
        if who is None:
            return _over(lang)
        return _choose_page(request, deps, login_name(who), problem="error_csrf", lang=lang, status_code=403)
    who, problem = await logins.choose_password(deps.state, ticket, fields.get("password", ""),
                                                fields.get("repeat", ""))
    if who is None:
        return _over(lang)
    if problem is not None:
        return _choose_page(request, deps, login_name(who), problem=problem, lang=lang or who.user.language,
                            status_code=422)
    response = RedirectResponse("/?done=login_password_chosen", status_code=303)
    set_session_cookie(response, deps, await open_session(request, deps, who))
    response.delete_cookie(TICKET_COOKIE, path="/login")
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ the JSON API's twins

api = APIRouter(prefix="/api/v1", tags=["session"])


class CodeRequest(BaseModel):
    username: str = Field(max_length=254, examples=["fi0401234567@company.fi"])


class Accepted(BaseModel):
    detail: str


class CodeLogin(BaseModel):
    username: str = Field(max_length=254)
    code: str = Field("", max_length=40, description="The digits of the SMS (or e-mail).")
    ticket: str = Field("", max_length=200, description="Instead of the code: the ticket of a 422 answer, to try "
                                                       "another password without a new code.")
    password: str = Field(max_length=MAX_LENGTH, description=f"The new password: at least {MIN_LENGTH} characters, "
                                                             "not the user's name or number.")


class Problem(BaseModel):
    detail: str = Field(description="A locale key: password_too_short, password_has_name, ...")
    ticket: str | None = Field(None, description="Once the code was right: send it instead of the code with "
                                                 "another password (valid for minutes, one use).")


@api.post("/login-code", status_code=202, response_model=Accepted)
async def api_request_code(body: CodeRequest, request: Request, deps: Services) -> Accepted:
    """First login or a forgotten password: a one-time code is sent by SMS (or e-mail) to the user.
    The answer is the same whether or not the user exists; requests are rate limited."""
    logins.request_code(deps, body.username, client_address(request.scope))
    return Accepted(detail="if the user name is right, a code is on its way")


@api.post("/login-code/password", response_model=SessionOut,
          responses={401: {"description": "wrong, expired or used-up code or ticket"},
                     422: {"model": Problem, "description": "the password does not meet the rules"}})
async def api_password_with_code(body: CodeLogin, request: Request, deps: Services) -> Response | SessionOut:
    """Choose a password with the code, and log in: every other session of the user ends.

    Rules that concern any password (its length) are checked first, spending no attempt; rules
    about the user (their name or number in it) only once the code proved who is asking, so the
    answers tell nobody whether a user name exists. That 422 carries a ticket for the next try."""
    if problem := password_problem(body.password):
        return JSONResponse({"detail": problem, "ticket": None}, status_code=422)
    ticket = body.ticket or await logins.check_code(deps.state, body.username, body.code,
                                                    client_address(request.scope))
    if not ticket:
        return JSONResponse({"detail": "wrong or expired code"}, status_code=401)
    who, problem = await logins.choose_password(deps.state, ticket, body.password, body.password)
    if who is None:
        return JSONResponse({"detail": "wrong or expired code"}, status_code=401)
    if problem is not None:
        return JSONResponse({"detail": problem, "ticket": ticket}, status_code=422)
    return await api_session(request, deps, who)
