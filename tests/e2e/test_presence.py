"""Presence through real SIP calls into the product PBX, with the real vipbx service running: the
activity-change number, the Asterisk presence state that subscribed phones see, the activity's
routing rule, the activity sentence in the greeting, and end times (also across a restart).
"""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from support import Person, Rig, ami_settings, eventually

from ari_app.presence.asterisk import presence_id
from base.ami import ami_session
from prompts import speech
from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
ACTIVITY = "+358201243200"
OUTSIDE = "+358451234567"
HELSINKI = ZoneInfo("Europe/Helsinki")


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def asterisk_presence(rig: Rig, person: Person, part: str = "value") -> str:
    """What Asterisk holds for the person's CustomPresence provider (what subscribed phones get),
    read over AMI (ARI's global-variable read does not evaluate this function)."""
    ident = presence_id(person.tenant, person.user)
    async with ami_session(ami_settings(rig.pbx)) as session:
        reply = await session.action("Getvar", Variable=f"PRESENCE_STATE(CustomPresence:{ident},{part})")
    return str(reply.get("Value", ""))


async def press_after(rig: Rig, call: Call, caller: str, prompt: str, keys: str, since: int) -> int:
    """Once `prompt` starts playing to `caller`, press `keys`; the observer mark after it."""
    await rig.observer.wait_prompt(caller, prompt, since=since, timeout=30)
    await asyncio.sleep(0.3)
    mark = rig.observer.mark()
    await call.send_dtmf(keys)
    return mark


async def test_activity_number_sets_vacation_with_an_end_date(rig: Rig) -> None:
    since = rig.observer.mark()
    call = await rig.phone.call(ACTIVITY, device=ANNA.device)
    await call.wait_state("Up", 10)
    # Known by her own device: no PIN; she hears her current activity, then the menu.
    at = await press_after(rig, call, ANNA.number, "act-choose", "6", since)
    heard = rig.observer.prompts(ANNA.number, since)
    assert heard[:2] == ["act-current-is", "act-available"]
    assert "vm-enter-pin" not in heard
    at = await press_after(rig, call, ANNA.number, "act-enter-until", "3#", at)
    await rig.observer.wait_prompt(ANNA.number, "act-changed", since=at)
    await call.wait_hangup(30)
    confirmation = rig.observer.prompts(ANNA.number, at)
    assert confirmation[:3] == ["act-changed", "act-current-is", "act-vacation"]
    assert confirmation[-1] == "vm-goodbye"

    # Stored: vacation until midnight three days ahead (Helsinki), audited as the IVR's doing.
    presence = rig.state.presence(ANNA.tenant, ANNA.user)
    today = datetime.now(HELSINKI).date()
    assert presence.activity == "vacation"
    assert presence.until == datetime.combine(today + timedelta(days=3), time(0, 0), HELSINKI)
    entry = rig.state.audit(ANNA.tenant, ANNA.user, limit=5)
    assert {(e.field, e.new, e.source) for e in entry} >= {("presence.activity", "vacation", "ivr")}
    # Asterisk's presence state: what a phone subscribed to Anna is told.
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "xa")

    # A caller to Anna follows Vacation's rule (voicemail) and, with the setting on, hears it.
    rig.state.update_voicemail_settings(ANNA.tenant, ANNA.user, actor="e2e", source="test", play_activity=True)
    since, calls = rig.observer.mark(), rig.observer.channels.mark()
    caller = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await caller.wait_state("Up", 10)
    # "Tavoittelemasi henkilö on lomalla sunnuntaihin asti", after the (default) greeting.
    sentence = speech.activity_sentence("fi", "vacation", presence.until.astimezone(HELSINKI),
                                        datetime.now(HELSINKI))
    await rig.observer.wait_prompt(OUTSIDE, sentence[-1], since=since, timeout=30)
    greeting = rig.observer.prompts(OUTSIDE, since)
    assert greeting[0] == "vm-default-greeting-pre"
    spoken = greeting.index("act-person-is")
    assert greeting[spoken:spoken + len(sentence)] == sentence
    assert greeting.index("vm-default-greeting-post") < spoken
    await caller.hangup()
    await rig.no_ring(calls, ANNA.device)


