"""Voicemail through real SIP calls into the product PBX, with the real vipbx service running.

The session's PBX (examples/*.yaml on the test addresses) and test phone; the voicemail service is
built exactly as `vipbx serve` builds it (`plugins.load` + `Service`), in this process per test,
or as a `vipbx serve` subprocess where a test kills it. Its FastAGI router answers from a copy of
the configuration whose no-answer time is the shortest the validator allows, so routed calls reach
voicemail after RING_SECONDS instead of the example's 20.

What the PBX played is read from the PBX itself: a second ARI client subscribed to everything
(`subscribeAll`) sees every PlaybackStarted and RecordingStarted of every channel, with the media
played. The phone side hears the audio (`Call.media`) and presses the keys; SIP NOTIFYs (message
waiting) are captured on the wire where the phone receives them. Results are the files in the
spool, their envelopes and audio, app_voicemail's own counts and the call-state database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import socket
import struct
import sys
import threading
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from aiosmtpd.controller import Controller
from conftest import EXAMPLES, PHONES_IP, Pbx, unavailable
from gateways import SMTP_IP, Kannel, MailSink, free_port, kannel_programs
from support import (
    PbxObserver,
    Person,
    Running,
    Seen,
    ServeProcess,
    ami_settings,
    app_registered,
    eventually,
    start_service,
    wait_pbx_idle,
)

from asterisk_conf.validate import load_config
from base.model import Config
from callstate import CallStateService
from notify import KannelGateway, Notifier, attachment_name, sms_text
from notify.outbox import Entry
from testphone import TestPhone
from testphone.driver import Call
from testphone.media import write_tone
from vmstore import Envelope, Message, VoicemailStore, new_msg_id, refresh_mwi

pytestmark = pytest.mark.asterisk

VOICEMAIL = "+358201243100"
OUTSIDE = "+358451234567"
CUSTOMER_SERVICE = "+358955512345"  # an outside number: reached through the carrier
NOT_A_USER = "+358409999999"
RING_SECONDS = 5  # the validator's minimum no-answer time
USER_BUSY = 17


ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
WORKSHOP = Person("acme", "workshop", "+358401110009", "acme-workshop", "864213")  # "No voicemail"
PEOPLE = (ANNA, WORKSHOP)


# --- audio --------------------------------------------------------------------------------------

def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def loud_seconds(path: Path, threshold: float = 500.0) -> float:
    """Seconds of 20 ms frames louder than `threshold` (16-bit RMS): the spoken part of a WAV."""
    with wave.open(str(path)) as wav:
        assert (wav.getsampwidth(), wav.getnchannels()) == (2, 1), path
        rate, data = wav.getframerate(), wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    step = rate // 50
    loud = 0
    for start in range(0, len(samples) - step + 1, step):
        frame = samples[start:start + step]
        if math.sqrt(sum(s * s for s in frame) / step) > threshold:
            loud += 1
    return loud * step / rate


def last_voiced_arrival(call: Call) -> float | None:
    if call.media is None:
        return None
    return next((p.arrival for p in reversed(call.media.packets) if not p.silent), None)


# --- SIP on the wire ------------------------------------------------------------------------------

class SipSniffer:
    """SIP messages delivered to (ip, port) on the loopback interface: what that phone receives.

    A raw packet socket (root) sees every datagram on `lo` twice, outgoing and incoming; the
    incoming copy is kept.
    """

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = socket.inet_aton(ip), port
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sip-sniffer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[9] != socket.IPPROTO_UDP or ip[16:20] != self.ip:
                continue
            udp = ip[(ip[0] & 0x0F) * 4:]
            if struct.unpack("!H", udp[2:4])[0] == self.port:
                self.messages.append(udp[8:].decode("utf-8", "replace"))

    def notifies(self, device: str) -> list[str]:
        """Message-summary NOTIFYs sent to the device (R-URI user = device id)."""
        return [m for m in list(self.messages)
                if m.startswith(f"NOTIFY sip:{device}@") and "Event: message-summary" in m]

    def close(self) -> None:
        self._stopped = True
        self._thread.join(2)
        self._sock.close()


# --- helpers --------------------------------------------------------------------------------------

def app_voicemail_new(pbx: Pbx, person: Person) -> int:
    """NewMsg of the mailbox in `voicemail show users`: app_voicemail's own count (and MWI's)."""
    for line in pbx.cli(f"voicemail show users for {person.tenant}").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == person.tenant and fields[1] == person.box:
            return int(fields[-1])
    raise AssertionError(f"{person.box}@{person.tenant} not listed by app_voicemail")


def leftover_recordings(spool: VoicemailStore) -> list[Path]:
    folder = spool.spool_dir / "recording"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


async def wait_recording(observer: PbxObserver, call: Call, caller: str, *, since: int = 0,
                         timeout: float = 30) -> Seen:
    """Until the PBX records this caller and its beep has been heard and is over."""
    started = await observer.wait(caller, "record-start", since=since, timeout=timeout)
    # The beep (about 0.4 s) is played after RecordingStarted, and what is said during it is not
    # recorded; the greeting ended at least a pause before. Audio may lag behind ARI events.
    beep_from = started.at - 0.1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        last = last_voiced_arrival(call)
        if (last is not None and last > beep_from and loop.time() - last > 0.25
                and loop.time() - started.at > 0.6):
            return started
        assert loop.time() < deadline, f"no beep heard after the recording started: {call.segments()}"
        await asyncio.sleep(0.02)


async def leave_message(phone: TestPhone, observer: PbxObserver, caller: str, *, diverted: Person,
                        seconds: float, skip_greeting: bool = False, frequency: int = 1004) -> Call:
    """A carrier call diverted from `diverted`'s number: speaks a tone after the beep, hangs up."""
    since = observer.mark()
    call = await phone.call(VOICEMAIL, caller_number=caller, diversion=diverted.number)
    await call.wait_state("Up", 15)
    if skip_greeting:
        await observer.wait(caller, "play", since=since)
        await call.send_dtmf("5")  # any key but 1 ends the greeting
    await wait_recording(observer, call, caller, since=since)
    await call.play_tone(seconds, frequency)
    await call.hangup()
    await call.wait_hangup(10)
    return call


