"""The home page on the session PBX: the `rig` (the service as `vipbx serve` runs it, the test
phone, the observer) plus the web listener of that same service, and the session's browser.

A test module uses it with `pytest_plugins = ("support", "webrig")` and the `site` fixture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass

import httpx
import pytest_asyncio
from browser import Browser, browser_session  # noqa: F401  (a fixture this plugin provides)
from selenium.webdriver.remote.webdriver import WebDriver
from support import Rig

from base.model import TenantUser
from web.auth.passwords import hash_password
from web.auth.usernames import login_name
from web.serve import run_web
from web.wiring import web_deps

PASSWORD = "Kevät tulee 2026!"


@dataclass
class Site:
    rig: Rig
    browser: Browser
    base_url: str

    def who(self, tenant_id: str, user_id: str) -> TenantUser:
        found = self.rig.config.find_user(tenant_id, user_id)
        assert found is not None
        return found

    def set_password(self, who: TenantUser, password: str = PASSWORD) -> None:
        self.rig.state.web_accounts.set_password_hash(who.tenant.id, who.user.id, hash_password(password),
                                                      actor="e2e", source="test")

    def forget_password(self, who: TenantUser) -> None:
        self.rig.state.store.db.write(lambda tx: tx.run(
            "DELETE FROM web_accounts WHERE tenant_id = ? AND user_id = ?", (who.tenant.id, who.user.id)))

    async def log_in(self, who: TenantUser, password: str = PASSWORD) -> None:
        """Through the login form in the browser, as the user would (the password set first)."""
        self.set_password(who, password)
        b = self.browser
        await asyncio.to_thread(b.open, "/login")
        await asyncio.to_thread(b.type_into, "#username", login_name(who))
        await asyncio.to_thread(b.type_into, "#password", password)
        await asyncio.to_thread(b.click, "#login-submit")
        await asyncio.to_thread(b.wait_for, "#nav-user")


async def _listening(url: str) -> bool:
    with suppress(httpx.HTTPError):
        async with httpx.AsyncClient() as client:
            return (await client.get(url + "/login")).status_code == 200
    return False


@pytest_asyncio.fixture
async def site(rig: Rig, browser_session: WebDriver) -> AsyncIterator[Site]:  # noqa: F811
    """The running service's home page, and a clean browser pointed at it."""
    assert rig.app is not None
    deps = web_deps(rig.app.deps, rig.pbx.home, rig.app.service.client)
    listener = deps.settings.listener
    base_url = f"http://{listener.bind}:{listener.port}"
    task = asyncio.create_task(run_web(deps), name="web")
    try:
        for _ in range(100):
            if await _listening(base_url):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the home page is not listening on {base_url}")
        browser = Browser(browser_session, base_url)
        await asyncio.to_thread(browser.reset)
        yield Site(rig, browser, base_url)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        with suppress(Exception):
            await asyncio.to_thread(browser_session.delete_all_cookies)
