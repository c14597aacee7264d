"""Home in a real browser on the running service: the activity changed on the page is what a
real caller meets (Meeting sends the call to voicemail, whose greeting says it), what Asterisk
tells subscribed phones, and the instructions show the user's own SIP account."""

from __future__ import annotations

import asyncio

import pytest
from selenium.webdriver.support.ui import Select
from support import Person
from test_presence import asterisk_presence, eventually_async
from webrig import Site

from prompts import speech

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
OUTSIDE = "+358451234567"
NOTE = "Asiakkaan luona"


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


def choose(site: Site, css: str, value: str) -> None:
    Select(site.browser.find(css)).select_by_value(value)


async def test_activity_changed_on_the_page_is_what_a_caller_meets(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    assert b.find("#presence-activity").get_attribute("data-key") == "available"
    # Her softphone account: the device id and the password the PBX generated for it.
    assert b.find(".sip-user").text == ANNA.device
    assert b.find(".sip-password").get_attribute("textContent") == rig.pbx.secrets.get(f"device:{ANNA.device}")

    await asyncio.to_thread(choose, site, "#activity", "meeting")
    await asyncio.to_thread(b.type_into, "#note", NOTE)
    await asyncio.to_thread(b.click, "#presence-save")
    await asyncio.to_thread(b.wait_for, "p.notice")
    assert b.find("#presence-activity").get_attribute("data-key") == "meeting"
    assert b.find("#presence-note").text == NOTE
    presence = rig.state.presence(ANNA.tenant, ANNA.user)
    assert (presence.activity, presence.note) == ("meeting", NOTE)
    assert {(e.field, e.new, e.source) for e in rig.state.audit(ANNA.tenant, ANNA.user, limit=5)} >= {
        ("presence.activity", "meeting", "web")}
    # Told to Asterisk: a phone subscribed to Anna sees Do not disturb.
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "dnd")
    await asyncio.to_thread(b.screenshot, "home")
    await asyncio.to_thread(b.screenshot, "home-phone", phone=True)

    # The greeting says the activity once the Services page says so.
    await asyncio.to_thread(b.open, "/services")
    await asyncio.to_thread(b.click, "#play_activity")
    await asyncio.to_thread(b.click, "#voicemail-save")
    await asyncio.to_thread(b.wait_for, "p.notice")
    assert rig.state.voicemail_settings(ANNA.tenant, ANNA.user).play_activity

    # A caller: Meeting sends the call to voicemail without ringing her, and the greeting says it.
    since, calls = rig.observer.mark(), rig.observer.channels.mark()
    caller = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await caller.wait_state("Up", 10)
    sentence = speech.activity_sentence("fi", "meeting")
    await rig.observer.wait_prompt(OUTSIDE, sentence[-1], since=since, timeout=30)
    greeting = rig.observer.prompts(OUTSIDE, since)
    assert greeting[0] == "vm-default-greeting-pre"
    spoken = greeting.index("act-person-is")
    assert greeting[spoken:spoken + len(sentence)] == sentence
    await caller.hangup()
    await rig.no_ring(calls, ANNA.device)

    # Back to Available on the page: the next caller rings her device.
    await asyncio.to_thread(b.open, "/")
    await asyncio.to_thread(choose, site, "#activity", "available")
    await asyncio.to_thread(b.click, "#presence-save")
    await asyncio.to_thread(b.wait_for, "p.notice")
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "available")
    caller = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await caller.hangup()
    await leg.wait_hangup(10)


async def test_a_refused_change_is_shown_and_changes_nothing(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await asyncio.to_thread(choose, site, "#activity", "vacation")
    await asyncio.to_thread(b.driver.execute_script,
                            "document.getElementById('until-date').value = '2020-01-01'")
    await asyncio.to_thread(b.click, "#presence-save")
    await asyncio.to_thread(b.wait_for, ".errors")
    assert "Päättymisajan on oltava tulevaisuudessa" in b.find(".errors").text
    assert rig.state.presence(ANNA.tenant, ANNA.user).activity == "available"
    # Without a gateway in this rig, the page says SMS is not available.
    assert b.find("#sms-unavailable").text == "Tekstiviestit eivät ole käytettävissä."