async def type_digits(call: Call, digits: str) -> None:
    """Keys as a quick caller types them (RFC 4733, 80 ms each)."""
    await call.send_dtmf(digits, duration_ms=80, between_ms=80)


def seed(store: VoicemailStore, person: Person, tmp: Path, callers: list[str],
         seconds: float = 1.5) -> list[Message]:
    """Messages as a deposit leaves them, oldest first, each a tone of its own pitch."""
    messages = []
    for index, caller in enumerate(callers):
        wav = tmp / f"seed-{index}.wav"
        write_tone(wav, 400 + 200 * index, seconds)
        envelope = Envelope(caller_number=caller, caller_name=None, called_number=person.number,
                            orig_time=datetime.now(UTC) - timedelta(minutes=10 - index),
                            duration=round(seconds), msg_id=new_msg_id())
        messages.append(store.add(person.tenant, person.box, wav, envelope))
    return messages


def ids(store: VoicemailStore, person: Person, folder: str) -> list[str]:
    return [m.envelope.msg_id for m in store.list(person.tenant, person.box, folder)]


def caller_digits(prompts: list[str]) -> str:
    """The caller number said in an envelope ("vm-message-from", "digit-2", ...)."""
    start = prompts.index("vm-message-from") + 1
    out = ""
    for name in prompts[start:]:
        if not name.startswith("digit-"):
            break
        out += name.removeprefix("digit-")
    return out


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vm_config(e2e_config: Config) -> Config:
    """The example platform, ringing RING_SECONDS before no-answer treatment (the FastAGI answer)."""
    return replace(e2e_config, platform=replace(e2e_config.platform, no_answer_seconds=RING_SECONDS))


@pytest.fixture(scope="module")
def store(pbx: Pbx) -> VoicemailStore:
    return VoicemailStore(pbx.instance.spool_dir)


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


def _reset(pbx: Pbx, config: Config, store: VoicemailStore) -> None:
    for person in PEOPLE:
        shutil.rmtree(store.root / person.tenant / person.box, ignore_errors=True)
    shutil.rmtree(store.spool_dir / "recording", ignore_errors=True)
    with CallStateService(pbx.home / "state.sqlite3", config) as callstate:
        callstate.reset_pin_lockout(ANNA.tenant, ANNA.user, actor="e2e", source="test")
        callstate.update_voicemail_settings(ANNA.tenant, ANNA.user, actor="e2e", source="test",
                                            press1_number=None, always_ask_pin=False,
                                            play_activity=False, notify_sms=True, notify_email=False)


@pytest_asyncio.fixture
async def clean(pbx: Pbx, vm_config: Config, store: VoicemailStore,
                prompt_catalogue: Path) -> AsyncIterator[None]:
    """Empty mailboxes, default settings, no lock, no call, MWI in step: before and after."""
    wait_pbx_idle(pbx)
    _reset(pbx, vm_config, store)
    await refresh_mwi(ami_settings(pbx), ANNA.tenant, ANNA.box)
    yield
    wait_pbx_idle(pbx)
    _reset(pbx, vm_config, store)
    await refresh_mwi(ami_settings(pbx), ANNA.tenant, ANNA.box)


@pytest_asyncio.fixture
async def vipbx(pbx: Pbx, vm_config: Config, clean: None) -> AsyncIterator[Running]:
    service, deps = start_service(pbx, vm_config)
    task = asyncio.create_task(service.run(), name="vipbx-service")
    try:
        await service.client.wait_connected(15)
        yield Running(service, deps)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        deps.callstate.close()


@pytest_asyncio.fixture
async def observer(pbx: Pbx, prompt_catalogue: Path, store: VoicemailStore) -> AsyncIterator[PbxObserver]:
    watcher = PbxObserver(pbx, prompt_catalogue, store)
    runner = asyncio.create_task(watcher.client.run())
    try:
        await watcher.client.wait_connected(10)
        yield watcher
    finally:
        await watcher.client.close()
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner


@dataclass
class Rig:
    pbx: Pbx
    app: Running
    phone: TestPhone
    observer: PbxObserver
    store: VoicemailStore

    @property
    def callstate(self) -> CallStateService:
        return self.app.deps.callstate


@pytest_asyncio.fixture
async def rig(pbx: Pbx, vipbx: Running, phone: TestPhone, observer: PbxObserver,
              store: VoicemailStore) -> Rig:
    """Set up in this order, so the phone hangs its calls up before the service stops."""
    return Rig(pbx, vipbx, phone, observer, store)