async def eventually_async(read, want: str, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = ""
    while loop.time() < deadline:
        got = await read()
        if got == want:
            return True
        await asyncio.sleep(0.2)
    raise AssertionError(f"wanted {want!r}, Asterisk still says {got!r}")


async def test_presence_shows_the_note_and_the_end_time_passes_across_a_restart(rig: Rig) -> None:
    presence = rig.presence
    tenant, user = rig.config.find_user(ANNA.tenant, ANNA.user)  # type: ignore[misc]
    rig.state.set_presence(ANNA.tenant, ANNA.user, "meeting", note="Board, back at 3, room 2",
                           actor="e2e", source="test")
    until = datetime.now(HELSINKI) + timedelta(seconds=6)
    await presence.change(tenant, user, "meeting", until, actor="e2e", source="test")
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "dnd")
    assert await asterisk_presence(rig, ANNA, "message") == "Board, back at 3, room 2"
    encoded = await asterisk_presence(rig, ANNA, "message,e")  # stored encoded: no text can inject
    assert base64.b64decode(encoded).decode() == "Board, back at 3, room 2"

    # Meeting's rule: straight to voicemail.
    since, calls = rig.observer.mark(), rig.observer.channels.mark()
    caller = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await caller.wait_state("Up", 10)
    await rig.observer.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    await caller.hangup()
    await rig.no_ring(calls, ANNA.device)

    # The app stops; the end time passes while it is down; it starts again.
    await rig.stop_app()
    await asyncio.sleep(max(0.0, (until - datetime.now(HELSINKI)).total_seconds()) + 1)
    assert await asterisk_presence(rig, ANNA) == "dnd"  # nobody has told Asterisk yet
    await rig.start_app()
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "available")
    assert rig.state.presence(ANNA.tenant, ANNA.user).activity == "available"

    def ended_by_the_timer() -> bool:
        timer = [e for e in rig.state.audit(ANNA.tenant, ANNA.user, limit=5) if e.source == "timer"]
        return ("presence.activity", "meeting", "available") in {(e.field, e.old, e.new) for e in timer}

    await eventually(ended_by_the_timer, 10, "the timer's audit row")

    # And calls ring her again.
    caller = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await rig.phone.incoming(ANNA.device, 10)
    await caller.hangup()


async def test_end_time_while_running_returns_to_available(rig: Rig) -> None:
    presence = rig.presence
    tenant, user = rig.config.find_user(ANNA.tenant, ANNA.user)  # type: ignore[misc]
    await presence.change(tenant, user, "lunch", datetime.now(HELSINKI) + timedelta(seconds=3),
                          actor="e2e", source="test")
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "away")
    # The running service's timer ends it (and tells Asterisk) without any call.
    assert await eventually_async(lambda: asterisk_presence(rig, ANNA), "available", timeout=15)
    assert rig.state.presence(ANNA.tenant, ANNA.user).activity == "available"


async def test_a_foreign_number_without_the_pin_changes_nothing(rig: Rig) -> None:
    before = rig.state.presence(ANNA.tenant, ANNA.user)
    since = rig.observer.mark()
    call = await rig.phone.call(ACTIVITY, caller_number=OUTSIDE)
    await call.wait_state("Up", 10)
    at = await press_after(rig, call, OUTSIDE, "act-enter-number", "0401110001#", since)
    at = await press_after(rig, call, OUTSIDE, "vm-enter-pin", "1111#", at)
    await rig.observer.wait_prompt(OUTSIDE, "vm-pin-wrong", since=at)
    await call.hangup()
    await call.wait_hangup(10)
    assert "act-choose" not in rig.observer.prompts(OUTSIDE, since)
    assert rig.state.presence(ANNA.tenant, ANNA.user) == before
    trail = rig.state.audit(ANNA.tenant, ANNA.user, limit=3)
    assert trail[0].event == "pin_failed" and trail[0].actor == OUTSIDE
    assert not any(e.field.startswith("presence.") and e.at > trail[0].at for e in trail)
