"""The outbound policy and fraud throttle through real SIP calls: the users' devices on the test
phone dial out, and the test phone's carrier shows what reached the network.

That a call never reached the carrier is read from the PBX's own record of its Dial()s once the
call is over (`ChannelLog`), never from a pause.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from support import Person, Rig

from base.outbound import OutboundPolicy
from callstate import VoicemailSettings
from callstate.rows import store_voicemail
from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO = Person("acme", "mikko.korhonen", "+358401110002", "acme-mikko-soft", "")
SARA = Person("acme", "sara.lindqvist", "+358401110003", "acme-sara-soft", "")
VOICEMAIL = "+358201243100"
OUTSIDE = "+358451234567"  # an outside caller
NATIONAL = ("0505550101", "+358505550101")  # as dialled, and as the carrier is asked for it
NATIONAL_2 = ("0505550102", "+358505550102")
CALL_REJECTED, NO_CIRCUIT = 21, 34  # Q.850: SIP 403, SIP 503
CARRIER = "carrier"  # the carrier's endpoint in the PBX's Dial() record


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def refused(rig: Rig, person: Person, dialled: str, prompt: str, cause: int) -> None:
    """`person`'s device dials `dialled`: the PBX says `prompt` without answering, ends the call with
    `cause`, and never sends anything to the carrier."""
    since = rig.observer.channels.mark()
    heard = rig.observer.mark()
    call = await rig.phone.call(dialled, device=person.device)
    await rig.observer.wait_prompt(person.number, prompt, since=heard, timeout=20)
    assert await call.wait_hangup(20) == cause, call
    assert "Up" not in call.states_seen  # early media only: the refusal is never answered
    await rig.observer.channels.wait_calls_over(since)
    assert CARRIER not in rig.observer.channels.dialled(since)


async def reaches_carrier(rig: Rig, person: Person, dialled: tuple[str, str]) -> tuple[Call, Call]:
    """`person`'s device dials a number that leaves through the carrier; both legs, answered."""
    call = await rig.phone.call(dialled[0], device=person.device)
    out = await rig.phone.incoming(dialled[1], 10)
    assert out.caller.get("number") == person.number
    await out.answer()
    await call.wait_state("Up", 5)
    return call, out


async def hang_up(call: Call, out: Call) -> None:
    await call.hangup()
    await out.wait_hangup(10)


async def test_a_device_dialling_a_premium_number_is_refused_before_the_carrier(rig: Rig) -> None:
    await refused(rig, ANNA, "0600123456", "out-refused-barred", CALL_REJECTED)  # FI premium rate
    await refused(rig, ANNA, "00882123456789", "out-refused-barred", CALL_REJECTED)  # international network
    await refused(rig, SARA, "0046900123456", "out-refused-barred", CALL_REJECTED)  # SE premium, not allowed


async def test_a_device_dialling_a_national_number_reaches_the_carrier(rig: Rig) -> None:
    call, out = await reaches_carrier(rig, ANNA, NATIONAL)
    heard = call.audio_seconds
    await out.play_tone(1.0, 800)
    assert await call.heard_audio(heard + 0.8, timeout=5)
    await hang_up(call, out)


async def test_without_the_outbound_check_nothing_is_dialled_out(rig: Rig) -> None:
    # FastAGI (and the app) down: toll fraud fails closed; the platform's own numbers still work.
    await rig.stop_app()
    since = rig.observer.channels.mark()
    call = await rig.phone.call(NATIONAL[0], device=ANNA.device)
    assert await call.wait_hangup(20) == CALL_REJECTED
    await rig.observer.channels.wait_calls_over(since)
    assert CARRIER not in rig.observer.channels.dialled(since)
    colleague = await rig.phone.call("102", device=ANNA.device)
    leg = await rig.phone.incoming(MIKKO.device, 10)
    await colleague.hangup()
    await leg.wait_hangup(10)


async def test_press_1_to_a_stored_number_the_policy_now_refuses_is_not_dialled(rig: Rig) -> None:
    # Stored before the rules refused it (written past the service, as an older release could).
    barred = VoicemailSettings(press1_number="+358700123456")
    rig.state.store.write(lambda tx: store_voicemail(tx, ANNA.tenant, ANNA.user, barred, rig.state.store.now()))
    since = rig.observer.channels.mark()
    heard = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await rig.observer.wait(OUTSIDE, "play", since=heard, timeout=30)  # the greeting
    await call.send_dtmf("1", wait=False)
    await rig.observer.wait(OUTSIDE, "record-start", since=heard, timeout=20)  # a message instead
    assert "vm-press-1-customer-service" not in rig.observer.prompts(OUTSIDE, heard)
    await call.hangup()
    await rig.observer.channels.wait_calls_over(since)
    assert CARRIER not in rig.observer.channels.dialled(since)


async def limit_acme(rig: Rig, max_calls: int, max_calls_per_minute: int) -> None:
    """The service again, with small limits for acme (the limits live in the service's
    configuration: the dialplan does not change)."""
    acme = rig.config.tenants[0]
    assert acme.id == "acme"
    limited = replace(acme, outbound=OutboundPolicy(allow=("+358",), max_calls=max_calls,
                                                    max_calls_per_minute=max_calls_per_minute))
    await rig.stop_app()
    rig.config = replace(rig.config, tenants=(limited, *rig.config.tenants[1:]))
    await rig.start_app()


async def test_the_throttle_refuses_calls_past_the_tenants_limits(rig: Rig) -> None:
    await limit_acme(rig, max_calls=1, max_calls_per_minute=2)
    first, out = await reaches_carrier(rig, ANNA, NATIONAL)  # 1 out now, 1 this minute
    await refused(rig, MIKKO, NATIONAL_2[0], "out-refused-limit", NO_CIRCUIT)  # a 2nd at once
    await hang_up(first, out)
    second, out = await reaches_carrier(rig, MIKKO, NATIONAL_2)  # 2 this minute
    await hang_up(second, out)
    await refused(rig, ANNA, NATIONAL[0], "out-refused-limit", NO_CIRCUIT)  # a 3rd this minute


async def test_a_forward_out_is_the_forwarding_tenants_call_and_counts_towards_its_limit(rig: Rig) -> None:
    await limit_acme(rig, max_calls=1, max_calls_per_minute=10)
    rig.state.set_forward(ANNA.tenant, ANNA.user, "immediate", NATIONAL_2[0], actor="e2e", source="test")
    first, out = await reaches_carrier(rig, MIKKO, NATIONAL)  # acme's one call out
    since = rig.observer.channels.mark()
    heard = rig.observer.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)  # forwarded out: a second
    await rig.observer.wait_prompt(OUTSIDE, "out-refused-limit", since=heard, timeout=20)
    assert await call.wait_hangup(20) == NO_CIRCUIT
    await rig.observer.channels.wait_calls_over(since)
    assert CARRIER not in rig.observer.channels.dialled(since)
    await hang_up(first, out)
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)  # within the limit again
    forwarded = await rig.phone.incoming(NATIONAL_2[1], 10)
    assert await forwarded.get_var("REDIRECTING(from-num)") == ANNA.number
    await call.hangup()
    await forwarded.wait_hangup(10)