# --- 1. leaving a message ---------------------------------------------------------------------------

async def test_diverted_call_leaves_one_message_with_its_envelope_and_mwi(rig: Rig) -> None:
    sniffer = SipSniffer(PHONES_IP, rig.phone.settings.sip_port)
    try:
        started = datetime.now(UTC)
        since = rig.observer.mark()
        call = await leave_message(rig.phone, rig.observer, OUTSIDE, diverted=ANNA, seconds=3.0)
        # The default greeting says the number that was diverted, in the user's language.
        greeting = [s for s in rig.observer.of(OUTSIDE, since, "play")]
        digits = [f"digit-{d}" for d in ANNA.number[1:]]
        assert [s.what for s in greeting] == ["vm-default-greeting-pre", "plus", *digits,
                                              "vm-default-greeting-post"]
        assert {s.lang for s in greeting} == {"fi"}
        assert call.audio_seconds > 5  # the caller heard it

        inbox = await eventually(lambda: rig.store.list(ANNA.tenant, ANNA.box, "INBOX"), 10, "message")
        box = rig.store.mailbox_dir(ANNA.tenant, ANNA.box)
        assert sorted(p.name for p in (box / "INBOX").iterdir()) == ["msg0000.txt", "msg0000.wav"]
        assert rig.store.list(ANNA.tenant, ANNA.box, "Old") == []
        envelope = inbox[0].envelope
        assert envelope.caller_number == OUTSIDE
        assert envelope.called_number == ANNA.number  # rdnis: the diverted number
        assert envelope.origmailbox == ANNA.box
        assert envelope.msg_id and len(envelope.msg_id) >= 20
        assert started - timedelta(seconds=5) <= envelope.orig_time <= datetime.now(UTC)
        assert envelope.caller_channel.startswith("PJSIP/carrier-")
        seconds = wav_seconds(inbox[0].wav)
        assert 2.5 <= seconds <= 4.5, seconds
        assert envelope.duration == max(1, round(seconds))
        assert abs(envelope.duration - 3) <= 1
        assert 2.6 <= loud_seconds(inbox[0].wav) <= 3.2  # the tone the caller spoke, all of it
        assert "msg_id=" + envelope.msg_id in inbox[0].txt.read_text()
        assert leftover_recordings(rig.store) == []

        # Message waiting: app_voicemail counts it, and Anna's softphone was told.
        assert app_voicemail_new(rig.pbx, ANNA) == 1
        notify = await eventually(lambda: [n for n in sniffer.notifies(ANNA.device)
                                           if "Voice-Message: 1/0" in n], 5, "MWI NOTIFY")
        assert "Messages-Waiting: yes" in notify[-1]
        assert not any("Voice-Message: 1/0" in n for n in sniffer.notifies("acme-mikko-soft"))
    finally:
        sniffer.close()


async def test_routed_no_answer_goes_to_voicemail_and_hash_ends_the_message(rig: Rig) -> None:
    since = rig.observer.mark()
    began = time.monotonic()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(ANNA.device, 10)  # rings, nobody answers
    await call.wait_state("Up", RING_SECONDS + 10)
    assert RING_SECONDS - 0.5 <= time.monotonic() - began <= RING_SECONDS + 4
    await leg.wait_hangup(5)
    assert "Up" not in leg.states_seen and leg.hung_up_by == "far"
    await rig.observer.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    await call.send_dtmf("5")  # skip the rest of the greeting
    await wait_recording(rig.observer, call, OUTSIDE, since=since)
    await call.play_tone(2.0)
    after_tone = rig.observer.mark()
    await call.send_dtmf("#")  # ends the recording: the caller is thanked, the PBX hangs up
    await call.wait_hangup(15)
    assert call.hung_up_by == "far"
    assert rig.observer.prompts(OUTSIDE, after_tone) == ["vm-message-saved", "vm-goodbye"]

    inbox = rig.store.list(ANNA.tenant, ANNA.box, "INBOX")
    assert len(inbox) == 1
    envelope = inbox[0].envelope
    assert (envelope.caller_number, envelope.called_number) == (OUTSIDE, ANNA.number)
    assert 1.8 <= loud_seconds(inbox[0].wav) <= 2.2
    assert abs(envelope.duration - 2) <= 1


async def test_hanging_up_before_the_beep_leaves_nothing(rig: Rig) -> None:
    since = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await call.wait_state("Up", 15)
    await rig.observer.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    await call.play_tone(1.0)  # talks over the greeting, then gives up
    await call.hangup()
    await call.wait_hangup(10)
    # The PBX's channel is gone and the app has finished with it: nothing can be recorded now.
    await asyncio.to_thread(wait_pbx_idle, rig.pbx)
    await eventually(lambda: not rig.app.service.app._tasks, 10, "the deposit handler finished")
    assert rig.observer.of(OUTSIDE, since, "record-start") == []
    assert not (rig.store.root / ANNA.tenant / ANNA.box).exists() or rig.store.counts(ANNA.tenant, ANNA.box) == (0, 0)
    assert leftover_recordings(rig.store) == []


