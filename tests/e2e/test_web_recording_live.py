"""Services → Call recording in a real browser, then real calls through the PBX: recording turned
on on the page records the next answered call (both parties hear the announcement first, a WAV
with the call's audio appears in the user's spool folder, the page lists and plays it); turned
off, the next call is neither announced nor recorded."""

from __future__ import annotations

import asyncio
import math
import wave
from array import array
from pathlib import Path

import pytest
from support import Person, Rig, eventually, wait_pbx_idle
from webrig import Site

from base.paths import Paths
from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO = Person("acme", "mikko.korhonen", "+358401110002", "acme-mikko-soft", "")
TONE_SECONDS = 2.0


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


def folder(rig: Rig, who: Person) -> Path:
    return Paths(rig.pbx.home).call_recordings / who.tenant / who.user


def recordings(rig: Rig, who: Person) -> set[Path]:
    where = folder(rig, who)
    return set(where.glob("*.wav")) if where.is_dir() else set()


def finished_wav(path: Path) -> tuple[float, int] | None:
    """(seconds, RMS) of a WAV whose header MixMonitor has written, else None."""
    try:
        with wave.open(str(path), "rb") as audio:
            frames, rate = audio.getnframes(), audio.getframerate()
            samples = array("h", audio.readframes(frames)) if audio.getsampwidth() == 2 else array("h")
    except (OSError, EOFError, wave.Error):
        return None
    if not frames or not samples:
        return None
    return frames / rate, int(math.sqrt(sum(x * x for x in samples) / len(samples)))


async def call_mikko_to_anna(site: Site) -> tuple[Call, Call, int]:
    """Mikko's device calls Anna; her device answers; Mikko's tone reaches her. The observer mark
    from before the call."""
    rig = site.rig
    since = rig.observer.mark()
    call = await rig.phone.call(ANNA.number, device=MIKKO.device)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await call.wait_state("Up", 10)
    return call, leg, since


async def quiet(call: Call) -> None:
    """Until nothing more arrives for half a second: the announcement is over, the call bridged."""
    for _ in range(40):
        heard = call.audio_seconds
        await asyncio.sleep(0.5)
        if call.audio_seconds == heard:
            return
    raise AssertionError(f"{call!r} never went quiet")


async def talk_and_hang_up(site: Site, speaker: Call, listener: Call) -> None:
    """Once the announcement is over, `speaker` sends a tone that `listener` hears; both hang up."""
    await quiet(listener)
    heard = listener.audio_seconds
    await speaker.play_tone(TONE_SECONDS, 600)
    assert await listener.heard_audio(heard + TONE_SECONDS - 0.4, timeout=10), f"{listener!r} heard nothing"
    await speaker.hangup()
    await listener.wait_hangup(10)
    await asyncio.to_thread(wait_pbx_idle, site.rig.pbx)


def dialplan_apps(rig: Rig, since: int) -> list[str]:
    return [s.what for s in rig.observer.seen[since:] if s.kind == "app"]


