"""The logged-in user of a request (`Viewer`) and the checks every route relies on.

A browser carries the session in the `vipbx_session` cookie (HttpOnly, SameSite=Lax, Secure
unless `platform.web.secure_cookies` is off for plain-HTTP tests); an app sends the same token as
`Authorization: Bearer …`. Every form carries the session's CSRF token; JSON calls authenticated
by the cookie carry it in `X-CSRF-Token` (a bearer token cannot be sent by another site, so it
needs none).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from base.model import TenantUser
from base.offload import run_blocking
from callstate.web_accounts import WebSession

from ..deps import WebDeps
from ..i18n import Translator

SESSION_COOKIE = "vipbx_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotLoggedIn(Exception):
    """No live session: pages redirect to the login, the API answers 401."""


class CsrfRefused(Exception):
    """A change without the session's CSRF token: answered 403, nothing changed."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: the user of the session, never a user named in the request."""

    who: TenantUser
    session: WebSession
    token: str
    by_bearer: bool

    @property
    def tenant_id(self) -> str:
        return self.who.tenant.id

    @property
    def user_id(self) -> str:
        return self.who.user.id

    @property
    def actor(self) -> str:
        """For the audit trail: the user's own login."""
        return f"web:{self.who.user.id}@{self.who.tenant.id}"

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    @property
    def t(self) -> Translator:
        return Translator(self.who.user.language)


def web_deps(request: Request) -> WebDeps:
    deps: WebDeps = request.app.state.deps
    return deps


def session_token(request: Request) -> tuple[str, bool]:
    """The token the request carries and whether it came as a bearer token."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), True
    return request.cookies.get(SESSION_COOKIE, ""), False


async def find_viewer(request: Request) -> Viewer | None:
    deps = web_deps(request)
    token, by_bearer = session_token(request)
    if not token:
        return None
    idle = timedelta(minutes=deps.settings.session_minutes)
    session = await run_blocking(deps.state.web_accounts.session, token, idle=idle)
    if session is None:
        return None
    who = deps.config.find_user(session.tenant_id, session.user_id)
    if who is None:
        return None
    return Viewer(who, session, token, by_bearer)


async def viewer(request: Request) -> Viewer:
    """Dependency of every page and API route but the login: the session's user, else
    `NotLoggedIn`. A JSON change authenticated by the cookie must carry the CSRF header."""
    found = await find_viewer(request)
    if found is None:
        raise NotLoggedIn()
    request.state.viewer = found
    if (request.method not in SAFE_METHODS and not found.by_bearer
            and request.url.path.startswith("/api/")
            and not same_token(request.headers.get(CSRF_HEADER, ""), found.csrf_token)):
        raise CsrfRefused()
    return found


async def checked_form(request: Request, who: Viewer) -> FormData:
    """The posted form of a page, once its CSRF token is checked."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not same_token(token, who.csrf_token):
        raise CsrfRefused()
    return form


def same_token(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


# Route parameters: `who: CurrentViewer` (the logged-in user, else the login), `deps: Services`.
CurrentViewer = Annotated[Viewer, Depends(viewer)]
Services = Annotated[WebDeps, Depends(web_deps)]