async def test_recording_under_a_second_is_discarded(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmstore")  # the delivery decides and logs
    since = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await call.wait_state("Up", 15)
    await rig.observer.wait(OUTSIDE, "play", since=since)
    await call.send_dtmf("5")
    await wait_recording(rig.observer, call, OUTSIDE, since=since)
    await call.play_tone(0.2)
    await call.hangup()
    await call.wait_hangup(10)
    await rig.observer.wait(OUTSIDE, "record-end", since=since, timeout=10)
    await eventually(lambda: leftover_recordings(rig.store) == [], 5, "recording removed")
    assert rig.store.counts(ANNA.tenant, ANNA.box) == (0, 0)
    # It was recorded, and found too short: "recording NAME: 0.4 s for 358401110001@acme, discarded".
    discarded = [r.getMessage() for r in caplog.records if r.getMessage().endswith("discarded")]
    assert len(discarded) == 1, caplog.text
    seconds = float(discarded[0].split(": ")[1].split(" s ")[0])
    assert 0.1 <= seconds < 1.0, discarded


async def test_user_without_voicemail_gets_busy_no_greeting_no_file(rig: Rig) -> None:
    since = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=WORKSHOP.number)
    assert await call.wait_hangup(10) == USER_BUSY
    assert "Up" not in call.states_seen and call.audio_seconds == 0
    assert [s for s in rig.observer.of(OUTSIDE, since) if s.kind != "app"] == []  # nothing played or recorded
    assert not (rig.store.root / WORKSHOP.tenant / WORKSHOP.box).exists()
    assert leftover_recordings(rig.store) == []


async def test_diverted_number_of_nobody_gets_an_apology(rig: Rig) -> None:
    since = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=NOT_A_USER)
    await call.wait_hangup(15)
    assert call.hung_up_by == "far" and "Up" in call.states_seen
    assert rig.observer.prompts(OUTSIDE, since) == ["vm-unknown-number-apology"]
    assert call.audio_seconds > 1
    assert leftover_recordings(rig.store) == []


async def pending(notifier: Notifier, msg_id: str, channel: str) -> Entry | None:
    """The outbox row waiting to tell of message `msg_id` on `channel`, if there is one."""
    rows = await notifier.entries("pending")
    return next((r for r in rows if r.notice.msg_id == msg_id and r.channel == channel), None)


