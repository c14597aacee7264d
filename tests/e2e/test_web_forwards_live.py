"""Call waiting and the busy and no-answer forwards, set in a real browser on /services/forwards,
shown by real calls: with call waiting off a second caller gets the user's busy treatment instead
of ringing her again, and a no-answer forward rings its target once the user's own device has
rung unanswered for the delay set on the page."""

from __future__ import annotations

import asyncio

import pytest
from support import Person, Rig, wait_pbx_idle
from test_web_services_live import set_forward
from webrig import Site

from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
SARA = Person("acme", "sara.lindqvist", "+358401110003", "acme-sara-soft", "")
OUTSIDE = "+358451234567"
OUTSIDE_2 = "+358451234568"


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def saved(site: Site) -> None:
    await asyncio.to_thread(site.browser.wait_for, "p.notice")
    assert site.browser.path.startswith("/services/forwards?done=")


async def anna_in_a_call(rig: Rig) -> tuple[Call, Call]:
    """A caller talking with Anna: (the caller's call, Anna's answered leg), once the PBX's own
    log has her Dial(), so a mark taken next counts only later calls."""
    since = rig.observer.channels.mark()
    first = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await first.wait_state("Up", 5)
    await rig.observer.channels.wait_dialled(ANNA.device, since)
    return first, leg


async def second_caller(rig: Rig, device: str) -> tuple[Call, Call]:
    """While Anna talks, a second caller to her number: (their call, the leg that rang `device`)."""
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_2)
    rang = await rig.phone.incoming(device, 10)
    assert rang.caller.get("number") == OUTSIDE_2
    return call, rang


async def test_call_waiting_off_on_the_page_sends_a_second_caller_to_the_busy_forward(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await set_forward(site, "busy", "number", "103")  # Sara's extension
    await saved(site)
    assert rig.state.routing(ANNA.tenant, ANNA.user).busy == SARA.number
    assert b.find("#call_waiting").is_selected()  # on by default

    # Call waiting on: a second caller rings Anna again, although her busy forward is set.
    first, leg = await anna_in_a_call(rig)
    calls = rig.observer.channels.mark()
    second, _ = await second_caller(rig, ANNA.device)
    await second.hangup()
    await first.hangup()
    await leg.wait_hangup(5)
    await rig.no_ring(calls, SARA.device)
    wait_pbx_idle(rig.pbx)

    # Off on the page.
    await asyncio.to_thread(b.open, "/services/forwards")
    await asyncio.to_thread(b.click, "#call_waiting")
    await asyncio.to_thread(b.click, "#call-waiting-save")
    await saved(site)
    assert not b.find("#call_waiting").is_selected()
    assert rig.state.routing(ANNA.tenant, ANNA.user).call_waiting is False
    trail = rig.state.audit(ANNA.tenant, ANNA.user, limit=1)[0]
    assert (trail.field, trail.old, trail.new, trail.source) == ("call_waiting", "on", "off", "web")

    # Now a second caller while she talks is her busy case: Sara rings, Anna's device does not.
    first, leg = await anna_in_a_call(rig)
    calls = rig.observer.channels.mark()
    second, sara = await second_caller(rig, SARA.device)
    assert await sara.get_var("REDIRECTING(from-num)") == ANNA.number
    assert await sara.get_var("REDIRECTING(reason)") == "cfb"  # Diversion reason=user-busy
    await sara.answer()
    await second.wait_state("Up", 5)
    await second.hangup()
    await sara.wait_hangup(5)
    assert not first.ended and "Up" in leg.states_seen  # her own call went on throughout
    await first.hangup()
    await leg.wait_hangup(5)
    await rig.no_ring(calls, ANNA.device)


async def test_a_no_answer_forward_set_on_the_page_rings_the_target_after_its_delay(site: Site) -> None:
    rig, b = site.rig, site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await asyncio.to_thread(b.open, "/services/forwards")
    await asyncio.to_thread(b.click, "#fwd-no_answer-number")
    await asyncio.to_thread(b.type_into, "#fwd-no_answer-number-input", "103")
    await asyncio.to_thread(b.type_into, "#fwd-delay", "5")
    await asyncio.to_thread(b.click, "#fwd-no_answer-save")
    await saved(site)
    routing = rig.state.routing(ANNA.tenant, ANNA.user)
    assert (routing.no_answer, routing.no_answer_seconds) == (SARA.number, 5)
    assert b.find("#fwd-delay").get_attribute("value") == "5"

    # Anna's device rings and nobody answers: it stops ringing after the 5 s set on the page
    # (the default 20 s would outlast the waits below), then Sara's rings with Anna's Diversion.
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    anna = await rig.phone.incoming(ANNA.device, 10)
    await anna.wait_hangup(12)
    assert "Up" not in anna.states_seen
    sara = await rig.phone.incoming(SARA.device, 5)
    assert await sara.get_var("REDIRECTING(from-num)") == ANNA.number
    assert await sara.get_var("REDIRECTING(reason)") == "cfnr"  # Diversion reason=no-answer
    assert sara.caller.get("number") == OUTSIDE
    await sara.answer()
    await call.wait_state("Up", 5)
    await call.hangup()
    await sara.wait_hangup(5)
