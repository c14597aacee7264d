"""The Mailbox page on the running service, in a real browser, against real calls: a caller
leaves a message through the PBX, the page lists and plays it, playing it makes it old, deleting
it in the browser empties the mailbox, and the phone's voicemail menu and the phone's
message-waiting light say the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PHONES_IP
from support import eventually
from test_voicemail import (
    ANNA,
    OUTSIDE,
    VOICEMAIL,
    SipSniffer,
    app_voicemail_new,
    leave_message,
)
from webrig import Site

from testphone.media import write_tone
from vmstore import Envelope, VoicemailStore, new_msg_id
from web.auth.sessions import SESSION_COOKIE

pytest_plugins = ("support", "webrig")
pytestmark = pytest.mark.asterisk

MIKKO_NUMBER = "+358401110002"  # a user of Anna's tenant: the page names him


def empty_mailbox(store: VoicemailStore) -> None:
    for folder in ("INBOX", "Old"):
        for message in store.list(ANNA.tenant, ANNA.box, folder):
            store.delete(message)


def audio_state(site: Site, css: str, play: bool = False) -> dict[str, Any]:
    """The <audio> element as the browser has it (muted play() when asked)."""
    state: dict[str, Any] = site.browser.driver.execute_script(
        "const a = document.querySelector(arguments[0]);"
        "if (arguments[1]) { a.muted = true; a.play(); }"
        "return {ready: a.readyState, duration: a.duration, error: a.error && a.error.code,"
        "        paused: a.paused};", css, play)
    return state


async def loaded(site: Site, css: str) -> dict[str, Any]:
    return await eventually(lambda: (s := audio_state(site, css))["ready"] >= 1 and s, 10, f"{css} loaded")


async def greeting_heard(site: Site) -> list[str]:
    """A caller diverted from Anna's number: the first prompt of her greeting; then hangs up."""
    observer = site.rig.observer
    since = observer.mark()
    call = await site.rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await call.wait_state("Up", 15)
    await eventually(lambda: observer.prompts(OUTSIDE, since), 15, "a greeting")
    said = observer.prompts(OUTSIDE, since)
    await call.hangup()
    await call.wait_hangup(10)
    return said


async def phone_menu_intro(site: Site) -> list[str]:
    """Call the voicemail number from Anna's own number: what the PBX says before its menu."""
    observer = site.rig.observer
    since = observer.mark()
    call = await site.rig.phone.call(VOICEMAIL, caller_number=ANNA.number)
    await observer.wait_prompt(ANNA.number, "vm-main-menu", since=since)
    said = observer.prompts(ANNA.number, since)
    await call.hangup()
    await call.wait_hangup(10)
    return said