async def test_a_message_is_notified_by_sms_and_email_through_real_gateways(
        pbx: Pbx, vm_config: Config, clean: None, phone: TestPhone, observer: PbxObserver,
        store: VoicemailStore, tmp_path: Path) -> None:
    """Anna notified by SMS (the default) and e-mail: the deposit queues both in the durable
    outbox; a real SMTP server gets the mail with the recording, a real Kannel the SMS once it is
    up (until then the SMS waits in the outbox)."""
    programs = kannel_programs()
    if programs is None:
        unavailable("Kannel is not installed (Debian packages: kannel kannel-extras)")
    sink = MailSink()
    smtp = Controller(sink, hostname=SMTP_IP, port=free_port(SMTP_IP))
    kannel = Kannel(programs, tmp_path / "kannel", password=pbx.secrets.get("kannel"))
    notifications = replace(
        vm_config.platform.notifications, retry_backoff=(1,), retry_max_attempts=100,
        sms_url=kannel.settings.url, sms_username=kannel.user, sms_sender=kannel.sender,
        smtp_host=SMTP_IP, smtp_port=smtp.port, smtp_sender="Vastaaja <vastaaja@pbx.example>")
    config = replace(vm_config, platform=replace(vm_config.platform, notifications=notifications))
    service, deps = start_service(pbx, config)
    notifier = deps.notifier
    assert isinstance(notifier, Notifier)
    deps.callstate.update_voicemail_settings(ANNA.tenant, ANNA.user, actor="e2e", source="test",
                                             notify_email=True)
    smtp.start()
    task = asyncio.create_task(service.run(), name="vipbx-service")
    try:
        await service.client.wait_connected(15)
        await leave_message(phone, observer, OUTSIDE, diverted=ANNA, seconds=2.0)
        (message,) = await eventually(lambda: store.list(ANNA.tenant, ANNA.box, "INBOX"), 10, "the message")
        msg_id = message.envelope.msg_id

        # Kannel is down: the SMS waits in the outbox, for Anna's number and this message.
        sms = await eventually_async(lambda: pending(notifier, msg_id, "sms"), "the SMS queued")
        assert (sms.notice.tenant_id, sms.notice.user_id) == (ANNA.tenant, ANNA.user)
        assert (sms.notice.user_number, sms.notice.caller_number) == (ANNA.number, OUTSIDE)

        # The mail, with the recording, reached the SMTP server.
        got = await eventually(lambda: sink.received, 20, "the mail")
        assert len(got) == 1 and got[0].rcpt_tos == ["anna.virtanen@acme.example"]
        (part,) = list(got[0].message.iter_attachments())
        assert part.get_filename() == attachment_name(sms.notice)
        assert part.get_content() == message.wav.read_bytes()

        # Kannel up: the SMS reaches the SMSC and leaves the outbox.
        await asyncio.to_thread(kannel.start)
        delivered = await eventually(kannel.delivered, 20, "the SMS at the SMSC")
        assert delivered == [(kannel.sender, ANNA.number, sms_text(sms.notice))]
        assert sms_text(sms.notice).startswith(f"Uusi vastaajaviesti numerosta {OUTSIDE} ")
        assert await eventually_async(lambda: _outbox_empty(notifier), "the outbox emptied")
    finally:
        await phone.hangup_all()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await notifier.close()
        if isinstance(notifier.sms, KannelGateway):
            await notifier.sms.aclose()
        deps.callstate.close()
        await asyncio.to_thread(kannel.stop)
        smtp.stop()
        # Whatever this test left queued must not be sent by a later one's service.
        for leftover in pbx.home.glob("outbox*"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()


async def _outbox_empty(notifier: Notifier) -> bool:
    return not await notifier.entries()


async def eventually_async(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20) -> Any:
    """Until the awaited `check()` is true; its value."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)
    return result


# --- 2. listening -------------------------------------------------------------------------------------

async def test_own_number_plays_skips_replays_and_deletes(rig: Rig, tmp_path: Path) -> None:
    m1, m2, m3 = seed(rig.store, ANNA, tmp_path, ["201", "202", "203"])
    obs, me = rig.observer, ANNA.number
    call = await rig.phone.call(VOICEMAIL, caller_number=me)  # from her own number: no PIN
    await obs.wait_prompt(me, "vm-main-menu")
    assert obs.prompts(me) == ["vm-you-have", "num-3", "vm-new-n", "vm-main-menu"]
    assert call.audio_seconds > 1

    async def press(key: str, then: str, said_caller: str) -> None:
        """Press `key` (while the current prompt plays); `then` must play, after the envelope."""
        mark = obs.mark()
        await call.send_dtmf(key, wait=False)
        await obs.wait_prompt(me, then, since=mark)
        assert caller_digits(obs.prompts(me, mark)) == said_caller
        await asyncio.sleep(0.5)  # a moment of the message itself

    await press("1", "msg:INBOX/msg0000", "201")  # 1: new messages, the first
    await press("3", "msg:INBOX/msg0000", "202")  # 3: next; the first became old
    assert ids(rig.store, ANNA, "INBOX") == [m2.envelope.msg_id, m3.envelope.msg_id]
    assert ids(rig.store, ANNA, "Old") == [m1.envelope.msg_id]
    await press("2", "msg:INBOX/msg0000", "202")  # 2: replay (still new: it moves once left)
    assert ids(rig.store, ANNA, "INBOX") == [m2.envelope.msg_id, m3.envelope.msg_id]
    await press("1", "msg:Old/msg0000", "201")  # 1: previous; the one left became old
    assert ids(rig.store, ANNA, "INBOX") == [m3.envelope.msg_id]
    mark = obs.mark()
    await press("7", "msg:Old/msg0000", "202")  # 7: delete; the next one plays
    assert obs.prompts(me, mark)[0] == "vm-deleted"
    assert ids(rig.store, ANNA, "Old") == [m2.envelope.msg_id]
    assert rig.store.find(ANNA.tenant, ANNA.box, m1.envelope.msg_id) is None

    mark = obs.mark()
    await call.send_dtmf("*", wait=False)  # *: goodbye
    await call.wait_hangup(10)
    assert call.hung_up_by == "far"
    assert obs.prompts(me, mark) == ["vm-goodbye"]
    assert ids(rig.store, ANNA, "INBOX") == [m3.envelope.msg_id]
    assert ids(rig.store, ANNA, "Old") == [m2.envelope.msg_id]
    box = rig.store.mailbox_dir(ANNA.tenant, ANNA.box)
    assert sorted(p.name for p in (box / "INBOX").iterdir()) == ["msg0000.txt", "msg0000.wav"]
    assert sorted(p.name for p in (box / "Old").iterdir()) == ["msg0000.txt", "msg0000.wav"]
    assert app_voicemail_new(rig.pbx, ANNA) == 1


async def test_a_message_whose_caller_name_breaks_lines_plays_with_its_caller(rig: Rig, tmp_path: Path) -> None:
    """A caller name with U+2028, NEL, CR, NUL, '[section]', '=' and ';' in it: the message is
    listed, its caller number is said, it plays, and deleting it by its msg_id works."""
    wav = tmp_path / "eve.wav"
    write_tone(wav, 500, 1.5)
    name = "Eve\u2028[message]\u2029msg_id=\x85;--\rduration=99\x00" + "ä" * 100
    envelope = Envelope(caller_number="207", caller_name=name, called_number=ANNA.number,
                        orig_time=datetime.now(UTC), duration=2, msg_id=new_msg_id())
    rig.store.add(ANNA.tenant, ANNA.box, wav, envelope)
    assert ids(rig.store, ANNA, "INBOX") == [envelope.msg_id]
    obs, me = rig.observer, ANNA.number
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    await obs.wait_prompt(me, "vm-main-menu")
    mark = obs.mark()
    await call.send_dtmf("1", wait=False)
    await obs.wait_prompt(me, "msg:INBOX/msg0000", since=mark)
    assert caller_digits(obs.prompts(me, mark)) == "207"
    mark = obs.mark()
    await call.send_dtmf("7", wait=False)
    await obs.wait_prompt(me, "vm-deleted", since=mark)
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    assert rig.store.find(ANNA.tenant, ANNA.box, envelope.msg_id) is None
    assert ids(rig.store, ANNA, "INBOX") == ids(rig.store, ANNA, "Old") == []


async def test_own_softphone_counts_and_old_messages(rig: Rig, tmp_path: Path) -> None:
    """From the user's own device: straight in; the count follows the mailbox; 2 plays old ones."""
    first, _ = seed(rig.store, ANNA, tmp_path, ["201", "202"])
    rig.store.mark_old(first)
    obs, me = rig.observer, ANNA.number
    call = await rig.phone.call(VOICEMAIL, device=ANNA.device)
    await obs.wait_prompt(me, "vm-main-menu")
    assert obs.prompts(me) == ["vm-you-have", "vm-new-1", "and", "vm-old-1", "vm-main-menu"]
    mark = obs.mark()
    await call.send_dtmf("2", wait=False)
    await obs.wait_prompt(me, "msg:Old/msg0000", since=mark)
    assert caller_digits(obs.prompts(me, mark)) == "201"
    mark = obs.mark()
    await call.send_dtmf("0", wait=False)  # 0: back to the main menu
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    mark = obs.mark()
    await call.send_dtmf("9", wait=False)  # not a key of the menu: answered, then the menu again
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    assert obs.prompts(me, mark) == ["vm-invalid-key", "vm-main-menu"]
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    assert rig.store.counts(ANNA.tenant, ANNA.box) == (1, 1)


async def test_another_number_needs_mailbox_and_pin(rig: Rig) -> None:
    obs = rig.observer
    began = datetime.now(UTC)
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE)
    await obs.wait_prompt(OUTSIDE, "vm-enter-mailbox")
    await type_digits(call, "0401110001#")  # Anna's number, national form
    await obs.wait_prompt(OUTSIDE, "vm-enter-pin")
    await type_digits(call, "000000#")  # a typo ...
    await obs.wait_prompt(OUTSIDE, "vm-pin-wrong")
    await type_digits(call, ANNA.pin + "#")  # ... and the right PIN at once, over the error prompt
    await obs.wait_prompt(OUTSIDE, "vm-main-menu")
    played = obs.prompts(OUTSIDE)
    assert played[:3] == ["vm-enter-mailbox", "vm-enter-pin", "vm-pin-wrong"]
    assert played[-2:] == ["vm-no-messages", "vm-main-menu"]  # in: the empty mailbox's count
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    events = [(e.event, e.actor) for e in reversed(rig.callstate.audit(ANNA.tenant, ANNA.user, limit=20))
              if e.at >= began and e.field == "pin"]
    assert events == [("pin_failed", OUTSIDE), ("pin_ok", OUTSIDE)]


