"""Every route of the home page, found by walking the application (so a new route is covered
the day it is added): an anonymous request to any route but the login is refused, and no route
lets the request name whose data it is about."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route
from webharness import WebHarness, make_harness

from web.app import ROUTERS, create_app
from web.deps import WebDeps

# The only routes an anonymous visitor may use: logging in (and getting there).
PUBLIC = {
    ("GET", "/login"), ("POST", "/login"), ("POST", "/api/v1/session"),
    # A first login or a forgotten password: ask for a code, type it, choose the password.
    ("GET", "/login/code"), ("POST", "/login/code"), ("GET", "/login/code/enter"), ("POST", "/login/code/enter"),
    ("GET", "/login/password"), ("POST", "/login/password"),
    ("POST", "/api/v1/login-code"), ("POST", "/api/v1/login-code/password"),
}
# Parameters that would let a request choose another user's or tenant's data.
FORBIDDEN_PARAMETERS = re.compile(r"(tenant|user|owner|account|mailbox)(_?id)?", re.IGNORECASE)


def all_routes() -> list[tuple[str, str, Route]]:
    app = create_app(cast(WebDeps, None))  # building the routes touches no service
    found = []
    # The pages' routers (their paths carry the router's prefix) and the app's own routes.
    for route in [*(r for router in ROUTERS for r in router.routes), *app.routes]:
        if isinstance(route, Route):  # APIRoute is one; the static mount is not
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, route.path, route))
    return found


def filled(path: str) -> str:
    """A concrete URL for a route path: every {parameter} given a plausible value."""
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def test_the_walk_finds_the_routes() -> None:
    paths = {(method, path) for method, path, _ in all_routes()}
    assert {("GET", "/"), ("GET", "/login"), ("POST", "/logout"), ("GET", "/api/v1/me")} <= paths


@pytest.mark.parametrize("method, path", [(m, p) for m, p, _ in all_routes() if (m, p) not in PUBLIC])
async def test_anonymous_requests_are_refused(site: WebHarness, method: str, path: str) -> None:
    async with site.client() as client:
        response = await client.request(method, filled(path))
    if path.startswith("/api/"):
        assert response.status_code == 401, (method, path, response.status_code)
    else:
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("method, path, route", all_routes())
def test_no_route_takes_whose_data_from_the_request(method: str, path: str, route: Route) -> None:
    if not isinstance(route, APIRoute):
        return
    names = [param.name for group in (route.dependant.path_params, route.dependant.query_params,
                                      route.dependant.body_params) for param in group]
    named = [name for name in names if FORBIDDEN_PARAMETERS.fullmatch(name)]
    assert not named, f"{method} {path} takes {named} from the request: use the session's viewer"
