"""The first login in a real browser, with the code arriving through a real SMS gateway: Kannel
(bearerbox + smsbox) with Kannel's own fake SMSC, the service's messenger pointed at it. Then
the chosen password logs in, the account page changes it, and the old one is refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from conftest import unavailable
from gateways import Kannel, kannel_programs
from support import Rig, eventually
from webrig import Site

from notify import KannelGateway, Messenger
from web.auth.usernames import login_name

pytest_plugins = ("support", "webrig")

FIRST = "Ensimmäinen salasana 1"
SECOND = "Toinen salasana 2!"
CODE = re.compile(r"\b([0-9]{8})\b")


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    programs = kannel_programs()
    if programs is None:
        unavailable("Debian's kannel and kannel-extras (fakesmsc) are not installed")
    instance = Kannel(programs, tmp_path / "kannel")
    instance.start()
    yield instance
    instance.stop()


@pytest_asyncio.fixture
async def sms_rig(rig: Rig, kannel: Kannel) -> AsyncIterator[Rig]:
    """The rig whose service sends its texts through the real Kannel (set before `site` starts
    the home page over the service's messenger)."""
    assert rig.app is not None
    gateway = KannelGateway(kannel.settings)
    rig.app.deps = replace(rig.app.deps, messenger=Messenger(gateway, None))
    yield rig
    await gateway.aclose()


async def log_in_with(site: Site, username: str, password: str) -> None:
    b = site.browser
    await asyncio.to_thread(b.open, "/login")
    await asyncio.to_thread(b.type_into, "#username", username)
    await asyncio.to_thread(b.type_into, "#password", password)
    await asyncio.to_thread(b.click, "#login-submit")


async def log_out(site: Site) -> None:
    await asyncio.to_thread(site.browser.click, "#logout")
    await asyncio.to_thread(site.browser.wait_for, "#login-submit")


async def test_first_login_with_an_sms_code_then_change_the_password(
        sms_rig: Rig, kannel: Kannel, site: Site) -> None:
    anna = site.who("acme", "anna.virtanen")
    name = login_name(anna)
    site.forget_password(anna)  # she has never logged in
    b = site.browser

    # The login page sends a first-timer to the code.
    await asyncio.to_thread(b.open, "/login")
    await asyncio.to_thread(b.screenshot, "login")
    await asyncio.to_thread(b.click, "#login-code-link")
    await asyncio.to_thread(b.wait_for, "#code-send")
    await asyncio.to_thread(b.type_into, "#username", name)
    await asyncio.to_thread(b.screenshot, "login-code")
    await asyncio.to_thread(b.click, "#code-send")
    await asyncio.to_thread(b.wait_for, "#code")
    assert b.find("#username").get_attribute("value") == name
    assert "Jos käyttäjätunnus on oikein" in b.find(".notice").text

    # The SMS reaches the SMSC side of Kannel, to Anna's number, in her language.
    texts = await eventually(lambda: [d for d in kannel.delivered() if d[1] == "+358401110001"], 20,
                             "the code SMS at the SMSC")
    (sender, _, text), = texts
    assert sender == "VIP" and text.startswith("Kotisivun kirjautumiskoodisi on ")
    found = CODE.search(text)
    assert found, text
    await asyncio.to_thread(b.type_into, "#code", found.group(1))
    await asyncio.to_thread(b.screenshot, "login-code-enter")
    await asyncio.to_thread(b.screenshot, "login-code-enter-phone", phone=True)
    await asyncio.to_thread(b.click, "#code-check")
    await asyncio.to_thread(b.wait_for, "#repeat")
    assert b.path.startswith("/login/password") and name in b.find("main").text

    # Choose the password: a bad one is refused beside the form, then the real one logs in.
    await asyncio.to_thread(b.type_into, "#password", "lyhyt")
    await asyncio.to_thread(b.type_into, "#repeat", "lyhyt")
    await asyncio.to_thread(b.driver.execute_script, "document.querySelectorAll('input').forEach(i => i.removeAttribute('minlength'))")
    await asyncio.to_thread(b.click, "#password-save")
    await asyncio.to_thread(b.wait_for, "#login-error")
    assert "vähintään 10 merkkiä" in b.find("#login-error").text
    await asyncio.to_thread(b.type_into, "#password", FIRST)
    await asyncio.to_thread(b.type_into, "#repeat", FIRST)
    await asyncio.to_thread(b.screenshot, "login-password")
    await asyncio.to_thread(b.click, "#password-save")
    await asyncio.to_thread(b.wait_for, "#nav-user")
    # The session is Anna's: her name, her login, her number.
    assert b.path == "/?done=login_password_chosen"
    assert b.find("#nav-user").text == name and "Anna Virtanen" in b.find("h1").text
    assert b.find("#my-number").text == "+358401110001"

    # Log out, and back in with the chosen password.
    await log_out(site)
    await log_in_with(site, name, FIRST)
    await asyncio.to_thread(b.wait_for, "#nav-user")

    # The account page, from her name in the navigation: change the password.
    await asyncio.to_thread(b.click, "#nav-user")
    await asyncio.to_thread(b.wait_for, "#password-change")
    assert b.path == "/account" and b.find("#account-login").text == name
    await asyncio.to_thread(b.type_into, "#current", FIRST)
    await asyncio.to_thread(b.type_into, "#password", SECOND)
    await asyncio.to_thread(b.type_into, "#repeat", SECOND)
    await asyncio.to_thread(b.screenshot, "account")
    await asyncio.to_thread(b.screenshot, "account-phone", phone=True)
    await asyncio.to_thread(b.click, "#password-change")
    await asyncio.to_thread(b.wait_text, ".notice", "Salasana vaihdettu")
    assert b.path == "/account?done=account_password_changed"

    # The old password is refused, the new one works.
    await log_out(site)
    await log_in_with(site, name, FIRST)
    await asyncio.to_thread(b.wait_for, "#login-error")
    assert "väärin" in b.find("#login-error").text and b.path.startswith("/login")
    await log_in_with(site, name, SECOND)
    await asyncio.to_thread(b.wait_for, "#nav-user")
    assert b.find("#nav-user").text == name

    # The trail: the code went by SMS and was used, the password was set and changed, the logins.
    trail = [(e.event, e.new) for e in site.rig.state.audit("acme", "anna.virtanen", limit=50)
             if e.source == "web"]
    events = [e for e, _ in trail]
    assert ("code_sent", "sms") in trail and "code_used" in events
    assert events.count("password_set") == 2 and "login_failed" in events
