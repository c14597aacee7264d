"""The home page served by the running service, in a real browser: log in, see Home, log out."""

from __future__ import annotations

import asyncio

import httpx
from webrig import Site

pytest_plugins = ("support", "webrig")


async def test_login_home_and_logout_in_the_browser(site: Site) -> None:
    anna = site.who("acme", "anna.virtanen")
    b = site.browser
    await asyncio.to_thread(b.open, "/login")
    await asyncio.to_thread(b.screenshot, "login")
    await site.log_in(anna)
    assert "Anna Virtanen" in b.find("h1").text
    assert b.find("#nav-user").text == "fi0401110001@acme.example"
    await asyncio.to_thread(b.click, "#logout")
    await asyncio.to_thread(b.wait_for, "#login-submit")
    assert b.path.startswith("/login")
    await asyncio.to_thread(b.open, "/")
    assert b.path.startswith("/login?next=/")


async def test_the_listener_refuses_anonymous_api_calls(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.base_url) as client:
        assert (await client.get("/api/v1/me")).status_code == 401
        assert (await client.get("/")).status_code == 303