async def test_recording_on_in_the_browser_records_the_next_call_and_off_stops_it(site: Site) -> None:
    rig, b = site.rig, site.browser
    anna = site.who(ANNA.tenant, ANNA.user)
    old = recordings(rig, ANNA)
    await site.log_in(anna)

    # On, in the browser.
    await asyncio.to_thread(b.open, "/services/recording")
    assert b.find("#recording-off").is_selected() and b.find("#no-recordings")
    await asyncio.to_thread(b.click, "#recording-on")
    await asyncio.to_thread(b.click, "#recording-save")
    await asyncio.to_thread(b.wait_for, ".notice")
    assert b.find("#recording-on").is_selected()
    assert rig.state.recording_state.recording(ANNA.tenant, ANNA.user) is True

    # A real call: both parties hear the announcement once Anna answers, then they talk.
    call, leg, since = await call_mikko_to_anna(site)
    assert await call.heard_audio(1.0, timeout=10), f"Mikko heard no announcement: {dialplan_apps(rig, since)}"
    assert await leg.heard_audio(1.0, timeout=10), "Anna heard no announcement"
    await talk_and_hang_up(site, call, leg)
    apps = dialplan_apps(rig, since)
    notice = str(rig.pbx.home / "sounds" / "fi" / "record-notice")
    assert any(a.startswith("MixMonitor(") and "/call-recordings/acme/anna.virtanen/" in a for a in apps), apps
    assert any(a.startswith("Dial(") and f"aA({notice}:{notice})" in a for a in apps), apps

    # The recording: a WAV in Anna's folder with the call's audio in it.
    new = await eventually(lambda: recordings(rig, ANNA) - old, 10, "a recording in Anna's folder")
    assert len(new) == 1, new
    path = new.pop()
    assert path.name.split("-")[2:] == ["in", MIKKO.number + ".wav"], path.name
    seconds, loudness = await eventually(lambda: finished_wav(path), 10, "the recording's header")
    assert seconds >= TONE_SECONDS - 0.5 and loudness > 300, (seconds, loudness)
    assert not recordings(rig, MIKKO)  # Mikko's own recording is off

    # Listed on the page, and played by the browser through the authenticated audio route.
    await asyncio.to_thread(b.open, "/services/recording")
    row = b.find(f'#recordings tr[data-id="{path.stem}"]')
    assert MIKKO.number in row.text
    played = await asyncio.to_thread(b.driver.execute_async_script, """
        const done = arguments[arguments.length - 1];
        const audio = document.querySelector('#recordings audio');
        audio.muted = true;
        audio.addEventListener('error', () => done('error ' + (audio.error && audio.error.code)));
        audio.play().then(() => done(audio.duration)).catch((e) => done('refused ' + e));
    """)
    assert isinstance(played, (int, float)) and played >= TONE_SECONDS - 0.5, played
    await asyncio.to_thread(b.screenshot, "recording")
    await asyncio.to_thread(b.screenshot, "recording-phone", phone=True)

    # Off: the next call is neither announced nor recorded.
    await asyncio.to_thread(b.click, "#recording-off")
    await asyncio.to_thread(b.click, "#recording-save")
    await asyncio.to_thread(b.wait_for, ".notice")
    assert rig.state.recording_state.recording(ANNA.tenant, ANNA.user) is False
    before = recordings(rig, ANNA)
    call, leg, since = await call_mikko_to_anna(site)
    await talk_and_hang_up(site, call, leg)
    apps = dialplan_apps(rig, since)
    assert any(a.startswith("Dial(") for a in apps), apps
    assert not [a for a in apps if "MixMonitor(" in a or "record-notice" in a], apps
    assert recordings(rig, ANNA) == before

    # Deleted on the page: gone from the folder.
    await asyncio.to_thread(b.open, "/services/recording")
    await asyncio.to_thread(b.click, f'#recordings tr[data-id="{path.stem}"] button.danger')
    await asyncio.to_thread(b.wait_for, ".notice")
    assert not path.exists()


async def test_a_recording_users_call_out_through_the_carrier_is_announced_and_recorded(site: Site) -> None:
    """The other direction: Anna's own call out (the outbound check's record flag), listed on her
    page as outgoing to the number she called."""
    rig, b = site.rig, site.browser
    old = recordings(rig, ANNA)
    rig.state.recording_state.set_recording(ANNA.tenant, ANNA.user, True, actor="e2e", source="test")
    since = rig.observer.mark()
    call = await rig.phone.call("0505550101", device=ANNA.device)
    out = await rig.phone.incoming("+358505550101", 10)
    await out.answer()
    await call.wait_state("Up", 10)
    # Anna hears it (the carrier's leg on the test phone streams no audio back to the test).
    assert await call.heard_audio(1.0, timeout=10), f"Anna heard no announcement: {dialplan_apps(rig, since)}"
    await talk_and_hang_up(site, out, call)
    new = await eventually(lambda: recordings(rig, ANNA) - old, 10, "a recording in Anna's folder")
    assert len(new) == 1, new
    path = new.pop()
    assert path.name.split("-")[2:] == ["out", "+358505550101.wav"], path.name
    seconds, loudness = await eventually(lambda: finished_wav(path), 10, "the recording's header")
    assert seconds >= TONE_SECONDS - 0.5 and loudness > 300, (seconds, loudness)
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await asyncio.to_thread(b.open, "/services/recording")
    row = b.find(f'#recordings tr[data-id="{path.stem}"]')
    assert "+358505550101" in row.text and "Lähtevä" in row.text