async def test_always_ask_pin_asks_even_the_own_number(rig: Rig) -> None:
    """Caller ID can be spoofed: with the setting on, the own number gets the PIN question."""
    rig.callstate.update_voicemail_settings(ANNA.tenant, ANNA.user, actor="e2e", source="test",
                                            always_ask_pin=True)
    obs, me = rig.observer, ANNA.number
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    await obs.wait_prompt(me, "vm-enter-pin")
    await type_digits(call, ANNA.pin + "#")
    await obs.wait_prompt(me, "vm-main-menu")
    assert obs.prompts(me) == ["vm-enter-pin", "vm-no-messages", "vm-main-menu"]  # no mailbox asked
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)


# Wrong PINs, the lock and what a prober hears: tests/e2e/test_pin_lockout.py.


# --- 3. own greeting ------------------------------------------------------------------------------------

async def test_greeting_recorded_with_5_is_played_and_6_restores_the_default(rig: Rig) -> None:
    obs, me = rig.observer, ANNA.number
    box = rig.store.mailbox_dir(ANNA.tenant, ANNA.box)

    # 5: record a greeting (a 2-second tone, ended with #); it is played back, then saved.
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    await obs.wait_prompt(me, "vm-main-menu")
    mark = obs.mark()
    await call.send_dtmf("5", wait=False)
    await obs.wait_prompt(me, "vm-greeting-record-after-beep", since=mark)
    await wait_recording(obs, call, me, since=mark)
    await call.play_tone(2.0, 600)
    await call.send_dtmf("#")
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    after = obs.prompts(me, mark)
    assert after[0] == "vm-greeting-record-after-beep" and after[1].startswith("recording:vipbx/greeting-")
    assert after[2:] == ["vm-greeting-saved", "vm-main-menu"]
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    greeting = box / "unavail.wav"
    assert greeting.is_file() and (box / "busy.wav").is_file()
    own = loud_seconds(greeting)
    assert 1.8 <= own <= 2.2, own
    assert leftover_recordings(rig.store) == []

    # The next caller hears it instead of the default greeting.
    since = obs.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    recording = await wait_recording(obs, call, OUTSIDE, since=since)
    assert obs.prompts(OUTSIDE, since) == ["greeting:unavail"]
    assert call.media is not None
    heard = sum(p.seconds for p in call.media.packets if not p.silent and p.arrival < recording.at)
    assert abs(heard - own) <= 0.4, (heard, own, call.segments())
    await call.hangup()
    await call.wait_hangup(10)

    # 6: back to the default greeting.
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    mark = obs.mark()
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    mark = obs.mark()
    await call.send_dtmf("6", wait=False)
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    assert obs.prompts(me, mark) == ["vm-greeting-deleted", "vm-main-menu"]
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    assert not greeting.exists() and not (box / "busy.wav").exists()
    since = obs.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await obs.wait_prompt(OUTSIDE, "vm-default-greeting-pre", since=since)
    await call.hangup()
    await call.wait_hangup(10)
    assert rig.store.counts(ANNA.tenant, ANNA.box) == (0, 0)


