"""The home page on the session PBX: the `rig` (the service as `vipbx serve` runs it, the test
phone, the observer) plus the web listener of that same service, and the session's browser.

A test module uses it with `pytest_plugins = ("support", "webrig")` and the `site` fixture, or
`sms_site`: the same, with the page's messenger sending through a real Kannel (`Site.kannel`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace

import httpx
import pytest
import pytest_asyncio
from browser import Browser, browser_session  # noqa: F401  (a fixture this plugin provides)
from conftest import unavailable
from gateways import Kannel, kannel_programs
from selenium.webdriver.remote.webdriver import WebDriver
from support import Rig

from ari_app.plugins import build_gateways
from base.model import Config, TenantUser
from callstate.sms_state import SMS_FAILED, SMS_SENT
from notify import KannelGateway, Messenger
from web.auth.passwords import hash_password
from web.auth.usernames import login_name
from web.deps import WebDeps
from web.serve import run_web
from web.wiring import web_deps

PASSWORD = "Kevät tulee 2026!"


@dataclass
class Site:
    rig: Rig
    browser: Browser
    base_url: str
    kannel: Kannel | None = None  # the SMS gateway the page sends through (`sms_site`)

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


@asynccontextmanager
async def serving(rig: Rig, driver: WebDriver, deps: WebDeps, kannel: Kannel | None = None) -> AsyncIterator[Site]:
    """The web listener run on `deps`, and a clean browser pointed at it, while the block runs."""
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
        browser = Browser(driver, base_url)
        await asyncio.to_thread(browser.reset)
        yield Site(rig, browser, base_url, kannel)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        with suppress(Exception):
            await asyncio.to_thread(driver.delete_all_cookies)


def _running_deps(rig: Rig) -> WebDeps:
    assert rig.app is not None
    return web_deps(rig.app.deps, rig.pbx.home, rig.app.service.client)


@pytest_asyncio.fixture
async def site(rig: Rig, browser_session: WebDriver) -> AsyncIterator[Site]:  # noqa: F811
    """The running service's home page, and a clean browser pointed at it."""
    async with serving(rig, browser_session, _running_deps(rig)) as started:
        yield started


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    """A running Kannel (bearerbox, smsbox and a fake SMSC), one for the module's tests: each test
    reads what reached the SMSC since its own mark (`len(kannel.delivered())`)."""
    programs = kannel_programs()
    if programs is None:
        unavailable("Kannel is not installed (Debian packages: kannel kannel-extras)")
    instance = Kannel(programs, tmp_path_factory.mktemp("kannel"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def sms_gateway(config: Config, kannel: Kannel) -> KannelGateway:
    """The gateway the service builds when `platform.notifications` names this Kannel."""
    notifications = replace(config.platform.notifications, sms_url=kannel.settings.url, sms_username=kannel.user,
                            sms_sender=kannel.sender, sms_timeout=5.0)
    configured = replace(config, platform=replace(config.platform, notifications=notifications))
    gateway, _ = build_gateways(configured, {"kannel": kannel.password}.__getitem__)
    assert gateway is not None
    return gateway


def forget_sms(rig: Rig) -> None:
    """Every user's SMS counter back to zero (the hourly limit counts audit rows)."""
    rig.state.store.db.write(lambda tx: tx.run(
        "DELETE FROM audit_log WHERE event IN (?, ?)", (SMS_SENT, SMS_FAILED)))


@pytest_asyncio.fixture
async def sms_site(rig: Rig, browser_session: WebDriver, kannel: Kannel) -> AsyncIterator[Site]:  # noqa: F811
    """`site`, with the page's messenger sending SMS through the real Kannel (`Site.kannel`), as
    `platform.notifications.sms_url` makes the service do; every SMS counter starts at zero."""
    gateway = sms_gateway(rig.config, kannel)
    deps = replace(_running_deps(rig), messenger=Messenger(gateway, None))
    forget_sms(rig)
    try:
        async with serving(rig, browser_session, deps, kannel) as started:
            yield started
    finally:
        forget_sms(rig)
        await gateway.aclose()
