"""Services in a real browser on the running service: a forward set on the page is what a real
call to the user follows (the target's devices ring, the user's does not), and a refusal gives
the code's reason and changes nothing."""

from __future__ import annotations

import asyncio

import pytest
from support import Person, wait_pbx_idle
from webrig import Site

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO = Person("acme", "mikko.korhonen", "+358401110002", "acme-mikko-soft", "")
MIKKO_DEVICES = ("acme-mikko-soft", "acme-mikko-desk")
OUTSIDE = "+358451234567"


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def set_forward(site: Site, kind: str, choice: str, number: str = "") -> None:
    b = site.browser
    await asyncio.to_thread(b.open, "/services/forwards")
    await asyncio.to_thread(b.click, f"#fwd-{kind}-{choice}")
    await asyncio.to_thread(b.type_into, f"#fwd-{kind}-number-input", number)
    await asyncio.to_thread(b.click, f"#fwd-{kind}-save")


async def test_a_forward_set_on_the_page_rings_the_target(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await asyncio.to_thread(b.open, "/services")
    await asyncio.to_thread(b.screenshot, "services")

    await set_forward(site, "immediate", "number", "102")  # Mikko's extension
    await asyncio.to_thread(b.wait_for, "p.notice")
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == MIKKO.number
    trail = rig.state.audit(ANNA.tenant, ANNA.user, limit=1)[0]
    assert (trail.field, trail.new, trail.source) == ("forward.immediate", MIKKO.number, "web")
    assert b.find("#fwd-immediate-number").is_selected()
    assert b.find("#fwd-immediate-number-input").get_attribute("value") == MIKKO.number
    await asyncio.to_thread(b.screenshot, "forwards")

    # A caller to Anna: Mikko's devices ring, with Anna in the Diversion; Anna's does not.
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    legs = {device: await rig.phone.incoming(device, 10) for device in MIKKO_DEVICES}
    assert await legs[MIKKO_DEVICES[0]].get_var("REDIRECTING(from-num)") == ANNA.number
    await legs[MIKKO_DEVICES[1]].answer()
    await call.wait_state("Up", 5)
    await call.hangup()
    await legs[MIKKO_DEVICES[1]].wait_hangup(5)
    await rig.no_ring(since, ANNA.device)
    wait_pbx_idle(rig.pbx)

    # Removed on the page: the next caller rings Anna again.
    await set_forward(site, "immediate", "none")
    await asyncio.to_thread(b.wait_for, "p.notice")
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == "none"
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await call.hangup()
    await leg.wait_hangup(10)
    await rig.no_ring(since, *MIKKO_DEVICES)


async def test_a_refused_forward_says_the_codes_reason(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await set_forward(site, "immediate", "number", "0600123456")  # premium rate
    await asyncio.to_thread(b.wait_for, ".errors")
    assert "maksullinen palvelunumero" in b.find("#forward-immediate").find_element(
        "xpath", "preceding-sibling::div[@class='errors']").text
    await asyncio.to_thread(b.screenshot, "forwards-phone", phone=True)
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == "none"
