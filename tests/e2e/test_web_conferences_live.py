"""Conferences in a real browser, then real calls: the PIN changed on the page opens the room (the
old one no longer does), the caller appears on the page live, is muted (Asterisk says so) and
removed (their call ends)."""

from __future__ import annotations

import asyncio

import pytest
from support import Rig
from webrig import Site

from ari_app.conference.services import bridge_name
from testphone.driver import Call
from web.conference_service import participant_id

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

CONFERENCE = "+358201243300"
OUTSIDE = "+358451234567"
MIKKO, MIKKO_DEVICE = "+358401110002", "acme-mikko-soft"  # a colleague, from his own device
ROOM = "358401110001"  # Anna's number without the '+'
OLD_PIN = "580372"
NEW_PIN = "735194"


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def press_after(rig: Rig, call: Call, prompt: str, keys: str, since: int, caller: str = OUTSIDE) -> int:
    """Once `prompt` starts playing to `caller`, press `keys`; the observer mark after it."""
    await rig.observer.wait_prompt(caller, prompt, since=since, timeout=30)
    await asyncio.sleep(0.3)
    mark = rig.observer.mark()
    await call.send_dtmf(keys)
    return mark


def room_on_pbx(rig: Rig, bridge: str) -> dict[str, str]:
    """What Asterisk itself says of the room (its CLI, not the page's AMI reads): channel → flags
    (`m`: muted)."""
    text = rig.pbx.cli(f"confbridge list {bridge}")
    room: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if words and "/" in words[0] and not words[0].startswith("="):
            room[words[0]] = words[1] if len(words) > 1 and words[1] != "vipbx-caller" else ""
    return room


async def test_the_new_pin_opens_the_room_and_the_page_mutes_and_removes(site: Site) -> None:
    rig, b = site.rig, site.browser
    anna = site.who("acme", "anna.virtanen")
    bridge = bridge_name(anna)
    rooms = rig.state.conferences
    rooms.set_pin("acme", "anna.virtanen", OLD_PIN, actor="e2e", source="test")
    try:
        # The PIN changed in the browser.
        await site.log_in(anna)
        await asyncio.to_thread(b.open, "/conferences")
        assert b.find("#conference-number").text == CONFERENCE
        assert b.find("#conference-room").text == ROOM
        assert b.find("#conference-pin").text == OLD_PIN
        await asyncio.to_thread(b.type_into, "#conference-new-pin", NEW_PIN)
        await asyncio.to_thread(b.click, "#conference-pin-submit")
        await asyncio.to_thread(b.wait_text, "#conference-pin", NEW_PIN)
        assert rooms.room("acme", "anna.virtanen").pin == NEW_PIN

        # A real call: the old PIN is refused, the new one enters the room.
        since = rig.observer.mark()
        call = await rig.phone.call(CONFERENCE, caller_number=OUTSIDE)
        await call.wait_state("Up", 10)
        at = await press_after(rig, call, "conf-enter-room", ROOM + "#", since)
        at = await press_after(rig, call, "conf-enter-pin", OLD_PIN + "#", at)
        await rig.observer.wait_prompt(OUTSIDE, "conf-refused", since=at)
        at = await press_after(rig, call, "conf-enter-room", ROOM + "#", at)
        at = await press_after(rig, call, "conf-enter-pin", NEW_PIN + "#", at)
        await rig.observer.wait_prompt(OUTSIDE, "conf-joining", since=at)
        await rig.observer.wait(OUTSIDE, "app", f"ConfBridge({bridge},vipbx-room,vipbx-caller)", since=at)
        room = await in_room(rig, bridge, 1)
        [(channel, flags)] = room.items()
        assert "m" not in flags, room
        pid = participant_id(bridge, channel)
        audit = [(e.event, e.actor) for e in rig.state.audit("acme", "anna.virtanen", limit=2)]
        assert audit == [("pin_ok", OUTSIDE), ("pin_failed", OUTSIDE)]

        # The page lists the caller live (the refresh script, no reload).
        row = f"#participant-{pid}"
        await asyncio.to_thread(b.wait_for, row, 15)
        assert OUTSIDE in b.find(row).text

        # A colleague joins from his device (the number is public to devices too): named on the page.
        at = rig.observer.mark()
        colleague = await rig.phone.call(CONFERENCE, device=MIKKO_DEVICE)
        await colleague.wait_state("Up", 10)
        at = await press_after(rig, colleague, "conf-enter-room", ROOM + "#", at, MIKKO)
        at = await press_after(rig, colleague, "conf-enter-pin", NEW_PIN + "#", at, MIKKO)
        await rig.observer.wait(MIKKO, "app", f"ConfBridge({bridge},vipbx-room,vipbx-caller)", since=at)
        [mikko_channel] = set(await in_room(rig, bridge, 2)) - {channel}
        mikko_row = f"#participant-{participant_id(bridge, mikko_channel)}"
        await asyncio.to_thread(b.wait_for, mikko_row, 15)
        assert "Mikko Korhonen" in b.find(mikko_row).text
        await asyncio.to_thread(b.screenshot, "conferences")
        await asyncio.to_thread(b.screenshot, "conferences-phone", phone=True)

        # Mute: Asterisk holds the caller muted, and only that caller.
        await asyncio.to_thread(b.click, f"{row} button.mute")
        await asyncio.to_thread(b.wait_for, f'{row}[data-muted="yes"]')
        flags = await in_room(rig, bridge, 2)
        assert "m" in flags[channel] and "m" not in flags[mikko_channel], flags

        # Remove: the caller's call ends; the colleague stays.
        await asyncio.to_thread(b.click, f"{row} button.remove")
        await call.wait_hangup(15)
        assert set(await in_room(rig, bridge, 1)) == {mikko_channel}
        await asyncio.to_thread(b.wait_for, mikko_row)
        assert not b.find_all(row)
        await colleague.hangup()
        assert await in_room(rig, bridge, 0) == {}
        await asyncio.to_thread(b.open, "/conferences")
        assert b.find("#conference-empty")
    finally:
        rig.state.store.db.write(lambda tx: tx.run("DELETE FROM conference_rooms"))


async def in_room(rig: Rig, bridge: str, count: int) -> dict[str, str]:
    for _ in range(50):
        room = await asyncio.to_thread(room_on_pbx, rig, bridge)
        if len(room) == count:
            return room
        await asyncio.sleep(0.2)
    raise AssertionError(f"{count} in {bridge} wanted; Asterisk says:\n" + rig.pbx.cli(f"confbridge list {bridge}"))
