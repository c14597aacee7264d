"""Contacts in a real browser on the session PBX: a personal contact added on the page and called
with its button rings the user's device first; answered, the PBX calls the contact through the
carrier as the device's own call. A colleague called from the directory rings on their devices,
and the directory shows their activity and that they are on the phone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
import pytest_asyncio
from support import Rig
from webrig import Site

from base.outbound import OutboundPolicy
from testphone.driver import Call

pytest_plugins = ("support", "webrig")


@pytest.fixture(autouse=True)
def _no_contacts_left(rig: Rig) -> Iterator[None]:
    """Each test starts and ends with no personal contacts (the rig resets the rest of the state)."""
    def clear() -> None:
        contacts = rig.state.contacts
        for contact in contacts.contacts("acme", "anna.virtanen"):
            contacts.delete_contact("acme", "anna.virtanen", contact.id, actor="e2e", source="test")

    clear()
    yield
    clear()


@pytest_asyncio.fixture
async def one_call_out(rig: Rig) -> None:
    """The service again with acme allowed one call out at a time (the limit lives in the
    service's configuration); asked for before `site`, so the page runs on this service."""
    acme = rig.config.tenant("acme")
    assert acme is not None
    limited = replace(acme, outbound=OutboundPolicy(allow=("+358",), max_calls=1, max_calls_per_minute=10))
    await rig.stop_app()
    rig.config = replace(rig.config, tenants=tuple(limited if t.id == "acme" else t for t in rig.config.tenants))
    await rig.start_app()

ANNA_DEVICE, ANNA_NUMBER = "acme-anna-soft", "+358401110001"
MIKKO_DEVICES = ("acme-mikko-soft", "acme-mikko-desk")
OUTSIDE = ("050 555 0101", "+358505550101")  # as typed, and as the carrier is asked for it
OUTSIDE_2 = ("0505550102", "+358505550102")


async def talk(rig: Rig, a: Call, b: Call) -> None:
    """Audio goes through both ways: the two legs are really connected."""
    heard = a.audio_seconds
    await b.play_tone(1.0, 800)
    assert await a.heard_audio(heard + 0.8, timeout=5), "no audio from the contact to the user"
    heard = b.audio_seconds
    await a.play_tone(1.0, 600)
    assert await b.heard_audio(heard + 0.8, timeout=5), "no audio from the user to the contact"


async def test_add_a_contact_and_click_to_call_it(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who("acme", "anna.virtanen"))
    await asyncio.to_thread(b.open, "/contacts")
    await asyncio.to_thread(b.type_into, "#contact-name", "Pekka Puu")
    await asyncio.to_thread(b.type_into, "#contact-number", OUTSIDE[0])
    await asyncio.to_thread(b.type_into, "#contact-note", "Toimittaja")
    await asyncio.to_thread(b.click, "#contact-save")
    await asyncio.to_thread(b.wait_for, "#personal")
    [stored] = rig.state.contacts.contacts("acme", "anna.virtanen")
    assert stored.number == OUTSIDE[1]
    assert OUTSIDE[1] in b.find(f"#contact-{stored.id}").text
    await asyncio.to_thread(b.screenshot, "contacts")

    since = rig.observer.channels.mark()
    await asyncio.to_thread(b.click, f"#contact-{stored.id} button.call")
    await asyncio.to_thread(b.wait_for, "#contacts-calling")
    # The user's own device rings first, showing whom the call is for; nothing goes out yet.
    mine = await rig.phone.incoming(ANNA_DEVICE, 15)
    assert mine.caller.get("number") == OUTSIDE[1], mine.caller
    assert "carrier" not in rig.observer.channels.dialled(since)
    await mine.answer()
    # Answered: the PBX calls the contact through the carrier, as Anna's own call.
    out = await rig.phone.incoming(OUTSIDE[1], 15)
    assert out.caller.get("number") == ANNA_NUMBER, out.caller
    await out.answer()
    await mine.wait_state("Up", 5)
    await talk(rig, mine, out)
    await mine.hangup()
    await out.wait_hangup(10)


async def test_a_barred_contact_is_refused_on_the_page_and_nothing_rings(site: Site) -> None:
    rig, b = site.rig, site.browser
    contact = rig.state.contacts.add_contact("acme", "anna.virtanen", "Premium", "0600 123456",
                                             actor="e2e", source="test")
    await site.log_in(site.who("acme", "anna.virtanen"))
    await asyncio.to_thread(b.open, "/contacts")
    since = rig.observer.channels.mark()
    await asyncio.to_thread(b.click, f"#contact-{contact.id} button.call")
    problem = await asyncio.to_thread(b.wait_for, "#contacts-problem")
    assert "Tähän numeroon ei voi soittaa" in problem.text
    # Then a colleague is called: the first call Anna's device gets is that one, so the barred
    # number never rang her, and nothing went to the carrier.
    await asyncio.to_thread(b.open, "/contacts")
    await asyncio.to_thread(b.click, "#user-sara\\.lindqvist button.call")
    mine = await rig.phone.incoming(ANNA_DEVICE, 15)
    assert mine.caller.get("number") == "+358401110003", mine.caller
    await mine.hangup()
    await rig.observer.channels.wait_calls_over(since)
    assert "carrier" not in rig.observer.channels.dialled(since)


async def test_directory_activity_and_click_to_call_a_colleague(site: Site) -> None:
    rig, b = site.rig, site.browser
    acme = rig.config.tenant("acme")
    assert acme is not None
    await rig.presence.change(acme, acme.user("mikko.korhonen"), "lunch", None, actor="e2e", source="test")
    await site.log_in(site.who("acme", "anna.virtanen"))
    await asyncio.to_thread(b.open, "/contacts?q=Korhonen")
    row = "#user-mikko\\.korhonen"
    assert "Lounaalla" in b.find(f"{row} .activity").text
    assert b.find(f"{row} .phone").text == "Vapaa"  # registered, not in a call (from Asterisk)

    await asyncio.to_thread(b.click, f"{row} button.call")
    mine = await rig.phone.incoming(ANNA_DEVICE, 15)
    await mine.answer()
    # Answered: Mikko is called as if Anna had dialled him (his "lunch" rings his devices).
    theirs, desk = [await rig.phone.incoming(device, 15) for device in MIKKO_DEVICES]
    assert theirs.caller.get("number") == ANNA_NUMBER
    await theirs.answer()
    await mine.wait_state("Up", 5)
    await talk(rig, mine, theirs)

    # The page asks Asterisk at most every few seconds: reload until it shows the call.
    for _ in range(40):
        await asyncio.to_thread(b.open, "/contacts?q=Korhonen")
        if b.find(f"{row} .phone").text == "Puhelussa":
            break
        await asyncio.sleep(0.5)
    assert b.find(f"{row} .phone").text == "Puhelussa"
    await asyncio.to_thread(b.screenshot, "contacts-phone", phone=True)
    await mine.hangup()
    await theirs.wait_hangup(10)
    assert desk.ended  # the other device stopped ringing when the soft phone answered


async def test_click_to_call_is_the_users_own_call_for_the_fraud_throttle(one_call_out: None, site: Site) -> None:
    """With the tenant's one call out in use, a click-to-call to an outside number rings the user,
    and once answered the PBX refuses it as it would the device's own call: the user hears why."""
    rig, b = site.rig, site.browser
    busy = await rig.phone.call(OUTSIDE[0].replace(" ", ""), device=MIKKO_DEVICES[0])  # acme's one call out
    out = await rig.phone.incoming(OUTSIDE[1], 15)
    await out.answer()
    await busy.wait_state("Up", 5)
    contact = rig.state.contacts.add_contact("acme", "anna.virtanen", "Toinen", OUTSIDE_2[0],
                                             actor="e2e", source="test")
    await site.log_in(site.who("acme", "anna.virtanen"))
    await asyncio.to_thread(b.open, "/contacts")
    since = rig.observer.channels.mark()
    heard = rig.observer.mark()
    await asyncio.to_thread(b.click, f"#contact-{contact.id} button.call")
    mine = await rig.phone.incoming(ANNA_DEVICE, 15)
    await mine.answer()
    await rig.observer.wait_prompt(ANNA_NUMBER, "out-refused-limit", since=heard, timeout=20)
    await mine.wait_hangup(20)
    await rig.observer.channels.wait_calls_over(since)
    assert "carrier" not in rig.observer.channels.dialled(since)  # nothing more went out
    await busy.hangup()
    await out.wait_hangup(10)