async def test_4_plays_the_own_greeting_and_0_repeats_the_main_menu(rig: Rig, tmp_path: Path,
                                                                    prompt_catalogue: Path) -> None:
    obs, me = rig.observer, ANNA.number
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    first_menu = await obs.wait_prompt(me, "vm-main-menu")

    # 0: the main menu again, at once. The repeat begins before the first menu could have ended,
    # so the key brought it (not the repeat after a silence).
    mark = obs.mark()
    await call.send_dtmf("0", wait=False)
    again = await obs.wait_prompt(me, "vm-main-menu", since=mark)
    assert obs.prompts(me, mark) == ["vm-main-menu"]
    assert again.at - first_menu.at < wav_seconds(prompt_catalogue / "fi" / "vm-main-menu.wav")

    # 4 with no own greeting: said so, then the menu.
    mark = obs.mark()
    await call.send_dtmf("4", wait=False)
    await obs.wait_prompt(me, "vm-main-menu", since=mark)
    assert obs.prompts(me, mark) == ["vm-no-greeting", "vm-main-menu"]

    # 4 with one (a 2-second tone): the caller hears it, then the menu.
    tone = tmp_path / "greeting.wav"
    write_tone(tone, 700, 2.0)
    rig.store.set_greeting(ANNA.tenant, ANNA.box, tone)
    mark = obs.mark()
    await call.send_dtmf("4", wait=False)
    menu = await obs.wait_prompt(me, "vm-main-menu", since=mark)
    assert obs.prompts(me, mark) == ["greeting:unavail", "vm-main-menu"]
    played = obs.of(me, mark, "play")[0]
    assert call.media is not None
    heard = sum(p.seconds for p in call.media.packets if not p.silent and played.at <= p.arrival < menu.at)
    assert abs(heard - 2.0) <= 0.4, (heard, call.segments())

    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    assert call.hung_up_by == "far"
    assert rig.store.greeting(ANNA.tenant, ANNA.box) is not None  # heard, not changed


