"""The Home page's SMS in a real browser, sent by the running service's web listener through a
real Kannel (bearerbox + smsbox, its fake SMSC): what the user typed is what reaches the SMSC, to
the number the tenant's rules make of it; a refused SMS never reaches Kannel, nor does one over
the hourly limit.

"Never reached" is shown without waiting: a marker SMS handed to the same Kannel after the
refusal arrives at the SMSC alone (Kannel delivers in order over its one SMSC connection)."""

from __future__ import annotations

import asyncio

import pytest
from support import Person
from webrig import Site, sms_gateway

from callstate.sms_state import SMS_SENT
from web.home_service import SMS_LIMIT

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
SARA_NUMBER = "+358401110003"  # extension 103
OUTSIDE = "+358451234567"
MARKER_TO = "+358505550199"
SENDER = "VIP"  # platform.notifications.sms_sender of the rig's Kannel: the marker's sender
ANNA_NUMBER = "+358401110001"  # the page's SMS come from the user's own number


async def send_on_page(site: Site, to: str, text: str) -> None:
    b = site.browser
    await asyncio.to_thread(b.open, "/")
    await asyncio.to_thread(b.type_into, "#sms-to", to)
    await asyncio.to_thread(b.type_into, "#sms-text", text)
    await asyncio.to_thread(b.click, "#sms-send")


async def sent(site: Site) -> None:
    b = site.browser
    await asyncio.to_thread(b.wait_text, "p.notice", "Tekstiviesti lähetetty.")
    assert b.path == "/?done=home_sms_sent"


async def at_smsc(site: Site, since: int, count: int) -> list[tuple[str, str, str]]:
    """What reached the SMSC since the mark, once there are `count` of them (no more are taken)."""
    kannel = site.kannel
    assert kannel is not None
    for _ in range(200):
        found = kannel.delivered()[since:]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} SMS did not reach the SMSC; it has {kannel.delivered()[since:]}")


async def nothing_more(site: Site, since: int) -> None:
    """Nothing reached the SMSC since the mark but a marker sent now through the same Kannel."""
    assert site.kannel is not None
    gateway = sms_gateway(site.rig.config, site.kannel)
    try:
        await gateway.send(MARKER_TO, "marker")
    finally:
        await gateway.aclose()
    assert await at_smsc(site, since, 1) == [(SENDER, MARKER_TO, "marker")]


def sms_audit(site: Site) -> list[tuple[str | None, str]]:
    return [(e.new, e.source) for e in site.rig.state.audit(ANNA.tenant, ANNA.user, limit=50)
            if e.event == SMS_SENT]


def mark(site: Site) -> int:
    assert site.kannel is not None
    return len(site.kannel.delivered())


async def test_an_sms_sent_on_the_home_page_reaches_the_smsc(sms_site: Site) -> None:
    site, b = sms_site, sms_site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    assert b.find("#sms-form").is_displayed() and not b.find_all("#sms-unavailable")

    since = mark(site)
    text = "Pääsen paikalle klo 14.30, soitan kun olen perillä. T. Anna"
    await send_on_page(site, "045 123 4567", text)  # national form, spaces as people type them
    await sent(site)
    assert await at_smsc(site, since, 1) == [(ANNA_NUMBER, OUTSIDE, text)]

    # To a colleague's extension, in characters outside GSM-7 (sent as UCS-2).
    since = mark(site)
    await send_on_page(site, "103", "Kokous siirtyy → huomiseen ✓")
    await sent(site)
    assert await at_smsc(site, since, 1) == [(ANNA_NUMBER, SARA_NUMBER, "Kokous siirtyy → huomiseen ✓")]
    assert sms_audit(site) == [(SARA_NUMBER, "web"), (OUTSIDE, "web")]


async def test_a_premium_number_is_refused_on_the_page_and_nothing_reaches_kannel(sms_site: Site) -> None:
    site, b = sms_site, sms_site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    since = mark(site)
    await send_on_page(site, "0600123456", "Äänestän numeroa 3")
    await asyncio.to_thread(b.wait_for, ".errors")
    assert "maksullinen palvelunumero" in b.find(".errors").text
    # The page keeps what was typed, to correct it.
    assert b.find("#sms-to").get_attribute("value") == "0600123456"
    assert b.find("#sms-text").get_attribute("value") == "Äänestän numeroa 3"
    await asyncio.to_thread(b.driver.execute_script, "document.getElementById('sms-heading').scrollIntoView()")
    await asyncio.to_thread(b.screenshot, "home-sms")
    await nothing_more(site, since)
    assert sms_audit(site) == []


async def test_the_hourly_limit_stops_the_next_sms_before_kannel(sms_site: Site) -> None:
    site, b = sms_site, sms_site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    since = mark(site)
    for n in range(1, SMS_LIMIT + 1):
        await send_on_page(site, OUTSIDE, f"Viesti {n}")
        await sent(site)
    assert await at_smsc(site, since, SMS_LIMIT) == [(ANNA_NUMBER, OUTSIDE, f"Viesti {n}")
                                                    for n in range(1, SMS_LIMIT + 1)]

    since = mark(site)
    await send_on_page(site, OUTSIDE, "Yksi liikaa")
    await asyncio.to_thread(b.wait_for, ".errors")
    assert b.find(".errors").text == f"Olet lähettänyt jo {SMS_LIMIT} viestiä tunnin sisällä. Yritä myöhemmin."
    await nothing_more(site, since)
    assert len(sms_audit(site)) == SMS_LIMIT  # the refused one is not counted
