"""The ASGI application: every page and API router, the error answers, the security headers.

`create_app(deps)` builds it over the services `vipbx serve` runs; `serve_web` runs it with
uvicorn on `platform.web` as one more job of that process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from callstate import SettingsError, StorageError

from .auth import code_routes
from .auth import routes as auth_routes
from .auth.sessions import CsrfRefused, NotLoggedIn, find_viewer, viewer
from .bodylimit import BodyLimit
from .deps import WebDeps
from .network import PeerFilter
from .pages import account, calllog, conferences, contacts, fax, home, mailbox, recording, services
from .render import page

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/"
# Pages and API routers, in the navigation's order after the login.
ROUTERS = (auth_routes.router, auth_routes.api, code_routes.router, code_routes.api, account.router, account.api,
           home.router, mailbox.router, mailbox.api, services.router, recording.router, recording.api, fax.router, fax.api,
           conferences.router, contacts.router, contacts.api, calllog.router, calllog.api)

# API operations that need no session (the login itself); OpenAPI marks them `security: []`.
PUBLIC_API = {("post", "/api/v1/session"), ("post", "/api/v1/login-code"), ("post", "/api/v1/login-code/password")}

SECURITY_HEADERS = {
    # Our own scripts and styles only; no framing (clickjacking), no referrer to other sites.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), geolocation=(), microphone=()",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def create_app(deps: WebDeps) -> FastAPI:
    app = FastAPI(title="vipbx home page API", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  summary="The users' home page operations: presence, voicemail, forwards, recording, "
                          "fax, conferences, contacts and the call log.")
    app.state.deps = deps
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        await viewer(request)  # like every route but the login: for logged-in users
        return JSONResponse(openapi_document(app))

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": "login required"}, status_code=401,
                                headers={"www-authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        had_cookie = bool(request.cookies.get(auth_routes.SESSION_COOKIE))
        query = f"next={_quote(target)}" + ("&expired=1" if had_cookie else "")
        return RedirectResponse(f"/login?{query}", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": "missing or wrong CSRF token"}, status_code=403)
        return page(request, "error.html", await find_viewer(request), message="error_csrf", status_code=403)

    @app.exception_handler(SettingsError)
    async def refused(request: Request, exc: SettingsError) -> Response:
        # Pages catch their own refusals to show them beside the form; this is the API's answer.
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StorageError)
    async def storage(request: Request, exc: StorageError) -> Response:
        log.warning("web %s %s: %s", request.method, request.url.path, exc)
        if _is_api(request):
            return JSONResponse({"detail": "storage unavailable, try again"}, status_code=503)
        return page(request, "error.html", await find_viewer(request), message="error_storage", status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request) or exc.status_code not in (403, 404):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        message = "error_not_found" if exc.status_code == 404 else "error_forbidden"
        return page(request, "error.html", await find_viewer(request), message=message, status_code=exc.status_code)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("cache-control", "no-store")
        return response

    return app


def openapi_document(app: FastAPI) -> dict[str, object]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "session": {"type": "http", "scheme": "bearer",
                        "description": "The token of POST /api/v1/session (or the page's session cookie "
                                       "with the X-CSRF-Token header on changes)."}}
        schema["security"] = [{"session": []}]
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if (method, path) in PUBLIC_API:
                    operation["security"] = []
        app.openapi_schema = schema
    return app.openapi_schema


def _quote(path: str) -> str:
    return quote(path, safe="/")


def asgi_app(deps: WebDeps) -> PeerFilter:
    """The application behind the address filter and the body cap, as the listener serves it."""
    return PeerFilter(BodyLimit(create_app(deps)), lambda: deps.settings.listener)
