"""Call routing and feature codes through real SIP calls into the product PBX, with the real
vipbx service (ARI app + FastAGI router + call-state database) running.

Codes are dialled from the users' devices on the test phone; what the PBX says is read from the
PBX's own ARI (every prompt it plays); where a call rings is seen on the test phone's devices and
carrier; the Diversion a forwarded call carries is read from the channel the test phone received.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support import Person, Rig, eventually, wait_pbx_idle

from callstate.rows import store_routing
from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO = Person("acme", "mikko.korhonen", "+358401110002", "acme-mikko-soft", "")
MIKKO_DEVICES = ("acme-mikko-soft", "acme-mikko-desk")
SARA = Person("acme", "sara.lindqvist", "+358401110003", "acme-sara-soft", "")
WORKSHOP = Person("acme", "workshop", "+358401110009", "acme-workshop", "")  # "No voicemail"
ERIK = Person("borealis", "erik.nyberg", "+358501220003", "", "")  # no device at all
JAMES = Person("borealis", "james.taylor", "+358501220001", "borealis-james-soft", "")
OUTSIDE = "+358451234567"
OUTSIDE_2 = "+358451234568"
OUTSIDE_MOBILE = "+358505550101"  # a forward target reached through the carrier
USER_BUSY, NO_ANSWER = 17, 19


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


def digits_of(number: str) -> list[str]:
    return [f"digit-{d}" for d in number.lstrip("+")]


async def diversion(call: Call) -> str:
    """The number in the Diversion header of a call the PBX sent to the test phone."""
    return await call.get_var("REDIRECTING(from-num)")


# --- 987: immediate forward -------------------------------------------------------------------------

async def test_987_forwards_to_a_colleague_with_diversion_and_987_alone_removes_it(rig: Rig) -> None:
    heard = await rig.dial_code(ANNA, "9870401110002")  # Mikko, in national form
    assert heard == ["fc-forward-set", "plus", *digits_of(MIKKO.number)]
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == MIKKO.number
    trail = rig.state.audit(ANNA.tenant, ANNA.user, limit=1)[0]
    assert (trail.field, trail.old, trail.new, trail.source) == ("forward.immediate", "none", MIKKO.number, "code")
    assert trail.actor.startswith("PJSIP/acme-anna-soft")

    # A caller to Anna: Mikko's devices ring, with Anna in the Diversion; Anna's does not.
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    legs = {device: await rig.phone.incoming(device, 10) for device in MIKKO_DEVICES}
    assert await diversion(legs[MIKKO_DEVICES[0]]) == ANNA.number
    assert await legs[MIKKO_DEVICES[0]].get_var("REDIRECTING(reason)") == "cfu"  # Diversion reason=unconditional
    assert legs[MIKKO_DEVICES[0]].caller.get("number") == OUTSIDE
    await legs[MIKKO_DEVICES[1]].answer()
    await call.wait_state("Up", 5)
    await call.hangup()
    await legs[MIKKO_DEVICES[1]].wait_hangup(5)
    await rig.no_ring(since, ANNA.device)
    wait_pbx_idle(rig.pbx)

    assert await rig.dial_code(ANNA, "987") == ["fc-forward-removed"]
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == "none"
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    assert await diversion(leg) == ""
    await call.hangup()
    await rig.no_ring(since, *MIKKO_DEVICES)


async def test_987_to_an_outside_number_leaves_through_the_carrier_naming_the_user(rig: Rig) -> None:
    heard = await rig.dial_code(ANNA, "9870505550101")
    assert heard == ["fc-forward-set", "plus", *digits_of(OUTSIDE_MOBILE)]
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    out = await rig.phone.incoming(OUTSIDE_MOBILE, 10)  # the carrier is asked for the target
    assert await diversion(out) == ANNA.number
    assert out.caller.get("number") == OUTSIDE  # the original caller is shown to the target
    await out.answer()
    await call.wait_state("Up", 5)
    heard = call.audio_seconds
    await out.play_tone(1.0, 800)
    assert await call.heard_audio(heard + 0.8, timeout=5)  # connected both ways out and back in
    await call.hangup()
    await rig.no_ring(since, ANNA.device)


@pytest.mark.parametrize(("dialled", "reason"), [
    ("0201243100", "voicemail-number"),
    ("0201243200", "activity-number"),
    ("0401110001", "own-number"),
    ("0600123456", "number-barred"),  # premium rate
    ("00468123456", "number-barred"),  # international, outside the tenant's allow-list
])
async def test_987_refusals_are_spoken_and_change_nothing(rig: Rig, dialled: str, reason: str) -> None:
    audit_before = rig.state.audit(ANNA.tenant, ANNA.user, limit=10)
    assert await rig.dial_code(ANNA, "987" + dialled) == [f"fc-refused-{reason}"]
    assert rig.state.routing(ANNA.tenant, ANNA.user).immediate == "none"
    assert rig.state.audit(ANNA.tenant, ANNA.user, limit=10) == audit_before
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await rig.phone.incoming(ANNA.device, 10)  # still rings Anna
    await call.hangup()


async def test_a_forward_loop_ends_at_the_user_who_would_close_it(rig: Rig) -> None:
    # Anna → Mikko, and Mikko → Anna written directly (as two nodes racing could): the set-time
    # check refuses it through the service.
    assert await rig.dial_code(ANNA, "987102") == ["fc-forward-set", "plus", *digits_of(MIKKO.number)]
    assert await rig.dial_code(MIKKO, "987101") == ["fc-refused-loop"]
    rig.state.store.write(lambda tx: store_routing(tx, MIKKO.tenant, MIKKO.user, {"fwd_immediate": ANNA.number},
                                                   rig.state.store.now()))
    since = rig.observer.channels.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    legs = {device: await rig.phone.incoming(device, 10) for device in MIKKO_DEVICES}
    assert await diversion(legs[MIKKO_DEVICES[0]]) == ANNA.number
    await legs[MIKKO_DEVICES[0]].answer()
    await call.wait_state("Up", 5)
    await call.hangup()
    await rig.no_ring(since, ANNA.device)


# --- *43#: call waiting -----------------------------------------------------------------------------

async def test_call_waiting_codes_and_their_effect(rig: Rig) -> None:
    assert await rig.dial_code(ANNA, "*43#") == ["cw-on"]
    assert await rig.dial_code(ANNA, "*#43#") == ["cw-is-on"]

    # On: Anna in a call still gets a second call ringing.
    first = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await first.wait_state("Up", 5)
    second = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_2)
    waiting = await rig.phone.incoming(ANNA.device, 10)
    assert waiting.caller.get("number") == OUTSIDE_2
    await second.hangup()
    await first.hangup()
    await leg.wait_hangup(5)
    wait_pbx_idle(rig.pbx)

    assert await rig.dial_code(ANNA, "#43#") == ["cw-off"]
    assert await rig.dial_code(ANNA, "*#43#") == ["cw-is-off"]
    assert rig.state.routing(ANNA.tenant, ANNA.user).call_waiting is False

    # Off: the second caller gets Anna's busy treatment at once — her voicemail by default ...
    calls = rig.observer.channels.mark()
    first = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await first.wait_state("Up", 5)
    await rig.observer.channels.wait_dialled(ANNA.device, calls)
    # "Did not ring" while she is in a call: no second call to her device (her first call's
    # channels were made before the mark, and stay).
    since, calls = rig.observer.mark(), rig.observer.channels.mark()
    second = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_2)
    await second.wait_state("Up", 10)
    await rig.observer.wait_prompt(OUTSIDE_2, "vm-default-greeting-pre", since=since)
    await second.hangup()
    await rig.no_ring(calls, ANNA.device)

    # ... and a busy signal once her busy forward is removed.
    rig.state.set_forward(ANNA.tenant, ANNA.user, "busy", "none", actor="e2e", source="test")
    calls = rig.observer.channels.mark()
    third = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_2)
    assert await third.wait_hangup(10) == USER_BUSY
    assert "Up" not in third.states_seen
    await rig.no_ring(calls, ANNA.device)
    assert not first.ended  # her first call stayed up throughout
    await first.hangup()


# --- busy / no answer -------------------------------------------------------------------------------

async def test_no_answer_in_20_seconds_lands_in_voicemail(rig: Rig) -> None:
    assert rig.state.routing(ANNA.tenant, ANNA.user).no_answer_seconds == 20
    since = rig.observer.mark()
    began = time.monotonic()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await call.wait_state("Up", 30)
    assert 19.5 <= time.monotonic() - began <= 24
    assert "Up" not in leg.states_seen
    await rig.observer.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    await call.hangup()


async def test_no_answer_forward_to_a_colleague_after_its_own_delay(rig: Rig) -> None:
    rig.state.set_forward(ANNA.tenant, ANNA.user, "no_answer", "103", actor="e2e", source="test",
                          no_answer_seconds=5)
    began = time.monotonic()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await rig.phone.incoming(ANNA.device, 10)
    sara = await rig.phone.incoming(SARA.device, 15)
    assert 4.5 <= time.monotonic() - began <= 9
    assert await diversion(sara) == ANNA.number
    assert await sara.get_var("REDIRECTING(reason)") == "cfnr"  # reason=no-answer
    await sara.answer()
    await call.wait_state("Up", 5)
    await call.hangup()


async def test_no_voicemail_user_unanswered_or_busy_gets_no_mailbox(rig: Rig) -> None:
    rig.state.set_forward(WORKSHOP.tenant, WORKSHOP.user, "no_answer", "none", actor="e2e", source="test",
                          no_answer_seconds=5)
    call = await rig.phone.call(WORKSHOP.number, caller_number=OUTSIDE)
    await rig.phone.incoming(WORKSHOP.device, 10)
    assert await call.wait_hangup(15) == NO_ANSWER
    assert "Up" not in call.states_seen and call.audio_seconds == 0

    call = await rig.phone.call(WORKSHOP.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(WORKSHOP.device, 10)
    await leg.hangup("busy")  # rejected on the phone
    assert await call.wait_hangup(10) == USER_BUSY
    assert "Up" not in call.states_seen


async def test_unreachable_goes_to_voicemail_or_to_the_unreachable_forward(rig: Rig) -> None:
    # Erik (Borealis) has no device: his calls are "unreachable" at once.
    since = rig.observer.mark()
    call = await rig.phone.call(ERIK.number, caller_number=OUTSIDE)
    await call.wait_state("Up", 10)
    await rig.observer.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    assert rig.observer.of(OUTSIDE, since, "play")[0].lang == "sv"  # his mailbox, his language
    await call.hangup()

    rig.state.set_forward(ERIK.tenant, ERIK.user, "unreachable", "101", actor="e2e", source="test")
    call = await rig.phone.call(ERIK.number, caller_number=OUTSIDE)
    james = await rig.phone.incoming(JAMES.device, 10)  # his colleague's extension 101
    assert await diversion(james) == ERIK.number
    assert await james.get_var("REDIRECTING(reason)") == "unavailable"
    await james.answer()
    await call.wait_state("Up", 5)
    await call.hangup()


# --- *1: in-call blind transfer ---------------------------------------------------------------------

async def _in_call_with_anna(rig: Rig) -> tuple[Call, Call]:
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await call.wait_state("Up", 5)
    await asyncio.sleep(0.5)
    return call, leg


async def test_star_1_transfers_the_caller_to_a_colleague(rig: Rig) -> None:
    call, leg = await _in_call_with_anna(rig)
    await leg.send_dtmf("*1")
    await asyncio.sleep(2.5)  # Asterisk says "transfer" before it listens for the number
    await leg.send_dtmf("103#")
    sara = await rig.phone.incoming(SARA.device, 15)
    assert sara.caller.get("number") == OUTSIDE
    await leg.wait_hangup(10)  # Anna is out of the call
    await sara.answer()
    await sara.wait_state("Up", 5)
    assert not call.ended
    await call.hangup()
    await sara.wait_hangup(5)


async def test_star_1_to_a_barred_number_is_refused(rig: Rig) -> None:
    call, leg = await _in_call_with_anna(rig)
    since = rig.observer.mark()
    await leg.send_dtmf("*1")
    await asyncio.sleep(2.5)
    await leg.send_dtmf("0600123456#")
    await rig.observer.wait_prompt(OUTSIDE, "xfer-refused", since=since, timeout=15)
    assert await call.wait_hangup(15) is not None
    await eventually(lambda: leg.ended, 10, "Anna's leg ended")
    # Every channel of the call is gone from the PBX: no transfer leg can start any more.
    await asyncio.to_thread(wait_pbx_idle, rig.pbx)
    assert rig.phone._incoming["+358600123456"].empty()