async def test_a_message_is_played_and_deleted_on_the_page_and_the_phone_follows(site: Site, tmp_path: Path) -> None:
    rig, b = site.rig, site.browser
    store = VoicemailStore(rig.pbx.instance.spool_dir)
    empty_mailbox(store)
    sniffer = SipSniffer(PHONES_IP, rig.phone.settings.sip_port)
    try:
        # An earlier message, already heard, from a colleague (as a deposit stores it).
        wav = tmp_path / "earlier.wav"
        write_tone(wav, 600, 1.5)
        earlier = store.mark_old(store.add(ANNA.tenant, ANNA.box, wav, Envelope(
            caller_number=MIKKO_NUMBER, caller_name=None, called_number=ANNA.number,
            orig_time=datetime.now(UTC) - timedelta(hours=3), duration=2, msg_id=new_msg_id())))
        # A real caller leaves a message through the PBX.
        await leave_message(rig.phone, rig.observer, OUTSIDE, diverted=ANNA, seconds=2.0)
        inbox = await eventually(lambda: store.list(ANNA.tenant, ANNA.box, "INBOX"), 10, "the message")
        msg_id = inbox[0].envelope.msg_id
        wav_bytes = inbox[0].wav.read_bytes()
        assert app_voicemail_new(rig.pbx, ANNA) == 1

        await site.log_in(site.who("acme", "anna.virtanen"))
        await asyncio.to_thread(b.open, "/mailbox")
        row = await asyncio.to_thread(b.wait_for, f"#new-messages tr[data-id='{msg_id}']")
        assert OUTSIDE in row.find_element("css selector", ".caller").text
        old_row = b.find(f"#old-messages tr[data-id='{earlier.envelope.msg_id}']")
        assert "Mikko Korhonen" in old_row.text

        # The audio route gives the spool's WAV to this session only.
        cookies = {c["name"]: c["value"] for c in b.driver.get_cookies()}
        async with httpx.AsyncClient(base_url=site.base_url) as client:
            audio = await client.get(f"/mailbox/{msg_id}/audio", cookies=cookies)
            anonymous = await client.get(f"/mailbox/{msg_id}/audio")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content == wav_bytes and audio.content.startswith(b"RIFF")
        assert anonymous.status_code == 303 and SESSION_COOKIE in cookies

        # In the browser the player loads it: a duration about the caller's two seconds.
        player = f"tr[data-id='{msg_id}'] audio"
        state = await loaded(site, player)
        assert state["error"] is None and 1.0 <= state["duration"] <= 4.5, state
        await asyncio.to_thread(b.screenshot, "mailbox")
        await asyncio.to_thread(b.screenshot, "mailbox-phone", phone=True)

        # Playing it on the page makes it old, as listening on the phone does; the light goes out.
        mark = len(sniffer.notifies(ANNA.device))
        await asyncio.to_thread(audio_state, site, player, True)
        await asyncio.to_thread(b.wait_for, f"tr.heard[data-id='{msg_id}']")
        assert [m.envelope.msg_id for m in store.list(ANNA.tenant, ANNA.box, "Old")][-1] == msg_id
        assert store.counts(ANNA.tenant, ANNA.box) == (0, 2)
        assert app_voicemail_new(rig.pbx, ANNA) == 0
        await eventually(lambda: [n for n in sniffer.notifies(ANNA.device)[mark:] if "Voice-Message: 0/2" in n],
                         10, "MWI NOTIFY 0/2")
        said = await phone_menu_intro(site)
        assert said[:2] == ["vm-no-new-messages", "vm-you-have"], said

        # Select all, delete: the mailbox is empty on the page, in the spool, on the phone.
        mark = len(sniffer.notifies(ANNA.device))
        await asyncio.to_thread(b.open, "/mailbox")
        await asyncio.to_thread(b.click, "#select-all")
        boxes = b.find_all("input.select")
        assert len(boxes) == 2 and all(box.is_selected() for box in boxes)
        await asyncio.to_thread(b.click, "#clear-selection")
        assert not any(box.is_selected() for box in b.find_all("input.select"))
        await asyncio.to_thread(b.click, "#select-all")
        await asyncio.to_thread(b.click, "#delete-selected")
        await asyncio.to_thread(b.wait_for, "#no-messages")
        assert b.path == "/mailbox?done=mailbox_deleted"
        assert store.counts(ANNA.tenant, ANNA.box) == (0, 0)
        notify = await eventually(lambda: [n for n in sniffer.notifies(ANNA.device)[mark:]
                                           if "Voice-Message: 0/0" in n], 10, "MWI NOTIFY 0/0")
        assert "Messages-Waiting: no" in notify[-1]
        assert await phone_menu_intro(site) == ["vm-no-messages", "vm-main-menu"]
    finally:
        sniffer.close()
        empty_mailbox(store)


async def test_the_own_greeting_is_played_and_deleted_and_callers_hear_the_default(site: Site, tmp_path: Path) -> None:
    rig, b = site.rig, site.browser
    store = VoicemailStore(rig.pbx.instance.spool_dir)
    wav = tmp_path / "greeting.wav"
    write_tone(wav, 700, 2.0)
    store.set_greeting(ANNA.tenant, ANNA.box, wav)
    try:
        assert (await greeting_heard(site))[0] == "greeting:unavail"
        await site.log_in(site.who("acme", "anna.virtanen"))
        await asyncio.to_thread(b.open, "/mailbox")
        state = await loaded(site, "#greeting audio")
        assert state["error"] is None and 1.5 <= state["duration"] <= 2.5, state
        await asyncio.to_thread(b.click, "#delete-greeting")
        await asyncio.to_thread(b.wait_for, "#default-greeting")
        assert store.greeting(ANNA.tenant, ANNA.box) is None
        assert (await greeting_heard(site))[0] == "vm-default-greeting-pre"
        assert store.counts(ANNA.tenant, ANNA.box) == (0, 0)  # the callers hung up before the beep
    finally:
        store.delete_greeting(ANNA.tenant, ANNA.box)
        empty_mailbox(store)