async def test_a_stalled_database_holds_up_only_its_own_call(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anna's login waits on the call-state database (stalled for up to 2 s); meanwhile Mikko, in
    his main menu on another call, presses 0 and hears the menu again before the stall ends."""
    mikko = "+358401110002"
    stalled, release = threading.Event(), threading.Event()
    real = rig.callstate.voicemail_settings

    def stalling(tenant_id: str, user_id: str) -> Any:
        if (tenant_id, user_id) == (ANNA.tenant, ANNA.user) and not release.is_set():
            stalled.set()
            release.wait(2.0)  # the database answers only after this
        return real(tenant_id, user_id)

    monkeypatch.setattr(rig.callstate, "voicemail_settings", stalling)
    obs = rig.observer
    other = await rig.phone.call(VOICEMAIL, caller_number=mikko)
    await obs.wait_prompt(mikko, "vm-main-menu")
    anna = await rig.phone.call(VOICEMAIL, caller_number=ANNA.number)
    try:
        await obs.until(stalled.is_set, 10, "Anna's login reaching the database")
        mark = obs.mark()
        await other.send_dtmf("0", wait=False)
        await obs.wait_prompt(mikko, "vm-main-menu", since=mark, timeout=1.5)
        assert not release.is_set() and obs.prompts(ANNA.number, mark) == []  # Anna still waits
    finally:
        release.set()
    await obs.wait_prompt(ANNA.number, "vm-main-menu")  # and her call goes on afterwards
    for call in (other, anna):
        await call.send_dtmf("*", wait=False)
        await call.wait_hangup(10)


# --- 4. press 1 for customer service -------------------------------------------------------------------

async def test_press_1_in_the_greeting_reaches_customer_service(rig: Rig) -> None:
    rig.callstate.update_voicemail_settings(ANNA.tenant, ANNA.user, actor="e2e", source="test",
                                            press1_number=CUSTOMER_SERVICE)
    since = rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
    await rig.observer.wait_prompt(OUTSIDE, "vm-press-1-customer-service", since=since, timeout=30)
    await call.send_dtmf("1", wait=False)
    leg = await rig.phone.incoming(CUSTOMER_SERVICE, 10)  # the carrier side: an outside number
    assert leg.caller.get("number") == OUTSIDE
    await leg.answer()
    heard = call.audio_seconds
    await leg.play_tone(1.0, 800)
    assert await call.heard_audio(heard + 0.8, timeout=5)  # connected: the caller hears them
    assert call.state == "Up" and not call.ended
    await call.hangup()
    await leg.wait_hangup(10)
    assert rig.observer.of(OUTSIDE, since, "record-start") == []
    assert rig.store.counts(ANNA.tenant, ANNA.box) == (0, 0)


# --- 5. many at once ---------------------------------------------------------------------------------------

async def test_twenty_simultaneous_messages_are_all_kept(rig: Rig) -> None:
    callers = [f"+35845100{i:04d}" for i in range(20)]
    # Within the RTP port ranges: two RTP ports per call on the phone (the call and its listener),
    # one per call on the PBX.
    calls = await asyncio.gather(*(leave_message(rig.phone, rig.observer, caller, diverted=ANNA,
                                                 seconds=2.0, frequency=500 + 50 * i)
                                   for i, caller in enumerate(callers)))
    assert all(c.ended for c in calls)
    inbox = await eventually(lambda: (m := rig.store.list(ANNA.tenant, ANNA.box, "INBOX")) and len(m) >= 20 and m,
                             20, "twenty messages")
    assert len(inbox) == 20
    assert [m.number for m in inbox] == list(range(20))
    assert len({m.envelope.msg_id for m in inbox}) == 20
    assert sorted(m.envelope.caller_number for m in inbox) == callers
    for message in inbox:
        # Twenty callers at once: the phone's timing is coarser, the tone may start a bit late.
        assert 1.5 <= loud_seconds(message.wav) <= 2.2, message
    await eventually(lambda: leftover_recordings(rig.store) == [], 5, "recordings handed over")
    assert app_voicemail_new(rig.pbx, ANNA) == 20


# --- 6. the app killed mid-recording -----------------------------------------------------------------------

def write_platform_yaml(folder: Path, config: Config) -> list[Path]:
    """YAML files that `vipbx serve` loads into exactly `config` (the test platform)."""
    p = config.platform
    platform = yaml.safe_load((EXAMPLES / "platform.yaml").read_text(encoding="utf-8"))
    assert p.carrier is not None
    platform["platform"].update({
        "sip": {"bind": p.sip.bind, "port": p.sip.port},
        "rtp": {"start": p.rtp_start, "end": p.rtp_end},
        "http": {"bind": p.http.bind, "port": p.http.port},
        "ami": {"bind": p.ami.bind, "port": p.ami.port},
        "agi": {"bind": p.agi.bind, "port": p.agi.port},
        "web": {"bind": p.web.listener.bind, "port": p.web.listener.port, "secure_cookies": p.web.secure_cookies},
        "carrier": {"host": p.carrier.host, "port": p.carrier.port, "match": list(p.carrier.match)},
        "no_answer_seconds": p.no_answer_seconds,
    })
    (folder / "platform.yaml").write_text(yaml.safe_dump(platform), encoding="utf-8")
    for name in ("acme.yaml", "borealis.yaml"):
        shutil.copy(EXAMPLES / name, folder / name)
    files = [folder / name for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
    loaded = load_config([str(f) for f in files])
    assert (loaded.platform, loaded.tenants) == (config.platform, config.tenants)
    return files


def serve_process(pbx: Pbx, files: list[Path], log: Path) -> ServeProcess:
    """`vipbx serve` as operators run it, on the PBX's home."""
    env = {**os.environ, "VIPBX_HOME": str(pbx.home)}
    env.pop("VIPBX_CONFIG", None)
    return ServeProcess([sys.executable, "-m", "cli.main", "serve", *map(str, files)], env,
                        Path(__file__).parents[2], log, app_registered(pbx.cli))


async def test_app_killed_mid_recording_still_delivers_the_message(
        pbx: Pbx, vm_config: Config, clean: None, phone: TestPhone, observer: PbxObserver,
        store: VoicemailStore, tmp_path: Path) -> None:
    serve = serve_process(pbx, write_platform_yaml(tmp_path, vm_config), tmp_path / "serve.log")
    try:
        await asyncio.to_thread(serve.start)
        since = observer.mark()
        call = await phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion=ANNA.number)
        await call.wait_state("Up", 15)
        await observer.wait(OUTSIDE, "play", since=since)
        await call.send_dtmf("5")
        await wait_recording(observer, call, OUTSIDE, since=since)
        await call.play_tone(3.0)
        serve.kill()  # mid-recording: the caller is still talking to nobody
        await asyncio.sleep(0.5)
        await call.hangup()
        await call.wait_hangup(10)
        # Asterisk finished the file; nobody delivered it.
        recorded = await eventually(lambda: [p for p in leftover_recordings(store) if p.suffix == ".wav"],
                                    5, "the recording on disk")
        sidecar = recorded[0].with_suffix(".json")
        promised = json.loads(sidecar.read_text(encoding="utf-8"))["msg_id"]
        assert store.counts(ANNA.tenant, ANNA.box) == (0, 0)
        # Restarted once the file has gone quiet (an orphan, not a live recording): delivered.
        await eventually(lambda: time.time() - recorded[0].stat().st_mtime > 5.5, 10, "recording quiet",
                         interval=0.25)
        await asyncio.to_thread(serve.start)
        inbox = await eventually(lambda: store.list(ANNA.tenant, ANNA.box, "INBOX"), 15,
                                 "the orphan delivered\n" + serve.text())
        envelope = inbox[0].envelope
        assert len(inbox) == 1
        assert (envelope.caller_number, envelope.called_number) == (OUTSIDE, ANNA.number)
        assert 2.7 <= loud_seconds(inbox[0].wav) <= 3.3  # all that was said before the kill
        assert abs(envelope.duration - wav_seconds(inbox[0].wav)) <= 1
        assert leftover_recordings(store) == []
        assert envelope.msg_id == promised  # the journal's id: a repeated delivery would be recognised
        assert app_voicemail_new(pbx, ANNA) == 1
    finally:
        await phone.hangup_all()
        await asyncio.to_thread(serve.stop)
